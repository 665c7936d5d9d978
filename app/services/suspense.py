"""Working suspense down: allocation (split across fund/account lines, posted at once below the
approval limit or after BPMN approval above it), notes, assignment, the work queue, ageing bands
and the reconciliation of the SUSPENSE control account to the open items.

Money held against a suspense item is kept on the item row (``reserved_amount`` for requests
awaiting approval, ``cleared_amount`` for what has been posted away), always changed while the
row is locked with SELECT ... FOR UPDATE, so two clerks can never allocate the same money:
the second waits for the first to commit and then sees the reduced remaining amount (422).

Postings: allocation Dr SUSPENSE / Cr FUND:account per line (kind "allocation"), one income
Transaction per line through ``ledger.record_income``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, object_session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.ids import to_id
from app.domain.money import Money, gbp
from app.models.base import utcnow
from app.models.ledger import PostingGroup
from app.models.reference import PaymentMethod
from app.models.suspense import REMAINING_AMOUNT, SuspenseItem
from app.models.suspense_work import SuspenseAllocation, SuspenseAllocationLine, SuspenseNote
from app.services import scope as SC
from app.services import audit
from app.services import ledger as L
from app.services.approval_limits import route_for
from app.services.locking import for_update
from app.services.receipts import check_line
from app.services.reference import SUSPENSE_FUND, WRITE_OFF_FUND, get_setting

PROCESS_ID = "suspense_allocation_approval"
SUBJECT = "suspense_allocation"
ACTION = "suspense_allocation"
MAX_LINES = 20
OPEN_STATUSES = ("unallocated", "part_allocated")
DEFAULT_AGE_WEEKS = 8


# --------------------------------------------------------------------------- remaining amount
def remaining_of(item: SuspenseItem) -> int:
    return item.amount - (item.reserved_amount or 0) - (item.cleared_amount or 0)


REMAINING_AMOUNT[0] = remaining_of


def lock_item(session: Session, item_id) -> SuspenseItem:
    """The suspense item, locked until the caller commits (locking.for_update)."""
    try:
        item_id = to_id(item_id)
    except (TypeError, ValueError):
        raise NotFound("No such suspense item.") from None
    stmt = for_update(session, select(SuspenseItem).where(SuspenseItem.id == item_id))
    item = session.scalar(stmt.execution_options(populate_existing=True))
    if item is None:
        raise NotFound(f"Suspense item {item_id} does not exist.")
    if not SC.suspense_item_allowed(session, item):
        raise SC.OutOfScope()
    return item


def get_item(session: Session, item_id) -> SuspenseItem:
    try:
        item = session.get(SuspenseItem, to_id(item_id))
    except (TypeError, ValueError):
        item = None
    if item is not None and not SC.suspense_item_allowed(session, item):
        raise SC.OutOfScope()
    if item is None:
        raise NotFound(f"Suspense item {item_id} does not exist.")
    return item


def refresh_status(item: SuspenseItem, *, written_off: bool = False) -> None:
    """unallocated / part_allocated / allocated / written_off from the amounts (never withdrawn)."""
    if item.status == "withdrawn":
        return
    reserved, cleared = item.reserved_amount or 0, item.cleared_amount or 0
    if reserved == 0 and cleared == 0:
        item.status = "unallocated"
    elif reserved > 0 or reserved + cleared < item.amount:
        item.status = "part_allocated"
    else:
        item.status = "written_off" if written_off else "allocated"


def shown_statuses(session: Session, items) -> dict[int, str]:
    """Each item's status as a person reads it (a key of app.domain.labels "suspense").

    The stored status of an item whose remaining money is all reserved is part_allocated (it is
    still open: a rejection gives the money back). Shown, it is "reserved for a write-off" or
    "reserved for an allocation" (awaiting approval), never "part allocated" with £0.00 left.
    """
    from app.models.suspense_work import WriteOff

    items = list(items)
    held = [i.id for i in items if (i.reserved_amount or 0) > 0 and remaining_of(i) <= 0]
    writing_off = set()
    if held:
        writing_off = set(session.scalars(select(WriteOff.suspense_item_id).where(
            WriteOff.suspense_item_id.in_(held), WriteOff.status == "awaiting_approval")))
    out = {}
    for i in items:
        if i.id in held and i.status in OPEN_STATUSES:
            out[i.id] = "reserved_write_off" if i.id in writing_off else "reserved_allocation"
        else:
            out[i.id] = i.status
    return out


def _snapshot(item: SuspenseItem) -> dict:
    return {"status": item.status, "remaining": str(Money(remaining_of(item))),
            "reserved": str(Money(item.reserved_amount or 0)),
            "cleared": str(Money(item.cleared_amount or 0))}


def fund_codes(session: Session) -> tuple[str, str]:
    """(suspense fund code, write-off fund code) from the designated-fund settings."""
    return (get_setting(session, SUSPENSE_FUND) or "SUSP",
            get_setting(session, WRITE_OFF_FUND) or "WOFF")


def _journal_method(session: Session) -> str:
    code = session.scalar(select(PaymentMethod.code).where(PaymentMethod.kind == "journal")
                          .order_by(PaymentMethod.id).limit(1))
    return code or "JNL"


def _note_text(note) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise ValidationError("Give the note as text.", {"note": ["Give the note as text."]})
    note = note.strip()
    if len(note) > 2000:
        raise ValidationError("The note is too long.", {"note": ["At most 2000 characters."]})
    return note or None


# --------------------------------------------------------------------------- validation
def check_lines(session: Session, lines, *, may_override_stop: bool = False) -> list[dict]:
    """Validate allocation lines [{fund_code, account_reference, amount}] (every check, all lines).

    Raises ValidationError naming "lines[i].field"; returns the cleaned lines.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(lines, list) or not lines:
        raise ValidationError("Add at least one allocation line.",
                              {"lines": ["Add at least one line."]})
    if len(lines) > MAX_LINES:
        raise ValidationError(f"At most {MAX_LINES} lines.", {"lines": [f"At most {MAX_LINES} lines."]})
    susp, woff = fund_codes(session)
    cleaned = []
    for i, line in enumerate(lines):
        c = check_line(session, line, f"lines[{i}]", errors, may_override_stop=may_override_stop,
                       allow_vat=False)
        fund = (line.get("fund_code") or "").strip().upper() if isinstance(line, dict) and \
            isinstance(line.get("fund_code"), str) else ""
        if fund in (susp, woff):
            errors.setdefault(f"lines[{i}].fund_code", []).append(
                "Money cannot be allocated back to suspense or to the write-off fund."
                if fund == susp else "Use a write-off request to write money off.")
            c = None
        if c is not None:
            cleaned.append(c)
    seen = set()
    for i, c in enumerate(cleaned):
        key = (c["fund_code"], c["account_reference"])
        if key in seen:
            errors.setdefault(f"lines[{i}].account_reference", []).append(
                "The same account appears twice; combine the lines.")
        seen.add(key)
    if errors:
        raise ValidationError("The allocation was not made: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    return cleaned


# --------------------------------------------------------------------------- allocation
def _expected(value) -> int | None:
    """The remaining amount the clerk saw: pence (int) or a money string; None: not checked."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return Money.parse(value, field="expected_remaining", allow_zero=True).pence
    except ValidationError as exc:
        raise ValidationError(exc.message, {"expected_remaining": ["Not an amount."]}) from None


@dataclass
class AllocationResult:
    allocation: SuspenseAllocation
    item: SuspenseItem

    def to_dict(self) -> dict:
        a = self.allocation
        return {"id": a.id, "status": a.status, "suspense_item_id": a.suspense_item_id,
                "amount": str(Money(a.amount)),
                "remaining_amount": str(Money(remaining_of(self.item))),
                "item_status": self.item.status,
                "posting_number": _group_number(object_session(a), a.posting_group_id),
                "workflow_instance_id": a.workflow_instance_id,
                "lines": [{"fund_code": ln.fund_code, "account_reference": ln.account_reference,
                           "amount": str(Money(ln.amount)), "transaction_id": ln.transaction_id}
                          for ln in a.lines]}


def _group_number(session, group_id):
    if session is None or group_id is None:
        return None
    g = session.get(PostingGroup, group_id)
    return g.number if g is not None else None


def allocate(session: Session, item_id, lines, *, actor: str, note=None,
             may_override_stop: bool = False, office_code: str | None = None,
             expected_remaining=None) -> AllocationResult:
    """Allocate part or all of a suspense item to fund/account lines. One commit.

    Below the approval limit (action "suspense_allocation") it posts at once; above it the
    amount is reserved and the suspense_allocation_approval workflow starts. Raises
    ValidationError (bad lines, more than remaining, item closed), NotFound, and Conflict when
    ``expected_remaining`` (what the clerk saw) no longer matches: someone else changed the item.
    """
    try:
        note = _note_text(note)
        expected = _expected(expected_remaining)
        cleaned = check_lines(session, lines, may_override_stop=may_override_stop)
        item = lock_item(session, item_id)
        if item.status == "withdrawn":
            raise ValidationError("This suspense item was withdrawn (its import was reversed).",
                                  {"suspense_item": ["Withdrawn."]})
        total = sum(c["amount"] for c in cleaned)
        remaining = remaining_of(item)
        if expected is not None and expected != remaining:
            raise Conflict(
                f"Someone else changed this item while you worked on it: {Money(remaining)} "
                f"remains now, not {Money(expected)}. Check it and try again.",
                {"expected_remaining": [f"Now {Money(remaining)}."]})
        if total > remaining:
            raise ValidationError(
                f"The lines total {Money(total)} but only {Money(remaining)} remains in suspense.",
                {"lines": [f"Total {Money(total)} is more than the remaining {Money(remaining)}."]})
        required, roles = route_for(session, ACTION, total)
        before = _snapshot(item)
        alloc = SuspenseAllocation(suspense_item_id=item.id, amount=total, note=note,
                                   requested_by=actor, requested_at=utcnow(),
                                   status="awaiting_approval", office_code=office_code)
        alloc.lines = [SuspenseAllocationLine(fund_code=c["fund_code"],
                                              account_reference=c["account_reference"],
                                              amount=c["amount"]) for c in cleaned]
        session.add(alloc)
        session.flush()
        if required == 0:
            _post_allocation(session, item, alloc, actor=actor)
        else:
            from app.services import workflow as wf

            item.reserved_amount = (item.reserved_amount or 0) + total
            refresh_status(item)
            ensure_deployed(session, PROCESS_ID)
            instance = wf.start_workflow(session, PROCESS_ID, SUBJECT, alloc.id, actor, {
                "amount_pence": total, "requester": actor, "action": ACTION,
                "reason": note or f"Allocate suspense item {item.id}",
                "suspense_item_id": item.id})
            alloc.workflow_instance_id = instance.id
            _notify(session, roles[:1], f"Suspense allocation {alloc.id} of {gbp(total)} "
                    f"awaits approval", f"/suspense/{item.id}", about=(SUBJECT, alloc.id))
        audit.record(session, "allocate" if alloc.status == "posted" else "allocation.request",
                     "SuspenseItem", item.id, before=before, after={
                         **_snapshot(item), "allocation": alloc.id, "amount": str(Money(total)),
                         "lines": [f"{c['fund_code']}/{c['account_reference']} {Money(c['amount'])}"
                                   for c in cleaned]}, reason=note, actor=actor)
        session.commit()
        return AllocationResult(alloc, item)
    except Exception:
        session.rollback()
        raise


def _post_allocation(session: Session, item: SuspenseItem, alloc: SuspenseAllocation, *,
                     actor: str) -> None:
    """Dr SUSPENSE / Cr FUND:account per line; income transactions; the item's amounts."""
    susp, _ = fund_codes(session)
    legs = [L.Leg(L.SUSPENSE, alloc.amount, susp)] + [
        L.Leg(L.FUND, -ln.amount, ln.fund_code, ln.account_reference) for ln in alloc.lines]
    group = L.post_group(session, "allocation", legs, actor=actor, office_code=alloc.office_code,
                         reason=alloc.note or f"Allocation of suspense item {item.id}")
    method = _journal_method(session)
    for ln in alloc.lines:
        txn = L.record_income(
            session, group=group, fund_code=ln.fund_code, account_reference=ln.account_reference,
            amount=ln.amount, payment_method_code=method, transaction_date=item.transaction_date,
            narrative=(item.narrative or f"From suspense item {item.id}")[:500],
            external_reference=f"SUSPENSE-{item.id}", office_code=alloc.office_code,
            created_by=actor, vat_amount=0)
        ln.transaction_id = txn.id
    alloc.posting_group_id = group.id
    alloc.status = "posted"
    item.cleared_amount = (item.cleared_amount or 0) + alloc.amount
    refresh_status(item)
    session.flush()


def _allocation_outcome(session: Session, subject_id: str, outcome: str, instance) -> None:
    """Called by the workflow engine when the approval ends (inside its transaction)."""
    alloc = session.get(SuspenseAllocation, int(subject_id))
    if alloc is None or alloc.status != "awaiting_approval":
        return
    item = lock_item(session, alloc.suspense_item_id)
    before = _snapshot(item)
    item.reserved_amount = max(0, (item.reserved_amount or 0) - alloc.amount)
    alloc.decided_at = utcnow()
    actor = audit.current_actor()
    if outcome == "approved":
        # the lines are checked again: a fund may have been disabled while it waited
        check_lines(session, [{"fund_code": ln.fund_code, "account_reference": ln.account_reference,
                               "amount": str(Money(ln.amount))} for ln in alloc.lines],
                    may_override_stop=True)
        _post_allocation(session, item, alloc, actor=actor)
        action = "allocate"
    else:
        alloc.status = "rejected"
        alloc.decision_comment = instance.error or _last_comment(session, instance)
        refresh_status(item)
        action = "allocation.reject"
    session.flush()
    audit.record(session, action, "SuspenseItem", item.id, before=before,
                 after={**_snapshot(item), "allocation": alloc.id,
                        "amount": str(Money(alloc.amount)), "workflow_instance": instance.id},
                 reason=alloc.decision_comment, actor=actor)
    _notify(session, [alloc.requested_by],
            f"Suspense allocation {alloc.id} was {outcome}", f"/suspense/{item.id}",
            about=(SUBJECT, alloc.id))


def _last_comment(session: Session, instance) -> str | None:
    from app.models.workflow import WorkflowTask

    return session.scalar(select(WorkflowTask.comment).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed",
        WorkflowTask.comment.is_not(None)).order_by(WorkflowTask.completed_at.desc()).limit(1))


def _allocation_summary(session: Session, subject_id: str) -> dict:
    alloc = session.get(SuspenseAllocation, int(subject_id))
    if alloc is None:
        return {"title": N_("Suspense allocation %(id)s", id=subject_id)}
    item = session.get(SuspenseItem, alloc.suspense_item_id)
    details = {N_("Suspense item"): str(item.id), N_("Reference as received"): item.reference_text or "",
               N_("Narrative"): item.narrative or "", N_("Received"): str(item.transaction_date),
               N_("Item amount"): f"{gbp(item.amount)}"}
    for i, ln in enumerate(alloc.lines, 1):
        details[N_("Line %(n)s", n=i)] = f"{ln.fund_code} / {ln.account_reference} {gbp(ln.amount)}"
    if alloc.note:
        details[N_("Note")] = alloc.note
    return {"title": N_("Allocate %(amount)s from suspense item %(id)s",
                        amount=f"{gbp(alloc.amount)}", id=item.id),
            "details": details, "url": f"/suspense/{item.id}",
            "history": [{"at": n.created_at, "actor": n.author, "action": N_("note"),
                         "detail": n.text}
                        for n in notes_of(session, item.id)]}


def ensure_deployed(session: Session, process_id: str) -> None:
    """Deploy workflows/<process_id>.bpmn when no version is active yet (joins the transaction)."""
    import os

    from app.services import workflow as wf

    if wf.active_definition(session, process_id) is not None:
        return
    path = os.path.join(wf.WORKFLOW_DIR, f"{process_id}.bpmn")
    with open(path, "rb") as fh:
        wf.deploy_definition(session, fh.read(), "system", expected_process_id=process_id,
                             commit=False)


def _notify(session: Session, who: list[str], message: str, link: str,
            about: tuple[str, object] | None = None) -> None:
    """Tell people through the notifications feature when it is installed (best effort);
    ``about`` = (subject type, id) limits it to those who hold the record's funds."""
    try:
        from app.services.notifications import notify
    except ImportError:
        return
    if who:
        notify(session, list(who), message, link, about=about)


# --------------------------------------------------------------------------- notes, assignment
def add_note(session: Session, item_id, text, *, actor: str) -> SuspenseNote:
    try:
        text = _note_text(text)
        if not text:
            raise ValidationError("Write the note first.", {"text": ["A note cannot be empty."]})
        item = get_item(session, item_id)
        note = SuspenseNote(suspense_item_id=item.id, author=actor, text=text, created_at=utcnow())
        session.add(note)
        session.flush()
        audit.record(session, "note", "SuspenseItem", item.id, after={"note": text}, actor=actor)
        session.commit()
        return note
    except Exception:
        session.rollback()
        raise


def notes_of(session: Session, item_id: int) -> list[SuspenseNote]:
    return list(session.scalars(select(SuspenseNote).where(SuspenseNote.suspense_item_id == item_id)
                                .order_by(SuspenseNote.created_at.desc(), SuspenseNote.id.desc())))


def assign(session: Session, item_ids, assignee: str | None, *, actor: str) -> int:
    """Assign items to a user (None: unassign). One commit; returns how many changed."""
    try:
        ids = _ids(item_ids)
        changed = 0
        scoped = SC.suspense_condition(SuspenseItem)
        for item in session.scalars(select(SuspenseItem).where(
                SuspenseItem.id.in_(ids), *(() if scoped is None else (scoped,)))
                                    .order_by(SuspenseItem.id)):
            if item.assigned_to == assignee:
                continue
            before = {"assigned_to": item.assigned_to}
            item.assigned_to = assignee
            item.assigned_at = utcnow() if assignee else None
            audit.record(session, "assign", "SuspenseItem", item.id, before=before,
                         after={"assigned_to": assignee}, actor=actor)
            changed += 1
        session.commit()
        return changed
    except Exception:
        session.rollback()
        raise


def _ids(values) -> list[int]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValidationError("Select at least one item.", {"ids": ["Select at least one item."]})
    out = []
    for v in values:
        try:
            out.append(to_id(v))
        except (TypeError, ValueError):
            raise ValidationError("Not an item id.", {"ids": [f"{v!r} is not an item id."]}) from None
    return sorted(set(out))


# --------------------------------------------------------------------------- queue and ageing
def age_weeks() -> int:
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            return int(current_app.config.get("IMS_SUSPENSE_AGE_WEEKS", DEFAULT_AGE_WEEKS))
    except (ImportError, ValueError):
        pass
    return DEFAULT_AGE_WEEKS


def age_class(transaction_date: dt.date, today: dt.date | None = None,
              weeks: int | None = None) -> str:
    """ims-age-fresh (under half the write-off age), ims-age-old, ims-age-stale (over it)."""
    today = today or dt.date.today()
    limit = (weeks or age_weeks()) * 7
    days = (today - transaction_date).days
    if days >= limit:
        return "ims-age-stale"
    if days >= limit // 2:
        return "ims-age-old"
    return "ims-age-fresh"


@dataclass
class QueueFilters:
    age: str | None = None          # fresh | old | stale
    min_amount: int | None = None   # remaining, pence
    max_amount: int | None = None
    text: str | None = None
    import_id: int | None = None
    status: str | None = None       # unallocated | part_allocated | allocated | written_off | open
    assigned_to: str | None = None  # username, or "-" for nobody


def queue_query(f: QueueFilters, today: dt.date | None = None, weeks: int | None = None):
    today = today or dt.date.today()
    limit = (weeks or age_weeks()) * 7
    remaining = SuspenseItem.amount - SuspenseItem.reserved_amount - SuspenseItem.cleared_amount
    q = select(SuspenseItem)
    scoped = SC.suspense_condition(SuspenseItem)  # the user's fund groups
    if scoped is not None:
        q = q.where(scoped)
    status = f.status or "open"
    if status == "open":
        q = q.where(SuspenseItem.status.in_(OPEN_STATUSES))
    elif status != "all":
        q = q.where(SuspenseItem.status == status)
    if f.age == "stale":
        q = q.where(SuspenseItem.transaction_date <= today - dt.timedelta(days=limit))
    elif f.age == "old":
        q = q.where(SuspenseItem.transaction_date <= today - dt.timedelta(days=limit // 2),
                    SuspenseItem.transaction_date > today - dt.timedelta(days=limit))
    elif f.age == "fresh":
        q = q.where(SuspenseItem.transaction_date > today - dt.timedelta(days=limit // 2))
    if f.min_amount is not None:
        q = q.where(remaining >= f.min_amount)
    if f.max_amount is not None:
        q = q.where(remaining <= f.max_amount)
    if f.text:
        like = f"%{f.text.strip().lower()}%"
        q = q.where(or_(func.lower(SuspenseItem.reference_text).like(like),
                        func.lower(SuspenseItem.narrative).like(like)))
    if f.import_id:
        q = q.where(SuspenseItem.import_id == f.import_id)
    if f.assigned_to == "-":
        q = q.where(SuspenseItem.assigned_to.is_(None))
    elif f.assigned_to:
        q = q.where(SuspenseItem.assigned_to == f.assigned_to)
    return q


def queue(session: Session, f: QueueFilters, *, page: int = 0, page_size: int = 50):
    q = queue_query(f)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    items = session.scalars(q.order_by(SuspenseItem.transaction_date, SuspenseItem.id)
                            .offset(page * page_size).limit(page_size)).all()
    return items, total


def aged_items(session: Session, *, weeks: int | None = None, today: dt.date | None = None,
               limit: int = 1000) -> list[SuspenseItem]:
    """Open items with money remaining, received at least ``weeks`` weeks ago (oldest first)."""
    today = today or dt.date.today()
    cutoff = today - dt.timedelta(weeks=weeks or age_weeks())
    remaining = SuspenseItem.amount - SuspenseItem.reserved_amount - SuspenseItem.cleared_amount
    scoped = SC.suspense_condition(SuspenseItem)
    return list(session.scalars(select(SuspenseItem).where(
        SuspenseItem.status.in_(OPEN_STATUSES), SuspenseItem.transaction_date <= cutoff,
        remaining > 0, *(() if scoped is None else (scoped,))).order_by(SuspenseItem.transaction_date, SuspenseItem.id).limit(limit)))


# --------------------------------------------------------------------------- report
BANDS = [  # label, min days, max days (None: no upper bound)
    ("0–7 days", 0, 7), ("8–28 days", 8, 28), ("29–56 days", 29, 56),
    ("57–91 days", 57, 91), ("92–182 days", 92, 182), ("Over 182 days", 183, None),
]


def age_report(session: Session, today: dt.date | None = None) -> list[dict]:
    """Count and remaining value of open items per age band: the items the user may see
    (unallocated ones and those of their fund groups, app/services/scope.py)."""
    today = today or dt.date.today()
    remaining = SuspenseItem.amount - SuspenseItem.reserved_amount - SuspenseItem.cleared_amount
    scoped = SC.suspense_condition(SuspenseItem)
    out = []
    for label, lo, hi in BANDS:
        conds = [SuspenseItem.status.in_(OPEN_STATUSES),
                 SuspenseItem.transaction_date <= today - dt.timedelta(days=lo),
                 *(() if scoped is None else (scoped,))]
        if hi is not None:
            conds.append(SuspenseItem.transaction_date >= today - dt.timedelta(days=hi))
        count, value = session.execute(select(func.count(SuspenseItem.id),
                                              func.coalesce(func.sum(remaining), 0))
                                       .where(and_(*conds))).one()
        out.append({"band": label, "count": int(count), "value": int(value)})
    return out


def reconciliation(session: Session) -> dict | None:
    """The SUSPENSE control account against the open items. They must agree:

    credit balance of SUSPENSE = Σ remaining of open items + Σ reserved (awaiting approval).

    The control account holds every fund's suspense: its reconciliation is central work, None
    for a user of fund groups (app/services/scope.py).
    """
    if not SC.has_all_funds():
        return None
    ledger_credit = -L.balance_of(session, L.SUSPENSE)
    remaining, reserved, items = session.execute(select(
        func.coalesce(func.sum(SuspenseItem.amount - SuspenseItem.reserved_amount
                               - SuspenseItem.cleared_amount), 0),
        func.coalesce(func.sum(SuspenseItem.reserved_amount), 0),
        func.count(SuspenseItem.id)).where(SuspenseItem.status != "withdrawn")).one()
    remaining, reserved = int(remaining), int(reserved)
    return {"ledger_balance": ledger_credit, "open_remaining": remaining, "reserved": reserved,
            "items_total": remaining + reserved, "difference": ledger_credit - remaining - reserved,
            "agrees": ledger_credit == remaining + reserved, "items": int(items)}


def allocations_of(session: Session, item_id: int) -> list[SuspenseAllocation]:
    return list(session.scalars(select(SuspenseAllocation).where(
        SuspenseAllocation.suspense_item_id == item_id).order_by(SuspenseAllocation.id.desc())))


def get_allocation(session: Session, allocation_id) -> SuspenseAllocation:
    try:
        a = session.get(SuspenseAllocation, to_id(allocation_id))
    except (TypeError, ValueError):
        a = None
    if a is not None and not (SC.subject_allowed(session, SUBJECT, a.id) and
                              SC.suspense_item_allowed(session, session.get(
                                  SuspenseItem, a.suspense_item_id))):
        raise SC.OutOfScope()
    if a is None:
        raise NotFound(f"Allocation {allocation_id} does not exist.")
    return a


def _register() -> None:
    from app.services import workflow as wf

    wf.register_subject(SUBJECT, _allocation_summary, _allocation_outcome)


_register()
