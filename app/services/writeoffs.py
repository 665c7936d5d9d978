"""Write-offs of unclaimed suspense money or of a small residual balance on a transaction.

Every write-off goes through workflows/write_off_approval.bpmn, routed by the approval limits for
action "write_off" (demo: ≤ £100 Finance Manager; ≤ £5,000 Head of Finance; above, Head of Finance
then a Finance Manager), with escalation. The amount is reserved while it waits (on the suspense
item, or through ledger.register_reservation for a transaction); a rejection releases it.

Posting on approval (kind "write_off"): the money leaves the account it sits in for the
designated write-off fund —
  suspense item:  Dr SUSPENSE / Cr WRITE_OFFS
  transaction:    Dr FUND:account (linked to the transaction) / Cr WRITE_OFFS
so that the SUSPENSE control account keeps agreeing with the open items' remaining amounts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.ids import to_id
from app.domain.money import Money, gbp
from app.models.base import utcnow
from app.models.ledger import PostingGroup, Transaction
from app.models.suspense import SuspenseItem
from app.models.suspense_work import WRITE_OFF_HOLDING, WRITE_OFF_STATUSES, SuspenseAgeingRun, WriteOff
from app.services import scope as SC
from app.services import audit
from app.services import ledger as L
from app.services import suspense as S
from app.services.receipts import parse_amount

PROCESS_ID = "write_off_approval"
SUBJECT = "write_off"
ACTION = "write_off"


def _reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("Give a reason for the write-off.", {"reason": ["A reason is required."]})
    if len(reason) > 1000:
        raise ValidationError("The reason is too long.", {"reason": ["At most 1000 characters."]})
    return reason.strip()


def _amount(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValidationError("amount: must be more than zero", {"amount": ["Must be more than zero."]})
        return value
    return parse_amount(value, "amount")


def _id(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(f"{field}: not an id", {field: ["Give an id."]})
    try:
        return to_id(value)
    except ValueError:
        raise ValidationError(f"{field}: not an id", {field: ["Give an id."]}) from None


@L.register_reservation
def reserved_for_transactions(session: Session, transaction_ids) -> dict[int, int]:
    """Pence of each transaction held by write-offs awaiting approval or posted (for
    available_amount; ids with none left out), in one query."""
    if not transaction_ids:
        return {}
    return {tid: int(pence) for tid, pence in session.execute(
        select(WriteOff.transaction_id, func.sum(WriteOff.amount)).where(
            WriteOff.transaction_id.in_(list(transaction_ids)),
            WriteOff.status.in_(WRITE_OFF_HOLDING))
        .group_by(WriteOff.transaction_id))}


def request_write_off(session: Session, *, amount, reason, actor: str, suspense_item_id=None,
                      transaction_id=None, ageing_run_id: int | None = None,
                      commit: bool = True) -> WriteOff:
    """Request a write-off and start its approval workflow. One commit (unless commit=False).

    Raises ValidationError (no/both sources, bad amount, more than remaining/available, no
    reason), NotFound.
    """
    try:
        if (suspense_item_id is None) == (transaction_id is None):
            raise ValidationError("Give either a suspense item or a transaction.",
                                  {"suspense_item_id": ["Give suspense_item_id or transaction_id."]})
        reason = _reason(reason)
        pence = _amount(amount)
        wo = WriteOff(amount=pence, reason=reason, status="awaiting_approval", requested_by=actor,
                      requested_at=utcnow(), ageing_run_id=ageing_run_id)
        if suspense_item_id is not None:
            item = S.lock_item(session, _id(suspense_item_id, "suspense_item_id"))
            if not SC.suspense_item_allowed(session, item):
                raise SC.OutOfScope()
            if item.status == "withdrawn":
                raise ValidationError("This suspense item was withdrawn.",
                                      {"suspense_item_id": ["Withdrawn."]})
            remaining = S.remaining_of(item)
            if pence > remaining:
                raise ValidationError(
                    f"The write-off of {Money(pence)} is more than the {Money(remaining)} "
                    f"remaining on suspense item {item.id}.",
                    {"amount": [f"More than the remaining {Money(remaining)}."]})
            before = S._snapshot(item)
            item.reserved_amount = (item.reserved_amount or 0) + pence
            S.refresh_status(item)
            wo.suspense_item_id = item.id
            wo.fund_code = S.fund_codes(session)[0]
            wo.account_reference = item.reference_text[:30] if item.reference_text else None
        else:
            txn = L.lock_transaction(session, _id(transaction_id, "transaction_id"))
            SC.require_fund(txn.fund_code)
            available = L.available_amount(session, txn)
            if pence > available:
                raise ValidationError(
                    f"The write-off of {Money(pence)} is more than the {Money(available)} "
                    f"available on transaction {txn.id}.",
                    {"amount": [f"More than the available {Money(available)}."]})
            wo.transaction_id = txn.id
            wo.fund_code = txn.fund_code
            wo.account_reference = txn.account_reference
        session.add(wo)
        session.flush()
        from app.services import workflow as wf

        S.ensure_deployed(session, PROCESS_ID)
        instance = wf.start_workflow(session, PROCESS_ID, SUBJECT, wo.id, actor, {
            "amount_pence": pence, "requester": actor, "reason": reason, "action": ACTION})
        wo.workflow_instance_id = instance.id
        if wo.suspense_item_id:
            audit.record(session, "write_off.request", "SuspenseItem", wo.suspense_item_id,
                         before=before, after={**S._snapshot(item), "write_off": wo.id,
                                               "amount": str(Money(pence))},
                         reason=reason, actor=actor)
        audit.record(session, "request", "WriteOff", wo.id, after=_snap(wo), reason=reason,
                     actor=actor)
        if wo.status == "awaiting_approval":
            from app.models.workflow import WorkflowTask

            roles = sorted(set(session.scalars(select(WorkflowTask.role).where(
                WorkflowTask.instance_id == instance.id, WorkflowTask.status == "ready"))))
            S._notify(session, roles, f"Write-off {wo.id} of {gbp(pence)} awaits approval",
                      f"/write-offs/{wo.id}", about=(SUBJECT, wo.id))
        if commit:
            session.commit()
        else:
            session.flush()
        return wo
    except Exception:
        if commit:
            session.rollback()
        raise


def _snap(wo: WriteOff) -> dict:
    return {"status": wo.status, "amount": str(Money(wo.amount)),
            "suspense_item_id": wo.suspense_item_id, "transaction_id": wo.transaction_id,
            "fund_code": wo.fund_code, "account_reference": wo.account_reference,
            "posting_group_id": wo.posting_group_id}


def _post(session: Session, wo: WriteOff, actor: str) -> PostingGroup:
    susp, woff = S.fund_codes(session)
    if wo.suspense_item_id:
        item = S.lock_item(session, wo.suspense_item_id)
        legs = [L.Leg(L.SUSPENSE, wo.amount, susp), L.Leg(L.WRITE_OFFS, -wo.amount, woff)]
    else:
        txn = L.lock_transaction(session, wo.transaction_id)
        legs = [L.Leg(L.FUND, wo.amount, txn.fund_code, txn.account_reference, txn.id),
                L.Leg(L.WRITE_OFFS, -wo.amount, woff)]
    group = L.post_group(session, "write_off", legs, actor=actor, reason=wo.reason)
    wo.posting_group_id = group.id
    wo.status = "posted"
    wo.posted_at = utcnow()
    if wo.suspense_item_id:
        before = S._snapshot(item)
        item.reserved_amount = max(0, (item.reserved_amount or 0) - wo.amount)
        item.cleared_amount = (item.cleared_amount or 0) + wo.amount
        S.refresh_status(item, written_off=True)
        audit.record(session, "write_off", "SuspenseItem", item.id, before=before,
                     after={**S._snapshot(item), "write_off": wo.id, "number": group.number},
                     reason=wo.reason, actor=actor)
    else:
        audit.record(session, "write_off", "Transaction", wo.transaction_id,
                     after={"write_off": wo.id, "number": group.number,
                            "amount": str(Money(wo.amount))}, reason=wo.reason, actor=actor)
    return group


def _outcome(session: Session, subject_id: str, outcome: str, instance) -> None:
    """Workflow end: approved -> post at once (status posted); rejected -> release the amount."""
    wo = session.get(WriteOff, int(subject_id))
    if wo is None or wo.status != "awaiting_approval":
        return
    from app.models.workflow import WorkflowTask

    actor = audit.current_actor()
    before = _snap(wo)
    wo.decided_at = utcnow()
    wo.approvers = ", ".join(session.scalars(select(WorkflowTask.completed_by).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed",
        WorkflowTask.decision == "approve").order_by(WorkflowTask.completed_at))) or None
    if outcome == "approved":
        wo.status = "approved"
        audit.record(session, "approve", "WriteOff", wo.id, before=before, after=_snap(wo),
                     actor=actor)
        before = _snap(wo)
        _post(session, wo, actor)
        audit.record(session, "post", "WriteOff", wo.id, before=before, after=_snap(wo),
                     actor=actor)
    else:
        wo.status = "rejected"
        wo.decision_comment = instance.error or S._last_comment(session, instance)
        if wo.suspense_item_id:
            item = S.lock_item(session, wo.suspense_item_id)
            b = S._snapshot(item)
            item.reserved_amount = max(0, (item.reserved_amount or 0) - wo.amount)
            S.refresh_status(item)
            audit.record(session, "write_off.reject", "SuspenseItem", item.id, before=b,
                         after={**S._snapshot(item), "write_off": wo.id},
                         reason=wo.decision_comment, actor=actor)
        audit.record(session, "reject", "WriteOff", wo.id, before=before, after=_snap(wo),
                     reason=wo.decision_comment, actor=actor)
    session.flush()
    S._notify(session, [wo.requested_by], f"Write-off {wo.id} was {outcome}",
              f"/write-offs/{wo.id}", about=(SUBJECT, wo.id))


def _summary(session: Session, subject_id: str) -> dict:
    wo = session.get(WriteOff, int(subject_id))
    if wo is None:
        return {"title": N_("Write-off %(id)s", id=subject_id)}
    details = {N_("Write-off"): str(wo.id),
               N_("Source"): N_("Suspense item") if wo.suspense_item_id else N_("Transaction")}
    if wo.suspense_item_id:
        item = session.get(SuspenseItem, wo.suspense_item_id)
        details.update({N_("Suspense item"): str(item.id), N_("Reference as received"):
                        item.reference_text or "", N_("Narrative"): item.narrative or "",
                        N_("Received"): str(item.transaction_date),
                        N_("Item amount"): f"{gbp(item.amount)}"})
    else:
        txn = session.get(Transaction, wo.transaction_id)
        details.update({N_("Transaction"): str(wo.transaction_id),
                        N_("Account"): f"{wo.fund_code} / {wo.account_reference or ''}",
                        N_("Receipt"): txn.receipt_number if txn else "",
                        N_("Transaction amount"): f"{gbp(txn.amount)}" if txn else ""})
    return {"title": N_("Write off %(amount)s", amount=f"{gbp(wo.amount)}"), "details": details,
            "url": f"/write-offs/{wo.id}"}


def get(session: Session, write_off_id) -> WriteOff:
    try:
        wo = session.get(WriteOff, to_id(write_off_id))
    except (TypeError, ValueError):
        wo = None
    if wo is not None and not session.scalar(select(func.count()).select_from(WriteOff).where(
            WriteOff.id == wo.id, *_scoped())):
        raise SC.OutOfScope()
    if wo is None:
        raise NotFound(f"Write-off {write_off_id} does not exist.")
    return wo


def _scoped() -> tuple:
    """The WHERE condition of the user's fund groups (none for all funds)."""
    cond = SC.write_off_condition(WriteOff)
    return () if cond is None else (cond,)


def to_dict(session: Session, wo: WriteOff) -> dict:
    number = session.scalar(select(PostingGroup.number).where(
        PostingGroup.id == wo.posting_group_id)) if wo.posting_group_id else None
    return {"id": wo.id, "status": wo.status, "amount": str(Money(wo.amount)),
            "reason": wo.reason, "suspense_item_id": wo.suspense_item_id,
            "transaction_id": wo.transaction_id, "fund_code": wo.fund_code,
            "account_reference": wo.account_reference, "requested_by": wo.requested_by,
            "requested_at": wo.requested_at.isoformat() if wo.requested_at else None,
            "workflow_instance_id": wo.workflow_instance_id, "approvers": wo.approvers,
            "decision_comment": wo.decision_comment, "posting_number": number,
            "posted_at": wo.posted_at.isoformat() if wo.posted_at else None}


# --------------------------------------------------------------------------- register
@dataclass
class RegisterFilters:
    status: str | None = None
    source: str | None = None   # suspense | transaction
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    requested_by: str | None = None
    fund_code: str | None = None
    min_amount: int | None = None
    max_amount: int | None = None


def _filter_date(value) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _filter_money(value, parse_money) -> int | None:
    if not value:
        return None
    try:
        return parse_money(value, allow_zero=True).pence
    except ValidationError:
        return None


def filters_from(args, parse_money=Money.parse) -> RegisterFilters:
    """Register filters from query arguments (bad ones are ignored). Amounts are read by
    ``parse_money``: the strict parser (the API), or Money.parse_form for the pages."""
    status = args.get("status") or None
    return RegisterFilters(
        status=status if status in WRITE_OFF_STATUSES else None,
        source=args.get("source") if args.get("source") in ("suspense", "transaction") else None,
        date_from=_filter_date(args.get("from")), date_to=_filter_date(args.get("to")),
        requested_by=(args.get("requested_by") or "").strip() or None,
        fund_code=(args.get("fund_code") or "").strip() or None,
        min_amount=_filter_money(args.get("min"), parse_money),
        max_amount=_filter_money(args.get("max"), parse_money))


def register_query(f: RegisterFilters):
    q = select(WriteOff).where(*_scoped())
    if f.status:
        q = q.where(WriteOff.status == f.status)
    if f.source == "suspense":
        q = q.where(WriteOff.suspense_item_id.is_not(None))
    elif f.source == "transaction":
        q = q.where(WriteOff.transaction_id.is_not(None))
    if f.date_from:
        q = q.where(WriteOff.requested_at >= dt.datetime.combine(f.date_from, dt.time.min,
                                                                 tzinfo=dt.timezone.utc))
    if f.date_to:
        q = q.where(WriteOff.requested_at < dt.datetime.combine(
            f.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc))
    if f.requested_by:
        q = q.where(WriteOff.requested_by == f.requested_by)
    if f.fund_code:
        q = q.where(WriteOff.fund_code == f.fund_code.upper())
    if f.min_amount is not None:
        q = q.where(WriteOff.amount >= f.min_amount)
    if f.max_amount is not None:
        q = q.where(WriteOff.amount <= f.max_amount)
    return q.order_by(WriteOff.id.desc())


CSV_COLUMNS = ["id", "status", "amount", "source", "suspense_item_id", "transaction_id",
               "fund_code", "account_reference", "reason", "requested_by", "requested_at",
               "approvers", "decision_comment", "posting_number", "posted_at"]


def export_csv(session: Session, f: RegisterFilters):
    """The register as CSV lines (a generator; formula-looking cells are quoted with ')."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    for wo in session.scalars(register_query(f).execution_options(yield_per=500)):
        d = to_dict(session, wo)
        d["source"] = wo.source
        buf.seek(0)
        buf.truncate()
        w.writerow([_safe(d.get(c)) for c in CSV_COLUMNS])
        yield buf.getvalue()


def _safe(value):
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- ageing
def run_ageing(session: Session, *, weeks: int | None = None, today: dt.date | None = None
               ) -> SuspenseAgeingRun:
    """List the open items older than the configured age (IMS_SUSPENSE_AGE_WEEKS). One commit."""
    weeks = weeks or S.age_weeks()
    today = today or dt.date.today()
    items = S.aged_items(session, weeks=weeks, today=today)
    run = SuspenseAgeingRun(run_at=utcnow(), cutoff_date=today - dt.timedelta(weeks=weeks),
                            age_weeks=weeks, item_count=len(items),
                            total_amount=sum(S.remaining_of(i) for i in items),
                            item_ids=json.dumps([i.id for i in items]))
    session.add(run)
    session.flush()
    audit.record(session, "ageing.run", "SuspenseAgeingRun", run.id,
                 after={"items": run.item_count, "total": str(Money(run.total_amount)),
                        "age_weeks": weeks}, actor=audit.current_actor())
    if items:
        S._notify(session, ["Income Clerk"], f"{len(items)} suspense item(s) older than "
                  f"{weeks} weeks can be proposed for write-off", "/write-offs/ageing")
    session.commit()
    return run


def latest_run(session: Session) -> SuspenseAgeingRun | None:
    return session.scalar(select(SuspenseAgeingRun).order_by(SuspenseAgeingRun.id.desc()).limit(1))


def run_items(session: Session, run: SuspenseAgeingRun) -> list[SuspenseItem]:
    """The run's items that are still open with money remaining."""
    ids = json.loads(run.item_ids or "[]")
    if not ids:
        return []
    items = session.scalars(select(SuspenseItem).where(SuspenseItem.id.in_(ids[:5000]))
                            .order_by(SuspenseItem.transaction_date, SuspenseItem.id)).all()
    return [i for i in items if i.status in S.OPEN_STATUSES and S.remaining_of(i) > 0]


def propose_aged(session: Session, item_ids, *, reason, actor: str,
                 ageing_run_id: int | None = None) -> list[WriteOff]:
    """A clerk confirms which aged items to propose: one write-off request per item for its whole
    remaining amount. All or nothing (one commit); errors name the item."""
    try:
        ids = S._ids(item_ids)
        reason = _reason(reason)
        created = []
        for item_id in ids:
            item = S.lock_item(session, item_id)
            remaining = S.remaining_of(item)
            if item.status not in S.OPEN_STATUSES or remaining <= 0:
                raise ValidationError(f"Suspense item {item_id} has nothing left to write off.",
                                      {"ids": [f"Item {item_id}: nothing remaining."]})
            try:
                created.append(request_write_off(
                    session, suspense_item_id=item_id, amount=remaining, reason=reason,
                    actor=actor, ageing_run_id=ageing_run_id, commit=False))
            except ValidationError as exc:
                raise ValidationError(f"Suspense item {item_id}: {exc.message}",
                                      {"ids": [f"Item {item_id}: {exc.message}"]}) from None
        session.commit()
        return created
    except Exception:
        session.rollback()
        raise


def _ageing_job() -> str | None:
    """Daily: list aged items (skipped when a run happened in the last 20 hours)."""
    from app.extensions import db

    session = db.session
    last = latest_run(session)
    if last is not None and utcnow() - _aware(last.run_at) < dt.timedelta(hours=20):
        session.rollback()
        return None
    run = run_ageing(session)
    return f"{run.item_count} suspense item(s) older than {run.age_weeks} weeks " \
           f"({gbp(run.total_amount)}) listed for write-off proposal"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _register() -> None:
    from app.services import workflow as wf
    from app.services.jobs import register_job

    wf.register_subject(SUBJECT, _summary, _outcome)
    register_job("suspense-ageing", _ageing_job)


_register()
