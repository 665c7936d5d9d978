"""Accounting periods: monthly, open or closed; closes and reopenings approved by the Head of
Finance (workflows/period_close_approval.bpmn, four-eyes: never the requester).

The accounting date decides the period: the transaction date for receipts, imports and card
payments, the posting date for corrections (journals, transfers, reversals, refunds, write-offs,
allocations). ``resolve`` is what app/services/ledger.py calls for every posting group (and the
import writers for their bulk groups): a date in a closed period becomes the first day of the
first open period after it, unless the caller asked for that date explicitly (``strict``), which
is refused (422, nothing posted).

Locks, so that a period is never closed while a posting into it is in flight:

* PostgreSQL: a posting holds a *shared* transaction-level advisory lock on each month it posts
  into (key PERIOD_LOCK, yyyymm) until it commits, and reads the month's state only after taking
  it; closing takes the *exclusive* lock on the month first. A close therefore waits for the
  postings in flight to commit, and a posting that starts meanwhile waits for the close and then
  sees the month closed (READ COMMITTED reads afresh at each statement).
* SQLite: one writer at a time. A posting reads the state under the write lock
  (locking.write_lock, BEGIN IMMEDIATE) that it keeps until it commits; so does the close.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.i18n import N_
from app.models.base import utcnow
from app.models.gl import AccountingPeriod, PeriodRequest
from app.services import audit
from app.services.locking import for_update, write_lock

LONDON = ZoneInfo("Europe/London")
PERIOD_LOCK = 720_318  # advisory lock class of accounting periods (PostgreSQL)
PROCESS_ID = "period_close_approval"
SUBJECT = "period_close"
ACTION_LABELS = {"close": N_("Close"), "reopen": N_("Reopen")}
STATUS_LABELS = {"open": N_("open"), "closed": N_("closed"), "pending": N_("waiting for approval"),
                 "approved": N_("approved"), "rejected": N_("rejected")}


def today() -> dt.date:
    """The council's date now (Europe/London)."""
    return dt.datetime.now(LONDON).date()


def month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def next_month(d: dt.date) -> dt.date:
    return (d.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def month_end(d: dt.date) -> dt.date:
    return next_month(d) - dt.timedelta(days=1)


def parse_period(value) -> dt.date:
    """"2026-11" (or any date in the month) to the month's first day; ValidationError otherwise."""
    if isinstance(value, dt.date):
        return month_start(value)
    if isinstance(value, str):
        raw = value.strip()
        try:
            if len(raw) == 7 and raw[4] == "-" and raw.replace("-", "").isdigit():
                return dt.date(int(raw[:4]), int(raw[5:]), 1)
            if len(raw) == 10 and raw.replace("-", "").isdigit():
                return month_start(dt.date.fromisoformat(raw))
        except ValueError:
            pass
    raise ValidationError("period: give a month as YYYY-MM.", {"period": ["Give a month as YYYY-MM."]})


# --------------------------------------------------------------------------- locks and resolution
def _lock_month(session: Session, start: dt.date, *, shared: bool) -> None:
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        conn.execute(text(f"SELECT {fn}(:k, :m)"),
                     {"k": PERIOD_LOCK, "m": start.year * 100 + start.month})
    else:
        write_lock(session)


def _closed_from(session: Session, start: dt.date) -> set[dt.date]:
    return set(session.scalars(select(AccountingPeriod.start_date).where(
        AccountingPeriod.start_date >= start, AccountingPeriod.status == "closed")))


def is_closed(session: Session, d: dt.date) -> bool:
    return session.scalar(select(AccountingPeriod.status).where(
        AccountingPeriod.start_date == month_start(d))) == "closed"


def first_open_after(closed: set[dt.date], start: dt.date) -> dt.date:
    m = start
    while m in closed:
        m = next_month(m)
    return m


def resolve(session: Session, wanted: dt.date, *, strict: bool = False,
            field: str = "accounting_date") -> dt.date:
    """The accounting date a posting wanted on ``wanted`` gets, with the month it posts into
    locked against closing until the caller's transaction ends (see the module's notes).
    ``strict``: the caller asked for this date explicitly; a closed period is a 422."""
    return resolve_many(session, {wanted}, strict=strict, field=field)[wanted]


def resolve_many(session: Session, dates, *, strict: bool = False,
                 field: str = "accounting_date") -> dict[dt.date, dt.date]:
    """resolve() for several dates at once (an import chunk): {wanted: used}."""
    dates = sorted(set(dates))
    if not dates:
        return {}
    months = sorted({month_start(d) for d in dates})
    for m in months:  # in order, so two postings never wait for each other
        _lock_month(session, m, shared=True)
    closed = _closed_from(session, months[0])
    result: dict[dt.date, dt.date] = {}
    moved_to: set[dt.date] = set()
    for d in dates:
        m = month_start(d)
        if m not in closed:
            result[d] = d
            continue
        if strict:
            raise ValidationError(
                f"{field}: {d.isoformat()} is in the closed period {m:%Y-%m}; nothing was "
                f"posted. Leave the date out to post into the first open period.",
                {field: [f"{d.isoformat()} is in a closed period ({m:%Y-%m})."]})
        target = first_open_after(closed, m)
        result[d] = target
        moved_to.add(target)
    for target in sorted(moved_to - set(months)):
        _lock_month(session, target, shared=True)
        if is_closed(session, target):  # closed meanwhile (only between the read and the lock)
            return resolve_many(session, dates, strict=strict, field=field)
    return result


def resolve_numbered(session: Session, wanted: dt.date, sequence: str, *,
                     strict: bool = False) -> tuple[dt.date, int]:
    """PostgreSQL: ``resolve(session, wanted)`` and the next value of ``sequence`` (a number
    sequence of app/services/ledger.py) in one round trip, when the month is open (the common
    case): the month's shared lock and the number in one statement, then the month's state read
    by a second statement, which under READ COMMITTED takes its snapshot after the lock was
    granted (two statements without parameters: the simple query protocol runs them in turn).
    A closed month goes the way of ``resolve``."""
    start = month_start(wanted)
    result = session.connection().exec_driver_sql(
        f"SELECT nextval('{sequence}'), pg_advisory_xact_lock_shared({PERIOD_LOCK}, "
        f"{start.year * 100 + start.month}); "
        f"SELECT 1 FROM accounting_period WHERE start_date = '{start.isoformat()}' "
        f"AND status = 'closed'")
    try:
        cursor = result.cursor
        number = int(cursor.fetchone()[0])
        if not cursor.nextset():
            raise RuntimeError("The period query returned no result.")
        closed = cursor.fetchone() is not None
    finally:
        result.close()
    if not closed:
        return wanted, number
    return resolve(session, wanted, strict=strict), number


def moved_message(wanted: dt.date | None, used: dt.date | None) -> str | None:
    """What a page or response says when a posting went into a later period (else None)."""
    if wanted is None or used is None or wanted == used:
        return None
    return (f"{wanted.isoformat()} is in the closed period {wanted:%Y-%m}: posted on "
            f"{used.isoformat()}, the first day of the first open period.")


# --------------------------------------------------------------------------- listing
@dataclass
class PeriodInfo:
    start: dt.date
    status: str
    row: AccountingPeriod | None
    pending: PeriodRequest | None

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def end(self) -> dt.date:
        return month_end(self.start)


def get_period(session: Session, period) -> PeriodInfo:
    start = parse_period(period)
    row = session.get(AccountingPeriod, start)
    pending = session.scalar(select(PeriodRequest).where(
        PeriodRequest.period_start == start, PeriodRequest.status == "pending"))
    return PeriodInfo(start, row.status if row else "open", row, pending)


def periods(session: Session, months: int = 13, until: dt.date | None = None) -> list[PeriodInfo]:
    """The last ``months`` months to ``until`` (default this month), newest first, plus any
    earlier month that has a state."""
    until = month_start(until or today())
    starts = []
    m = until
    for _ in range(months):
        starts.append(m)
        m = (m - dt.timedelta(days=1)).replace(day=1)
    starts += [s for s in session.scalars(select(AccountingPeriod.start_date)) if s not in starts]
    return [get_period(session, s) for s in sorted(starts, reverse=True)]


def to_dict(info: PeriodInfo) -> dict:
    row = info.row
    return {"period": info.label, "start": info.start.isoformat(), "end": info.end.isoformat(),
            "status": info.status,
            "closed_at": row.closed_at.isoformat() if row and row.closed_at else None,
            "closed_by": row.closed_by if row else None,
            "pending_request": request_dict(info.pending) if info.pending else None}


def request_dict(req: PeriodRequest) -> dict:
    return {"id": req.id, "period": f"{req.period_start:%Y-%m}", "action": req.action,
            "status": req.status, "reason": req.reason, "requested_by": req.requested_by,
            "requested_at": req.requested_at.isoformat() if req.requested_at else None,
            "decided_by": req.decided_by,
            "decided_at": req.decided_at.isoformat() if req.decided_at else None,
            "decision_comment": req.decision_comment,
            "workflow_instance_id": req.workflow_instance_id}


#: Checks the close page lists before a period is closed: name -> fn(session, start, end) ->
#: {"count", "total", "items": [...], "note"}. "unreconciled" is bank reconciliation's
#: (statement lines not yet matched: app/services/reconciliation.py).
_CLOSE_CHECKS: dict[str, object] = {}


def register_close_check(name: str, fn) -> None:
    _CLOSE_CHECKS[name] = fn


def _suspense_check(session: Session, start: dt.date, end: dt.date) -> dict:
    from app.models.suspense import SuspenseItem

    q = select(SuspenseItem).where(SuspenseItem.transaction_date <= end,
                                   SuspenseItem.status.in_(("unallocated", "part_allocated")))
    items = list(session.scalars(q.order_by(SuspenseItem.id).limit(50)))
    count, total = session.execute(select(func.count(), func.coalesce(func.sum(
        SuspenseItem.amount - SuspenseItem.cleared_amount), 0)).where(
        SuspenseItem.transaction_date <= end,
        SuspenseItem.status.in_(("unallocated", "part_allocated")))).one()
    return {"count": int(count), "total": int(total),
            "items": [{"id": i.id, "date": i.transaction_date.isoformat(),
                       "amount": i.amount - (i.cleared_amount or 0),
                       "reference": i.reference_text, "status": i.status} for i in items],
            "note": None}


def _unexported_check(session: Session, start: dt.date, end: dt.date) -> dict:
    from app.services import gl_export

    count, total = gl_export.unexported_summary(session, end)
    return {"count": count, "total": total, "items": [], "note": None}


def _unreconciled_check(session: Session, start: dt.date, end: dt.date) -> dict:
    from app.services.reconciliation import unreconciled_check

    return unreconciled_check(session, start, end)


register_close_check("suspense", _suspense_check)
register_close_check("unexported", _unexported_check)
register_close_check("unreconciled", _unreconciled_check)


def close_checks(session: Session, period) -> dict[str, dict]:
    info = get_period(session, period)
    return {name: fn(session, info.start, info.end) for name, fn in _CLOSE_CHECKS.items()}


# --------------------------------------------------------------------------- requests
def ensure_deployed(session: Session) -> None:
    from app.services import workflow as wf

    if wf.active_definition(session, PROCESS_ID) is not None:
        return
    with open(os.path.join(wf.WORKFLOW_DIR, f"{PROCESS_ID}.bpmn"), "rb") as fh:
        wf.deploy_definition(session, fh.read(), "system", expected_process_id=PROCESS_ID,
                             commit=False, reason="Deployed from workflows/ by the service: "
                                                  "no version was active.")


def _reason(reason, required: bool) -> str | None:
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        if required:
            raise ValidationError("Give a reason.", {"reason": ["A reason is required."]})
        return None
    if not isinstance(reason, str):
        raise ValidationError("reason: give text.", {"reason": ["Give text."]})
    if len(reason) > 1000:
        raise ValidationError("The reason is too long.", {"reason": ["At most 1000 characters."]})
    return reason.strip()


def request_change(session: Session, period, action: str, *, actor: str,
                   reason=None) -> PeriodRequest:
    """A Finance Manager asks for a period to be closed (or reopened); starts the approval.
    Commits. Conflict: already closed (open), a request already waiting; ValidationError:
    the period has not ended (close), bad input."""
    try:
        if action not in ("close", "reopen"):
            raise ValidationError("action: close or reopen.", {"action": ["close or reopen."]})
        start = parse_period(period)
        reason = _reason(reason, required=action == "reopen")
        write_lock(session)
        row = session.scalar(for_update(session, select(AccountingPeriod).where(
            AccountingPeriod.start_date == start)))
        status = row.status if row else "open"
        if action == "close" and status == "closed":
            raise Conflict(f"The period {start:%Y-%m} is already closed.",
                           {"period": ["Already closed."]})
        if action == "reopen" and status != "closed":
            raise Conflict(f"The period {start:%Y-%m} is open; only a closed period can be "
                           f"reopened.", {"period": ["Not closed."]})
        if action == "close" and month_end(start) >= today():
            raise ValidationError(f"The period {start:%Y-%m} has not ended yet; it can be "
                                  f"closed from {next_month(start).isoformat()}.",
                                  {"period": ["Not ended yet."]})
        if session.scalar(select(PeriodRequest.id).where(
                PeriodRequest.period_start == start, PeriodRequest.status == "pending")):
            raise Conflict(f"A request about {start:%Y-%m} is already waiting for approval.",
                           {"period": ["A request is already waiting."]})
        req = PeriodRequest(period_start=start, action=action, status="pending", reason=reason,
                            requested_by=actor, requested_at=utcnow())
        session.add(req)
        session.flush()
        from app.services import workflow as wf

        ensure_deployed(session)
        instance = wf.start_workflow(session, PROCESS_ID, SUBJECT, req.id, actor, {
            "amount_pence": None, "requester": actor, "action": SUBJECT,
            "reason": f"{action.title()} the accounting period {start:%Y-%m}"
                      + (f": {reason}" if reason else ""),
            "period": f"{start:%Y-%m}", "period_action": action})
        req.workflow_instance_id = instance.id
        session.flush()
        audit.record(session, f"period.{action}_request", "AccountingPeriod", f"{start:%Y-%m}",
                     after=request_dict(req), reason=reason, actor=actor)
        from app.security import roles as R
        from app.services.notifications import notify

        notify(session, [R.HEAD], f"{action.title()} the accounting period {start:%Y-%m}: "
                                  f"requested by {actor}, waiting for your approval.",
               "/tasks/", exclude=[actor])
        session.commit()
        return req
    except IntegrityError:
        session.rollback()
        raise Conflict("A request about this period is already waiting for approval.") from None
    except Exception:
        session.rollback()
        raise


def apply_change(session: Session, start: dt.date, action: str, *, actor: str,
                 requested_by: str | None = None, reason: str | None = None) -> AccountingPeriod:
    """Close or reopen the period (the approval's outcome; joins the caller's transaction).
    Waits for postings into it in flight (the exclusive lock). Conflict when closed twice."""
    _lock_month(session, start, shared=False)
    write_lock(session)
    row = session.scalar(for_update(session, select(AccountingPeriod).where(
        AccountingPeriod.start_date == start)).execution_options(populate_existing=True))
    before = {"status": row.status if row else "open"}
    if action == "close":
        if row is not None and row.status == "closed":
            raise Conflict(f"The period {start:%Y-%m} is already closed.",
                           {"period": ["Already closed."]})
        if row is None:
            row = AccountingPeriod(start_date=start)
            session.add(row)
        row.status, row.closed_at, row.closed_by = "closed", utcnow(), actor
        row.close_requested_by = requested_by
    else:
        if row is None or row.status != "closed":
            raise Conflict(f"The period {start:%Y-%m} is not closed.", {"period": ["Not closed."]})
        row.status, row.reopened_at, row.reopened_by = "open", utcnow(), actor
    session.flush()
    audit.record(session, f"period.{'closed' if action == 'close' else 'reopened'}",
                 "AccountingPeriod", f"{start:%Y-%m}", before=before,
                 after={"status": row.status, "approved_by": actor, "requested_by": requested_by},
                 reason=reason, actor=actor)
    return row


def _decider(session: Session, instance) -> tuple[str, str | None]:
    from app.models.workflow import WorkflowTask

    task = session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed")
        .order_by(WorkflowTask.completed_at.desc(), WorkflowTask.id.desc()).limit(1))
    if task is None:
        return "system", None
    return task.completed_by or "system", task.comment


def _outcome(session: Session, subject_id: str, outcome: str, instance) -> None:
    req = session.scalar(for_update(session, select(PeriodRequest).where(
        PeriodRequest.id == int(subject_id))))
    if req is None or req.status != "pending":
        return
    decider, comment = _decider(session, instance)
    if outcome == "approved":
        apply_change(session, req.period_start, req.action, actor=decider,
                     requested_by=req.requested_by, reason=req.reason)
        req.status = "approved"
    else:
        req.status = "rejected"
        req.decision_comment = instance.error or comment
    req.decided_by, req.decided_at = decider, utcnow()
    session.flush()
    audit.record(session, f"period.{req.action}_{req.status}", "AccountingPeriod",
                 f"{req.period_start:%Y-%m}", after=request_dict(req),
                 reason=req.decision_comment, actor=decider)
    from app.services.notifications import notify

    notify(session, [req.requested_by],
           f"{req.action.title()} the accounting period {req.period_start:%Y-%m}: {req.status} "
           f"by {decider}" + (f": {req.decision_comment}" if req.decision_comment else "."),
           f"/periods/{req.period_start:%Y-%m}")


def _summary(session: Session, subject_id: str) -> dict:
    req = session.get(PeriodRequest, int(subject_id))
    if req is None:
        raise NotFound(f"Period request {subject_id} does not exist.")
    return {"title": f"{req.action.title()} the accounting period {req.period_start:%Y-%m}",
            "details": {N_("Period"): f"{req.period_start:%Y-%m}",
                        N_("Requested by"): req.requested_by},
            "url": f"/periods/{req.period_start:%Y-%m}"}


def register() -> None:
    from app.services import workflow as wf

    wf.register_subject(SUBJECT, _summary, _outcome)


register()
