"""Refunds: request (checked against what is available), approval through refund_approval.bpmn,
posting, card payment through the provider, BACS and cheque payment runs, the register.

Postings: on approval Dr Fund:account / Cr Refunds Payable; when paid Dr Refunds Payable /
Cr Bank; a failed card payment reverses the approval posting (the refund stops reserving money
and can be retried). Pending, approved and paid refunds reserve money against the transaction
(registered with app.services.ledger.register_reservation), so available never goes below zero:
requests lock the transaction row first.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.ids import to_id
from app.domain.labels import ACTIONS, label
from app.domain.money import Money, gbp
from app.models.base import utcnow
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import AccountHolder, PaymentMethod
from app.models.refund import (
    RESERVING,
    TRANSITIONS,
    Refund,
    RefundMethod,
    RefundPaymentRun,
    RefundStatus,
)
from app.models.workflow import WorkflowInstance, WorkflowTask
from app.security import roles as R
from app.services import audit, clearing
from app.services import ledger as L
from app.services import scope as SC
from app.services import workflow as wf
from app.services.idempotency import check_same_request
from app.services.locking import for_update
from app.services.notifications import notify
from app.services.payments import ProviderError, get_provider

log = logging.getLogger(__name__)

PROCESS_ID = "refund_approval"
SUBJECT_TYPE = "refund"
METHODS = tuple(m.value for m in RefundMethod)
STATUSES = tuple(s.value for s in RefundStatus)
SORT_CODE = re.compile(r"^\d{2}-\d{2}-\d{2}$")
ACCOUNT_NUMBER = re.compile(r"^\d{8}$")
#: session.info key: card refunds approved in this transaction, paid once it has committed
PAY_QUEUE = "ims_refunds_to_pay"


def _cfg() -> dict:
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            return current_app.config
    except ImportError:  # pragma: no cover
        pass
    return {}


def _setting(key: str, default: str = "") -> str:
    """A setting from the app config, else the environment (for keys config.py does not list)."""
    value = _cfg().get(key)
    if value in (None, ""):
        value = os.environ.get(key, default)
    return str(value) if value is not None else default


def refund_link(refund_id: int) -> str:
    return f"/refunds/{refund_id}"


# --------------------------------------------------------------------------- reservations
@L.register_reservation
def reserved_by_transaction(session: Session, transaction_ids) -> dict[int, int]:
    """Pence of each transaction held by its refunds that are not rejected or failed (ids with
    none left out), in one query."""
    if not transaction_ids:
        return {}
    return {tid: int(pence) for tid, pence in session.execute(
        select(Refund.transaction_id, func.sum(Refund.amount)).where(
            Refund.transaction_id.in_(list(transaction_ids)),
            Refund.status.in_([s.value for s in RESERVING]))
        .group_by(Refund.transaction_id))}


# --------------------------------------------------------------------------- helpers
def _transition(session: Session, refund: Refund, to: str, actor: str,
                reason: str | None = None, **extra) -> None:
    """Move a refund to status ``to`` (checked against TRANSITIONS) and audit it."""
    before = refund.status
    if to not in TRANSITIONS.get(before, frozenset()):
        raise Conflict(f"Refund {refund.id} is {before}; it cannot become {to}.",
                       {"status": [f"The refund is {before}."]})
    refund.status = to
    session.flush()
    audit.record(session, f"refund.{to}", "Refund", refund.id, before={"status": before},
                 after={"status": to, **extra}, reason=reason, actor=actor)


def _lock_refund(session: Session, refund_id) -> Refund:
    try:
        rid = to_id(refund_id)
    except (TypeError, ValueError):
        raise NotFound(f"Refund {refund_id} does not exist.") from None
    stmt = for_update(session, select(Refund).where(Refund.id == rid)
                      .execution_options(populate_existing=True))
    refund = session.scalar(stmt)
    if refund is None:
        raise NotFound(f"Refund {refund_id} does not exist.")
    return refund


def get_refund(session: Session, refund_id) -> Refund:
    """The refund, or NotFound."""
    try:
        refund = session.get(Refund, to_id(refund_id))
    except (TypeError, ValueError):
        refund = None
    if refund is not None and not SC.fund_allowed(session.scalar(
            select(Transaction.fund_code).where(Transaction.id == refund.transaction_id))):
        raise SC.OutOfScope()
    if refund is None:
        raise NotFound(f"Refund {refund_id} does not exist.")
    return refund


def _normal_name(name: str | None) -> str:
    text = unicodedata.normalize("NFKD", name or "")
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^A-Za-z0-9 ]+", " ", text).upper()
    words = [w for w in text.split() if w not in ("MR", "MRS", "MS", "MISS", "DR", "MX")]
    return " ".join(words)


def payer_name_of(session: Session, txn: Transaction) -> str | None:
    """The account holder's name for the transaction's fund and reference, if there is one."""
    if not txn.account_reference:
        return None
    return session.scalar(select(AccountHolder.name).where(
        AccountHolder.fund_code == txn.fund_code,
        AccountHolder.account_reference == txn.account_reference))


def _text(value, field_name: str, errors: dict, *, required: bool, max_len: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.setdefault(field_name, []).append("This is required.")
        return None
    if not isinstance(value, str):
        errors.setdefault(field_name, []).append("Must be text.")
        return None
    value = value.strip()
    if len(value) > max_len:
        errors.setdefault(field_name, []).append(f"At most {max_len} characters.")
        return None
    return value


def check_payee(payee, method: str, errors: dict) -> dict:
    """Validate the payee (name, sort code NN-NN-NN, 8-digit account) for BACS; name for cheques."""
    if payee is None:
        payee = {}
    if not isinstance(payee, dict):
        errors.setdefault("payee", []).append("Give the payee as an object.")
        return {}
    out: dict = {}
    if method == RefundMethod.BACS:
        out["name"] = _text(payee.get("name"), "payee.name", errors, required=True, max_len=200)
        sort_code = payee.get("sort_code")
        if not isinstance(sort_code, str) or not SORT_CODE.match(sort_code.strip()):
            errors.setdefault("payee.sort_code", []).append(
                "Give the sort code as six digits in pairs, NN-NN-NN.")
        else:
            out["sort_code"] = sort_code.strip()
        account = payee.get("account_number")
        if not isinstance(account, str) or not ACCOUNT_NUMBER.match(account.strip()):
            errors.setdefault("payee.account_number", []).append(
                "Give the account number as exactly 8 digits.")
        else:
            out["account_number"] = account.strip()
    elif method == RefundMethod.CHEQUE:
        out["name"] = _text(payee.get("name"), "payee.name", errors, required=False, max_len=200)
    return out


def _parse_amount(value) -> int:
    try:
        return Money.parse(value, field="amount").pence
    except ValidationError as exc:
        msgs = next(iter(exc.errors.values())) if exc.errors else [exc.message]
        raise ValidationError(f"amount: {msgs[0]}", {"amount": msgs}) from None


# --------------------------------------------------------------------------- request
def ensure_deployed(session: Session) -> None:
    """Deploy workflows/refund_approval.bpmn if no version is active (joins the transaction).

    A Workflow Administrator's uploaded version, once active, is always the one used.
    """
    if wf.active_definition(session, PROCESS_ID) is not None:
        return
    with open(os.path.join(wf.WORKFLOW_DIR, f"{PROCESS_ID}.bpmn"), "rb") as fh:
        wf.deploy_definition(session, fh.read(), "system", expected_process_id=PROCESS_ID,
                             commit=False)


@dataclass
class RequestResult:
    refund: Refund
    replayed: bool = False


def request_refund(session: Session, *, transaction_id, amount, reason, method, payee=None,
                   actor: str, office_code: str | None = None,
                   idempotency_key: str | None = None,
                   idempotency_fingerprint: str | None = None) -> RequestResult:
    """Request a full or partial refund of one transaction and start its approval workflow.

    One commit. Raises ValidationError (422: bad amount, over the available amount, missing
    reason, card refund of a non-card payment, malformed bank details), NotFound (404: no such
    transaction or no deployed refund workflow). A repeat of ``idempotency_key`` by the same
    user returns the first refund (``replayed``), unless ``idempotency_fingerprint`` (of the
    request's body) differs from the first request's: ValidationError (422).
    """
    try:
        if idempotency_key is not None:
            first = session.scalar(select(Refund).where(Refund.requested_by == actor,
                                                        Refund.idempotency_key == idempotency_key))
            if first is not None:
                check_same_request(first.idempotency_fingerprint, idempotency_fingerprint)
                session.rollback()
                return RequestResult(first, True)
        errors: dict[str, list[str]] = {}
        if isinstance(transaction_id, bool) or not isinstance(transaction_id, (int, str)) \
                or not str(transaction_id).strip().isdigit():
            raise ValidationError("transaction_id: give a transaction id.",
                                  {"transaction_id": ["Give a transaction id."]})
        pence = None
        try:
            pence = _parse_amount(amount)
        except ValidationError as exc:
            errors.update(exc.errors)
        reason_text = _text(reason, "reason", errors, required=True, max_len=1000)
        if method not in METHODS:
            errors.setdefault("method", []).append("Choose card, bacs or cheque.")
            details = {}
        else:
            details = check_payee(payee, method, errors)
        if errors:
            raise ValidationError("The refund was not requested: " + "; ".join(
                f"{k}: {v[0]}" for k, v in errors.items()), errors)
        txn = L.lock_transaction(session, transaction_id)
        SC.require_fund(txn.fund_code)
        pm = session.scalar(select(PaymentMethod).where(PaymentMethod.code == txn.payment_method_code))
        if method == RefundMethod.CARD:
            if pm is None or pm.kind != "card" or not pm.refundable:
                raise ValidationError(
                    f"A card refund needs a refundable card payment; this was paid by "
                    f"{pm.name if pm else txn.payment_method_code}. Refund by BACS or cheque.",
                    {"method": ["Card refunds are only for refundable card payments."]})
            if not txn.external_reference:
                raise ValidationError(
                    "The card payment has no payment id (external reference) to refund against.",
                    {"method": ["No card payment id on this transaction."]})
        available = L.available_amount(session, txn)
        if pence > available:
            raise ValidationError(
                f"The refund of {gbp(pence)} is more than the {gbp(available)} available "
                f"(pending refunds count).",
                {"amount": [f"At most {gbp(available)} is available."]})
        payer = payer_name_of(session, txn)
        payee_name = details.get("name")
        differs = False
        if method == RefundMethod.BACS or (method == RefundMethod.CHEQUE and payee_name):
            differs = payer is None or _normal_name(payee_name) != _normal_name(payer)
        if method == RefundMethod.CHEQUE and not payee_name:
            if not payer:
                raise ValidationError("Give the payee's name for the cheque.",
                                      {"payee.name": ["The payer is not known: give a name."]})
            payee_name = payer
        refund = Refund(transaction_id=txn.id, amount=pence, reason=reason_text, method=method,
                        status=RefundStatus.AWAITING_APPROVAL, payer_name=payer,
                        payee_name=payee_name if method != RefundMethod.CARD else None,
                        sort_code=details.get("sort_code"),
                        account_number=details.get("account_number"), payee_differs=differs,
                        requested_by=actor, requested_at=utcnow(), office_code=office_code,
                        idempotency_key=idempotency_key,
                        idempotency_fingerprint=idempotency_fingerprint
                        if idempotency_key is not None else None)
        session.add(refund)
        session.flush()
        audit.record(session, "refund.request", "Refund", refund.id, after={
            "transaction_id": txn.id, "amount": str(Money(pence)), "method": method,
            "payee_name": refund.payee_name, "sort_code": refund.sort_code,
            "account_number": refund.masked_account or None, "payee_differs": differs,
            "status": refund.status}, reason=reason_text, actor=actor)
        ensure_deployed(session)
        instance = wf.start_workflow(session, PROCESS_ID, SUBJECT_TYPE, refund.id, actor, {
            "amount_pence": pence, "requester": actor, "reason": reason_text, "action": "refund",
            "method": method, "payee_differs": differs, "refund_id": refund.id,
            "transaction_id": txn.id})
        refund.workflow_instance_id = instance.id
        session.flush()
        session.commit()
        return RequestResult(refund)
    except IntegrityError:
        session.rollback()
        if idempotency_key is not None:
            first = session.scalar(select(Refund).where(Refund.requested_by == actor,
                                                        Refund.idempotency_key == idempotency_key))
            if first is not None:
                check_same_request(first.idempotency_fingerprint, idempotency_fingerprint)
                return RequestResult(first, True)
        raise Conflict("The refund could not be saved because of a concurrent change; try again.")
    except Exception:
        session.rollback()
        raise


# --------------------------------------------------------------------------- workflow subject
def refund_summary(session: Session, subject_id: str) -> dict:
    """What the approver sees on the task page."""
    refund = get_refund(session, subject_id)
    txn = session.get(Transaction, refund.transaction_id)
    details = {
        N_("Refund"): N_("%(id)s (%(status)s)", id=refund.id,
                         status=label("refund", refund.status)),
        N_("Transaction"): N_("%(id)s — receipt %(receipt)s, %(date)s", id=txn.id,
                              receipt=txn.receipt_number or "", date=txn.transaction_date),
        N_("Fund / account"): f"{txn.fund_code} / {txn.account_reference or ''}",
        N_("Paid in"): N_("%(amount)s by %(method)s", amount=f"{gbp(txn.amount)}",
                          method=txn.payment_method_code),
        N_("Refund method"): {"card": N_("Back to the card"), "bacs": N_("BACS"),
                          "cheque": N_("Cheque")}[refund.method],
        N_("Payer (account holder)"): refund.payer_name or N_("not known"),
    }
    if refund.method != RefundMethod.CARD:
        details[N_("Payee")] = refund.payee_name or ""
    if refund.method == RefundMethod.BACS:
        details[N_("Bank account")] = f"{refund.sort_code} {refund.account_number}"
    if refund.payee_differs:
        details[N_("CHECK")] = N_("The payee differs from the payer: confirm the bank details are genuine.")
    history = [{"at": e.occurred_at, "actor": e.actor,
                "action": ACTIONS.get(e.action, e.action), "detail": e.reason or ""}
               for e in reversed(audit.history_for(session, "Refund", refund.id))]
    return {"title": N_("Refund %(id)s: %(amount)s to %(payee)s", id=refund.id,
                        amount=f"{gbp(refund.amount)}",
                        payee=refund.payee_name or refund.payer_name or N_("the card")),
            "details": details, "url": refund_link(refund.id), "history": history}


def _last_decider(session: Session, instance: WorkflowInstance) -> tuple[str, str | None]:
    task = session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed")
        .order_by(WorkflowTask.completed_at.desc(), WorkflowTask.id.desc()).limit(1))
    if task is None:
        return "system", None
    return task.completed_by or "system", task.comment


def _post_approval(session: Session, refund: Refund, txn: Transaction, actor: str) -> PostingGroup:
    group = L.post_group(session, "refund", [
        L.Leg(L.FUND, refund.amount, txn.fund_code, txn.account_reference, txn.id),
        L.Leg(L.REFUNDS_PAYABLE, -refund.amount, txn.fund_code, txn.account_reference, txn.id),
    ], actor=actor, office_code=refund.office_code,
        reason=f"Refund {refund.id} approved: {refund.reason}"[:1000])
    refund.approval_group_id = group.id
    return group


def on_refund_outcome(session: Session, subject_id: str, outcome: str,
                      instance: WorkflowInstance) -> None:
    """The workflow decided: post the approval (and queue a card payment) or record a rejection.

    Runs inside the transaction that completed the workflow; never commits.
    """
    refund = _lock_refund(session, subject_id)
    if refund.status != RefundStatus.AWAITING_APPROVAL:
        log.warning("refund %s is %s; outcome %s ignored", refund.id, refund.status, outcome)
        return
    actor, comment = _last_decider(session, instance)
    if instance.error:  # the four-eyes floor stopped an approval (app/services/workflow.py)
        actor, comment = "system", instance.error
    refund.decided_at = utcnow()
    if outcome == "approved":
        txn = session.get(Transaction, refund.transaction_id)
        group = _post_approval(session, refund, txn, actor)
        _transition(session, refund, RefundStatus.APPROVED, actor, comment,
                    posting=group.number, workflow_instance=instance.id)
        notify(session, [refund.requested_by],
               f"Refund {refund.id} of {gbp(refund.amount)} was approved.",
               refund_link(refund.id), about=(SUBJECT_TYPE, refund.id))
        if refund.method == RefundMethod.CARD:
            session.info.setdefault(PAY_QUEUE, []).append(refund.id)
        else:
            notify(session, [R.MANAGER],
                   f"Refund {refund.id} ({refund.method.upper()}, {gbp(refund.amount)}) is "
                   f"approved and waiting for a refund payment run.", "/refund-payment-runs/",
                   exclude=[refund.requested_by], about=(SUBJECT_TYPE, refund.id))
    else:
        refund.rejection_reason = comment or "Rejected."
        _transition(session, refund, RefundStatus.REJECTED, actor, refund.rejection_reason,
                    workflow_instance=instance.id)
        notify(session, [refund.requested_by],
               f"Refund {refund.id} of {gbp(refund.amount)} was rejected by {actor}: "
               f"{refund.rejection_reason}", refund_link(refund.id),
               about=(SUBJECT_TYPE, refund.id))


wf.register_subject(SUBJECT_TYPE, refund_summary, on_refund_outcome)


# --------------------------------------------------------------------------- card payment
def _card_available_at_provider(session: Session, txn: Transaction) -> int:
    """What the provider still holds on the card payment: the payment (all lines of the receipt
    with the same payment id) less card refunds already paid."""
    same_payment = select(Transaction.id).where(
        Transaction.posting_group_id == txn.posting_group_id,
        Transaction.external_reference == txn.external_reference)
    paid_total = int(session.scalar(select(func.coalesce(func.sum(Transaction.amount), 0)).where(
        Transaction.id.in_(same_payment))) or 0)
    refunded = int(session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)).where(
        Refund.transaction_id.in_(same_payment), Refund.method == RefundMethod.CARD,
        Refund.status == RefundStatus.PAID)) or 0)
    return paid_total - refunded


def pay_card_refund(session: Session, refund_id, *, actor: str = "system",
                    provider=None) -> Refund:
    """Pay an approved card refund through the provider; one commit.

    Paid: Dr Refunds Payable / Cr Card clearing (the provider nets it off its settlement), status ``paid``. Refused: the approval posting is
    reversed and the status is ``failed`` (retry with ``retry_refund``). Provider unreachable:
    the refund stays ``approved`` and is retried later with the same idempotency key, so it is
    never paid twice. Already paid: returned unchanged. Raises NotFound, Conflict (not approved),
    ValidationError (not a card refund).
    """
    try:
        refund = _lock_refund(session, refund_id)
        if refund.method != RefundMethod.CARD:
            raise ValidationError(f"Refund {refund.id} is paid by a payment run, not by card.",
                                  {"method": ["Not a card refund."]})
        if refund.status == RefundStatus.PAID:
            session.rollback()
            return refund
        if refund.status != RefundStatus.APPROVED:
            raise Conflict(f"Refund {refund.id} is {refund.status}; only an approved refund is paid.",
                           {"status": [f"The refund is {refund.status}."]})
        txn = session.get(Transaction, refund.transaction_id)
        provider = provider or get_provider(config=_cfg())
        key = f"ims-refund-{refund.id}-{refund.payment_attempts + 1}"
        try:
            result = provider.refund(payment_id=txn.external_reference or "", amount=refund.amount,
                                     refund_amount_available=_card_available_at_provider(session, txn),
                                     idempotency_key=key, reference=f"IMS refund {refund.id}")
        except ProviderError as exc:
            refund.failure_reason = f"Provider not reached; the payment will be retried: {exc}"[:2000]
            session.flush()
            audit.record(session, "refund.payment_pending", "Refund", refund.id,
                         after={"provider": provider.name, "idempotency_key": key,
                                "error": str(exc)[:500]}, actor=actor)
            session.commit()
            return refund
        refund.provider = provider.name
        if result.succeeded:
            group = L.post_group(session, "refund_payment", [
                L.Leg(L.REFUNDS_PAYABLE, refund.amount, txn.fund_code, txn.account_reference, txn.id),
                clearing.card_clearing_leg(-refund.amount, provider.name, txn.id),
            ], actor=actor, office_code=refund.office_code,
                reason=f"Refund {refund.id} paid to card ({provider.name} {result.provider_refund_id})")
            refund.payment_group_id = group.id
            refund.provider_refund_id = result.provider_refund_id
            refund.paid_at = utcnow()
            refund.paid_by = actor
            refund.failure_reason = None
            _transition(session, refund, RefundStatus.PAID, actor, None, posting=group.number,
                        provider=provider.name, provider_refund_id=result.provider_refund_id,
                        idempotency_key=key)
            notify(session, [refund.requested_by],
                   f"Refund {refund.id} of {gbp(refund.amount)} was paid back to the card.",
                   refund_link(refund.id), about=(SUBJECT_TYPE, refund.id))
        else:
            approval = session.get(PostingGroup, refund.approval_group_id)
            reason = f"Card refund {refund.id} failed: {result.message}"[:1000]
            if approval is not None and not L.is_reversed(session, approval):
                L.reverse_group(session, approval, actor=actor, reason=reason)
            refund.payment_attempts += 1
            refund.failure_reason = result.message[:2000]
            _transition(session, refund, RefundStatus.FAILED, actor, result.message[:1000],
                        provider=provider.name, idempotency_key=key)
            notify(session, [refund.requested_by, R.MANAGER],
                   f"Refund {refund.id} of {gbp(refund.amount)} could not be paid to the card: "
                   f"{result.message} It can be retried.", refund_link(refund.id),
                   about=(SUBJECT_TYPE, refund.id))
        session.commit()
        return refund
    except Exception:
        session.rollback()
        raise


def pay_queued(session: Session, actor: str = "system") -> list[int]:
    """Pay the card refunds approved in transactions this session has committed."""
    ids = session.info.pop(PAY_QUEUE, None) or []
    done = []
    for rid in ids:
        try:
            pay_card_refund(session, rid, actor=actor)
            done.append(rid)
        except Exception:  # the tick job retries; the refund stays approved
            log.exception("card refund %s could not be paid now", rid)
            session.rollback()
    return done


def pay_due_card_refunds(session: Session, limit: int = 100) -> int:
    """Pay approved card refunds still waiting (after a crash or an unreachable provider)."""
    ids = list(session.scalars(select(Refund.id).where(
        Refund.method == RefundMethod.CARD, Refund.status == RefundStatus.APPROVED)
        .order_by(Refund.id).limit(limit)))
    session.rollback()
    paid = 0
    for rid in ids:
        try:
            if pay_card_refund(session, rid, actor="worker").status == RefundStatus.PAID:
                paid += 1
        except Exception:
            log.exception("card refund %s could not be paid", rid)
            session.rollback()
    return paid


def retry_refund(session: Session, refund_id, *, actor: str, provider=None) -> Refund:
    """Retry a failed card refund: re-post the approval (if still available) and pay again.

    Raises NotFound, Conflict (not failed), ValidationError (the money is no longer available).
    """
    try:
        refund = _lock_refund(session, refund_id)
        if refund.status != RefundStatus.FAILED:
            raise Conflict(f"Refund {refund.id} is {refund.status}; only a failed refund is retried.",
                           {"status": [f"The refund is {refund.status}."]})
        txn = L.lock_transaction(session, refund.transaction_id)
        refund = _lock_refund(session, refund_id)  # lock_transaction may expire the session
        available = L.available_amount(session, txn)
        if refund.amount > available:
            raise ValidationError(
                f"Only {gbp(available)} is now available; the refund of {gbp(refund.amount)} "
                f"cannot be retried.", {"amount": [f"At most {gbp(available)} is available."]})
        group = _post_approval(session, refund, txn, actor)
        _transition(session, refund, RefundStatus.APPROVED, actor, "Retry of a failed payment",
                    posting=group.number)
        session.commit()
    except Exception:
        session.rollback()
        raise
    if refund.method == RefundMethod.CARD:
        return pay_card_refund(session, refund.id, actor=actor, provider=provider)
    return refund


def _job() -> str | None:
    from app.extensions import db

    session = db.session
    n = pay_due_card_refunds(session)
    waiting = session.scalar(select(func.count(Refund.id)).where(
        Refund.method == RefundMethod.CARD, Refund.status == RefundStatus.APPROVED))
    session.rollback()
    parts = ([f"{n} card refund(s) paid"] if n else []) + (
        [f"{waiting} still waiting for the provider (each attempt is audited)"] if waiting else [])
    return "; ".join(parts) or None


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("refund-card-payments", _job)


_register_job()


# --------------------------------------------------------------------------- payment runs
def awaiting_payment_run(session: Session) -> list[Refund]:
    """Approved BACS and cheque refunds not yet in a payment run, oldest first."""
    return list(session.scalars(select(Refund).where(
        Refund.status == RefundStatus.APPROVED,
        Refund.method.in_([RefundMethod.BACS, RefundMethod.CHEQUE]),
        Refund.payment_run_id.is_(None)).order_by(Refund.id)))


@dataclass
class RunResult:
    run: RefundPaymentRun
    skipped: list[int] = field(default_factory=list)


def create_payment_run(session: Session, *, refund_ids, actor: str,
                       office_code: str | None = None) -> RunResult:
    """Pay the selected approved BACS/cheque refunds in one numbered run; one commit.

    Each refund is locked and re-checked, so a refund is in at most one run and paid once
    (Dr Refunds Payable / Cr Bank). Raises ValidationError (nothing selected) or Conflict (none
    of the selected refunds is still waiting for payment).
    """
    try:
        ids = set()
        for raw in refund_ids or []:
            try:
                ids.add(to_id(raw))
            except (TypeError, ValueError):
                raise ValidationError("Select refunds by their ids.",
                                      {"refund_ids": [f"{raw!r} is not a refund id."]}) from None
        if not ids:
            raise ValidationError("Select at least one refund to pay.",
                                  {"refund_ids": ["Select at least one refund."]})
        stmt = for_update(session, select(Refund).where(Refund.id.in_(sorted(ids)))
                          .order_by(Refund.id).execution_options(populate_existing=True))
        refunds = list(session.scalars(stmt))
        payable = [r for r in refunds if r.status == RefundStatus.APPROVED
                   and r.method in (RefundMethod.BACS, RefundMethod.CHEQUE)
                   and r.payment_run_id is None]
        skipped = sorted(ids - {r.id for r in payable})
        if not payable:
            raise Conflict("None of the selected refunds is waiting for payment (already paid, "
                           "or not approved).", {"refund_ids": ["Nothing left to pay."]})
        number = L.next_number(session, "RR")
        legs = []
        for r in payable:
            txn = session.get(Transaction, r.transaction_id)
            legs.append(L.Leg(L.REFUNDS_PAYABLE, r.amount, txn.fund_code, txn.account_reference, txn.id))
            legs.append(L.Leg(L.BANK, -r.amount, None, None, txn.id))
        group = L.post_group(session, "refund_payment", legs, actor=actor, office_code=office_code,
                             reason=f"Refund payment run {number}")
        bacs = [r for r in payable if r.method == RefundMethod.BACS]
        cheques = [r for r in payable if r.method == RefundMethod.CHEQUE]
        run = RefundPaymentRun(number=number, created_by=actor, created_at=utcnow(),
                               bacs_count=len(bacs), bacs_total=sum(r.amount for r in bacs),
                               cheque_count=len(cheques),
                               cheque_total=sum(r.amount for r in cheques),
                               posting_group_id=group.id)
        session.add(run)
        session.flush()
        now = utcnow()
        for r in payable:
            r.payment_run_id = run.id
            r.payment_group_id = group.id
            r.paid_at = now
            r.paid_by = actor
            _transition(session, r, RefundStatus.PAID, actor, None, payment_run=number,
                        posting=group.number)
            how = "BACS" if r.method == RefundMethod.BACS else "cheque"
            notify(session, [r.requested_by],
                   f"Refund {r.id} of {gbp(r.amount)} was paid by {how} in run {number}.",
                   refund_link(r.id), about=(SUBJECT_TYPE, r.id))
        audit.record(session, "refund_payment_run.create", "RefundPaymentRun", run.id, after={
            "number": number, "refunds": [r.id for r in payable],
            "bacs_total": str(Money(run.bacs_total)), "cheque_total": str(Money(run.cheque_total)),
            "posting": group.number}, actor=actor)
        session.commit()
        return RunResult(run, skipped)
    except Exception:
        session.rollback()
        raise


def get_run(session: Session, run_id) -> RefundPaymentRun:
    try:
        run = session.get(RefundPaymentRun, to_id(run_id))
    except (TypeError, ValueError):
        run = None
    if run is None:
        raise NotFound(f"Payment run {run_id} does not exist.")
    return run


_BACS_CHARS = re.compile(r"[^A-Z0-9.&/\- ]")


def bacs_text(value: str | None, width: int) -> str:
    """Upper-case Bacs character set (A-Z 0-9 . & / - space), cut or padded to ``width``."""
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    return _BACS_CHARS.sub(" ", text)[:width].ljust(width)


def originator() -> dict:
    """The council's own bank account and Bacs name (config IMS_BACS_ORIGINATOR_*)."""
    sort_code = re.sub(r"\D", "", _setting("IMS_BACS_ORIGINATOR_SORT_CODE"))
    account = re.sub(r"\D", "", _setting("IMS_BACS_ORIGINATOR_ACCOUNT"))
    return {"sort_code": sort_code[:6].rjust(6, "0"), "account": account[:8].rjust(8, "0"),
            "name": _setting("IMS_BACS_ORIGINATOR_NAME") or _setting("COUNCIL_NAME", "COUNCIL")}


def bacs_reference(refund: Refund) -> str:
    return f"IMS REFUND {refund.id:06d}"


def standard18_record(*, dest_sort: str, dest_account: str, code: str, orig_sort: str,
                      orig_account: str, amount: int, orig_name: str, reference: str,
                      dest_name: str) -> str:
    """One 100-character Bacs Standard 18 record.

    Positions (1-based): 1-6 destination sort code, 7-14 destination account, 15 account type
    (0), 16-17 transaction code, 18-23 originating sort code, 24-31 originating account, 32-35
    free (spaces), 36-46 amount in pence (11 digits), 47-64 originator's name, 65-82 reference,
    83-100 destination account name.
    """
    record = (dest_sort + dest_account + "0" + code + orig_sort + orig_account + " " * 4
              + f"{amount:011d}" + bacs_text(orig_name, 18) + bacs_text(reference, 18)
              + bacs_text(dest_name, 18))
    assert len(record) == 100, len(record)
    return record


def bacs_standard18(run: RefundPaymentRun, orig: dict | None = None, contra: bool = True) -> str:
    """The run's BACS refunds as Standard 18 credit records (code 99), then one contra record
    (code 17) debiting the originating account with the total."""
    orig = orig or originator()
    lines = []
    bacs = [r for r in run.refunds if r.method == RefundMethod.BACS]
    for r in bacs:
        lines.append(standard18_record(
            dest_sort=r.sort_code.replace("-", ""), dest_account=r.account_number, code="99",
            orig_sort=orig["sort_code"], orig_account=orig["account"], amount=r.amount,
            orig_name=orig["name"], reference=bacs_reference(r), dest_name=r.payee_name))
    if contra and bacs:
        lines.append(standard18_record(
            dest_sort=orig["sort_code"], dest_account=orig["account"], code="17",
            orig_sort=orig["sort_code"], orig_account=orig["account"],
            amount=sum(r.amount for r in bacs), orig_name=orig["name"],
            reference=f"CONTRA {run.number}", dest_name=orig["name"]))
    return "".join(line + "\r\n" for line in lines)


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_safe_cell(c) for c in row])
    return buf.getvalue()


def _safe_cell(value):
    """Neutralise spreadsheet formulas in text cells."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not re.match(r"^-?\d", value):
        return "'" + value
    return value


def bacs_csv(run: RefundPaymentRun) -> str:
    """The CSV payment-file profile: one row per BACS refund."""
    rows = [["payee_name", "sort_code", "account_number", "amount", "reference", "refund_id",
             "payment_run"]]
    for r in run.refunds:
        if r.method == RefundMethod.BACS:
            rows.append([r.payee_name, r.sort_code, r.account_number, str(Money(r.amount)),
                         bacs_reference(r), r.id, run.number])
    return _csv(rows)


def cheque_rows(session: Session, run: RefundPaymentRun) -> list[dict]:
    out = []
    for r in run.refunds:
        if r.method != RefundMethod.CHEQUE:
            continue
        txn = session.get(Transaction, r.transaction_id)
        holder = None
        if txn.account_reference:
            holder = session.scalar(select(AccountHolder).where(
                AccountHolder.fund_code == txn.fund_code,
                AccountHolder.account_reference == txn.account_reference))
        out.append({"refund": r, "payee": r.payee_name, "amount": r.amount,
                    "address": holder.address if holder else "",
                    "postcode": holder.postcode if holder else "",
                    "reference": bacs_reference(r),
                    "account": f"{txn.fund_code}/{txn.account_reference or ''}"})
    return out


def cheque_csv(session: Session, run: RefundPaymentRun) -> str:
    rows = [["payee", "amount", "address", "postcode", "reference", "account", "refund_id",
             "payment_run"]]
    for c in cheque_rows(session, run):
        rows.append([c["payee"], str(Money(c["amount"])), c["address"], c["postcode"],
                     c["reference"], c["account"], c["refund"].id, run.number])
    return _csv(rows)


# --------------------------------------------------------------------------- register
@dataclass
class RegisterFilters:
    status: str | None = None
    method: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    requester: str | None = None
    transaction_id: int | None = None

    def to_args(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if v is None:
                continue
            out[k] = str(Money(v)) if k.startswith("amount_") else str(v)
        return out


def parse_filters(args, parse_money=Money.parse) -> RegisterFilters:
    """Register filters from query arguments; ValidationError naming each bad one. Amounts are
    read by ``parse_money``: the strict parser (the API), or Money.parse_form for the page."""
    errors: dict[str, list[str]] = {}
    f = RegisterFilters()

    def arg(name):
        value = args.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None

    if (v := arg("status")) is not None:
        if v not in STATUSES:
            errors["status"] = [f"Choose one of: {', '.join(STATUSES)}."]
        f.status = v
    if (v := arg("method")) is not None:
        if v not in METHODS:
            errors["method"] = [f"Choose one of: {', '.join(METHODS)}."]
        f.method = v
    for name in ("date_from", "date_to"):
        if (v := arg(name)) is not None:
            try:
                setattr(f, name, date.fromisoformat(v))
            except ValueError:
                errors[name] = ["Give a date as YYYY-MM-DD."]
    for name in ("amount_min", "amount_max"):
        if (v := arg(name)) is not None:
            try:
                setattr(f, name, parse_money(v, field=name, allow_zero=True).pence)
            except ValidationError as exc:
                errors[name] = next(iter(exc.errors.values()), [exc.message])
    if (v := arg("requester")) is not None:
        f.requester = v[:100]
    if (v := arg("transaction_id")) is not None:
        try:
            f.transaction_id = to_id(v)
        except ValueError:
            errors["transaction_id"] = ["Give a transaction id."]
    if errors:
        raise ValidationError("The filters are not valid.", errors)
    return f


def search(session: Session, f: RegisterFilters, limit: int = 500) -> list[Refund]:
    """The register's refunds, newest first, each with its transaction (read in the same query:
    the register and its CSV show each refund's fund and reference, which were a query a row)."""
    q = select(Refund).options(joinedload(Refund.transaction))
    scoped = SC.transaction_condition(Refund.transaction_id)  # the user's fund groups
    if scoped is not None:
        q = q.where(scoped)
    if f.status:
        q = q.where(Refund.status == f.status)
    if f.method:
        q = q.where(Refund.method == f.method)
    if f.date_from:
        q = q.where(Refund.requested_at >= datetime.combine(f.date_from, time.min, timezone.utc))
    if f.date_to:
        q = q.where(Refund.requested_at < datetime.combine(f.date_to + timedelta(days=1), time.min,
                                                           timezone.utc))
    if f.amount_min is not None:
        q = q.where(Refund.amount >= f.amount_min)
    if f.amount_max is not None:
        q = q.where(Refund.amount <= f.amount_max)
    if f.requester:
        q = q.where(Refund.requested_by == f.requester)
    if f.transaction_id:
        q = q.where(Refund.transaction_id == f.transaction_id)
    return list(session.scalars(q.order_by(Refund.requested_at.desc(), Refund.id.desc()).limit(limit)))


def register_csv(session: Session, f: RegisterFilters) -> str:
    rows = [["id", "requested_at", "requested_by", "transaction_id", "fund_code",
             "account_reference", "amount", "method", "status", "payee_name", "payee_differs",
             "reason", "decided_at", "rejection_reason", "paid_at", "payment_run",
             "provider_refund_id", "failure_reason"]]
    for r in search(session, f, limit=100_000):
        txn = r.transaction
        rows.append([r.id, r.requested_at.isoformat(), r.requested_by, r.transaction_id,
                     txn.fund_code, txn.account_reference or "", str(Money(r.amount)), r.method,
                     r.status, r.payee_name or "", "yes" if r.payee_differs else "no", r.reason,
                     r.decided_at.isoformat() if r.decided_at else "", r.rejection_reason or "",
                     r.paid_at.isoformat() if r.paid_at else "",
                     r.payment_run.number if r.payment_run else "", r.provider_refund_id or "",
                     r.failure_reason or ""])
    return _csv(rows)


def postings_of(session: Session, refund: Refund) -> list[tuple[PostingGroup, list[LedgerLine]]]:
    """The refund's posting groups (approval, reversal, payment) with their lines."""
    ids = [g for g in (refund.approval_group_id, refund.payment_group_id) if g]
    groups = list(session.scalars(select(PostingGroup).where(
        (PostingGroup.id.in_(ids)) | (PostingGroup.reverses_id.in_(ids))
        | ((PostingGroup.kind == "refund") & PostingGroup.reason.like(f"Refund {refund.id} %"))
        | ((PostingGroup.kind == "reversal") & PostingGroup.reason.like(f"Card refund {refund.id} %")))
        .order_by(PostingGroup.id)))
    out = []
    for g in groups:
        lines = list(session.scalars(select(LedgerLine).where(LedgerLine.group_id == g.id)
                                     .order_by(LedgerLine.id)))
        if g.kind == "refund_payment" and refund.payment_run_id:
            lines = [l for l in lines if l.transaction_id == refund.transaction_id]
        out.append((g, lines))
    return out


def refund_json(refund: Refund) -> dict:
    return {"id": refund.id, "status": refund.status, "amount": str(Money(refund.amount)),
            "transaction_id": refund.transaction_id, "method": refund.method,
            "reason": refund.reason,
            "payee": None if refund.method == RefundMethod.CARD else {
                "name": refund.payee_name, "sort_code": refund.sort_code,
                "account_number": refund.masked_account or None},
            "payee_differs": refund.payee_differs, "payer_name": refund.payer_name,
            "requested_by": refund.requested_by,
            "requested_at": refund.requested_at.isoformat() if refund.requested_at else None,
            "workflow_instance_id": refund.workflow_instance_id,
            "decided_at": refund.decided_at.isoformat() if refund.decided_at else None,
            "rejection_reason": refund.rejection_reason,
            "paid_at": refund.paid_at.isoformat() if refund.paid_at else None,
            "payment_run": refund.payment_run.number if refund.payment_run else None,
            "provider_refund_id": refund.provider_refund_id,
            "failure_reason": refund.failure_reason}
