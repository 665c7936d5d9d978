"""Refund service: request rules, approval by the scheme of delegation, postings, card payment,
failure and retry, crash recovery, BACS/cheque payment runs, notifications."""

from __future__ import annotations

import os
from datetime import date

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, ValidationError
from app.models.ledger import LedgerLine
from app.models.notification import Notification
from app.models.reference import AccountHolder
from app.models.refund import Refund
from app.models.workflow import WorkflowTask
from app.services import ledger as L
from app.services import refunds as RF
from app.services import workflow as wf
from app.services.payments import RefundResult
from tests.conftest import unique

REFUND_BPMN = os.path.join(wf.WORKFLOW_DIR, "refund_approval.bpmn")


# --------------------------------------------------------------------------- factories
def deploy_refund_workflow(session):
    with open(REFUND_BPMN, "rb") as fh:
        xml = fh.read()
    d = wf.active_definition(session, RF.PROCESS_ID)
    if d is None or d.sha256 != wf.sha256_of(xml):
        wf.deploy_definition(session, xml, "wfadmin")


def make_txn(session, amount: int = 10_000, method: str = "CARD", external_reference=None,
             payer: str | None = "Jane Payer", fund: str = "TWS"):
    """A received income line (Dr Bank / Cr Fund:account), optionally with an account holder."""
    ref = unique("RF", 12)
    if payer:
        session.add(AccountHolder(fund_code=fund, account_reference=ref, name=payer))
        session.flush()
    group = L.post_group(session, "receipt", [L.Leg(L.BANK, amount),
                                              L.Leg(L.FUND, -amount, fund, ref)], actor="cashier")
    if external_reference is None and method in ("CARD", "WEB", "TEL"):
        external_reference = "pay-" + ref.lower()
    txn = L.record_income(session, group=group, fund_code=fund, account_reference=ref,
                          amount=amount, payment_method_code=method,
                          transaction_date=date.today(), external_reference=external_reference,
                          created_by="cashier")
    session.commit()
    return txn


def ready(session, refund):
    session.expire_all()
    return list(session.scalars(select(WorkflowTask).where(
        WorkflowTask.instance_id == refund.workflow_instance_id, WorkflowTask.status == "ready")))


def request(session, txn, amount="25.00", method="card", payee=None, actor="clerk", **kw):
    return RF.request_refund(session, transaction_id=txn.id, amount=amount,
                             reason=kw.pop("reason", "Paid twice"), method=method, payee=payee,
                             actor=actor, **kw).refund


def approve_all(session, refund, approvers=("manager", "head")):
    for who in approvers:
        tasks = ready(session, refund)
        if not tasks:
            break
        wf.complete_task(session, tasks[0].id, who, "approve", "ok")
    RF.pay_queued(session)
    session.expire_all()
    return session.get(Refund, refund.id)


def lines_of(session, group_id):
    return sorted((l.account, l.amount) for l in session.scalars(
        select(LedgerLine).where(LedgerLine.group_id == group_id)))


@pytest.fixture(autouse=True)
def _workflow(session):
    deploy_refund_workflow(session)
    yield


# --------------------------------------------------------------------------- request rules
def test_partial_card_refund_is_awaiting_approval_in_the_managers_inbox(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "30.00")
    assert refund.status == "awaiting_approval" and refund.amount == 3_000
    assert L.available_amount(session, txn) == 7_000
    [task] = ready(session, refund)
    assert task.role == "Finance Manager"
    assert task.id in [t.id for t in wf.tasks_for_user(session, "manager")]
    assert task.id not in [t.id for t in wf.tasks_for_user(session, "clerk")]
    assert task.id not in [t.id for t in wf.tasks_for_user(session, "head")]
    # approvers are told; nothing is posted before approval
    notes = session.scalars(select(Notification).where(Notification.username == "manager")
                            .order_by(Notification.id.desc()).limit(1)).one()
    assert "£30.00" in notes.message and notes.link == "/tasks/"
    assert session.scalar(select(func.count(LedgerLine.id)).where(
        LedgerLine.transaction_id == txn.id, LedgerLine.account == L.REFUNDS_PAYABLE)) == 0
    summary = wf.subject_summary(session, refund.workflow_instance)
    assert summary["url"] == f"/refunds/{refund.id}" and "Jane Payer" in str(summary["details"])


@pytest.mark.parametrize("amount,field", [
    ("0", "amount"), ("0.00", "amount"), ("-5.00", "amount"), ("1.234", "amount"),
    (1.5, "amount"), ("abc", "amount"), ("100.01", "amount")])
def test_bad_amounts_are_refused_and_nothing_is_requested(session, amount, field):
    txn = make_txn(session, 10_000)
    before = session.scalar(select(func.count(Refund.id)))
    with pytest.raises(ValidationError) as info:
        request(session, txn, amount)
    assert field in info.value.errors
    assert session.scalar(select(func.count(Refund.id))) == before
    assert L.available_amount(session, txn) == 10_000


def test_pending_refunds_count_against_what_is_available(session):
    txn = make_txn(session, 10_000)
    request(session, txn, "60.00")
    with pytest.raises(ValidationError) as info:
        request(session, txn, "40.01")
    assert "£40.00" in info.value.errors["amount"][0]
    request(session, txn, "40.00")
    assert L.available_amount(session, txn) == 0


def test_missing_reason_bad_method_and_card_refund_of_cash(session):
    txn = make_txn(session, 5_000)
    with pytest.raises(ValidationError) as info:
        request(session, txn, "1.00", reason="  ")
    assert "reason" in info.value.errors
    with pytest.raises(ValidationError) as info:
        request(session, txn, "1.00", method="paypal")
    assert "method" in info.value.errors
    cash = make_txn(session, 5_000, method="CASH")
    with pytest.raises(ValidationError) as info:
        request(session, cash, "1.00", method="card")
    assert "method" in info.value.errors and "card" in info.value.message.lower()
    assert session.scalar(select(func.count(Refund.id)).where(
        Refund.transaction_id.in_([txn.id, cash.id]))) == 0


@pytest.mark.parametrize("payee,field", [
    ({"name": "Jane Payer", "sort_code": "123456", "account_number": "12345678"}, "payee.sort_code"),
    ({"name": "Jane Payer", "sort_code": "12-34-5", "account_number": "12345678"}, "payee.sort_code"),
    ({"name": "Jane Payer", "sort_code": "12-34-56", "account_number": "1234567"}, "payee.account_number"),
    ({"name": "Jane Payer", "sort_code": "12-34-56", "account_number": "12345678X"}, "payee.account_number"),
    ({"name": "", "sort_code": "12-34-56", "account_number": "12345678"}, "payee.name"),
    (None, "payee.sort_code")])
def test_malformed_bank_details_are_refused(session, payee, field):
    txn = make_txn(session, 5_000, method="CASH")
    with pytest.raises(ValidationError) as info:
        request(session, txn, "10.00", method="bacs", payee=payee)
    assert field in info.value.errors


def test_payee_differing_from_payer_is_flagged_for_the_approver(session):
    txn = make_txn(session, 5_000, method="CHQ", payer="Mrs Jane Payer")
    same = request(session, txn, "1.00", method="bacs",
                   payee={"name": "jane payer", "sort_code": "12-34-56", "account_number": "12345678"})
    other = request(session, txn, "1.00", method="bacs",
                    payee={"name": "Someone Else", "sort_code": "12-34-56",
                           "account_number": "87654321"})
    assert same.payee_differs is False and other.payee_differs is True
    details = wf.subject_summary(session, other.workflow_instance)["details"]
    assert "CHECK" in details and "differs" in details["CHECK"]
    assert "CHECK" not in wf.subject_summary(session, same.workflow_instance)["details"]


# --------------------------------------------------------------------------- approval
def test_approved_card_refund_is_posted_then_paid_to_the_card(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "25.00")
    [task] = ready(session, refund)
    result = wf.complete_task(session, task.id, "manager", "approve", "fine")
    assert result.outcome == "approved"
    session.expire_all()
    refund = session.get(Refund, refund.id)
    assert refund.status == "approved"
    assert lines_of(session, refund.approval_group_id) == [("FUND", 2_500), ("REFUNDS_PAYABLE", -2_500)]
    assert RF.pay_queued(session) == [refund.id]
    session.expire_all()
    refund = session.get(Refund, refund.id)
    assert refund.status == "paid" and refund.provider == "simulator" and refund.provider_refund_id
    # a card refund comes out of Card clearing (issue 17), not Bank
    assert lines_of(session, refund.payment_group_id) == [("CARD_CLEARING", -2_500),
                                                           ("REFUNDS_PAYABLE", 2_500)]
    assert L.balance_of(session, L.REFUNDS_PAYABLE, txn.fund_code, txn.account_reference) == 0
    assert L.balance_of(session, L.FUND, txn.fund_code, txn.account_reference) == -7_500
    assert L.available_amount(session, txn) == 7_500
    assert not L.unbalanced_groups(session)
    told = session.scalars(select(Notification.message).where(Notification.username == "clerk",
                           Notification.link == f"/refunds/{refund.id}")).all()
    assert any("approved" in m for m in told) and any("paid back to the card" in m for m in told)


def test_above_500_needs_a_finance_manager_then_a_head_of_finance(session):
    txn = make_txn(session, 100_000)
    refund = request(session, txn, "500.01")
    [first] = ready(session, refund)
    assert first.role == "Finance Manager"
    wf.complete_task(session, first.id, "manager", "approve", None)
    [second] = ready(session, refund)
    assert second.role == "Head of Finance"
    with pytest.raises(Forbidden):
        wf.complete_task(session, second.id, "manager2", "approve", None)  # not the lane's role
    session.expire_all()
    assert session.get(Refund, refund.id).status == "awaiting_approval"
    wf.complete_task(session, second.id, "head", "approve", "ok")
    RF.pay_queued(session)
    session.expire_all()
    assert session.get(Refund, refund.id).status == "paid"


def test_exactly_500_needs_one_approval(session):
    txn = make_txn(session, 100_000)
    refund = approve_all(session, request(session, txn, "500.00"), approvers=("manager",))
    assert refund.status == "paid"


def test_requester_cannot_approve_and_a_task_cannot_be_completed_twice(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "10.00", actor="manager")  # a manager asks for a refund
    [task] = ready(session, refund)
    with pytest.raises(Forbidden) as info:
        wf.complete_task(session, task.id, "manager", "approve", None)
    assert "four-eyes" in info.value.message
    wf.complete_task(session, task.id, "manager2", "approve", None)
    with pytest.raises(Conflict):
        wf.complete_task(session, task.id, "manager2", "approve", None)
    RF.pay_queued(session)
    session.expire_all()
    refund = session.get(Refund, refund.id)
    assert refund.status == "paid"
    # one approval posting and one payment, nothing more
    assert session.scalar(select(func.count(LedgerLine.id)).where(
        LedgerLine.transaction_id == txn.id, LedgerLine.account == L.REFUNDS_PAYABLE)) == 2


def test_rejection_records_the_reason_tells_the_requester_and_frees_the_money(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "80.00")
    [task] = ready(session, refund)
    with pytest.raises(ValidationError):
        wf.complete_task(session, task.id, "manager", "reject", "")
    wf.complete_task(session, task.id, "manager", "reject", "No evidence of the overpayment")
    session.expire_all()
    refund = session.get(Refund, refund.id)
    assert refund.status == "rejected" and refund.rejection_reason == "No evidence of the overpayment"
    assert refund.approval_group_id is None
    assert L.available_amount(session, txn) == 10_000
    note = session.scalars(select(Notification).where(Notification.username == "clerk",
                           Notification.link == f"/refunds/{refund.id}")).one()
    assert "rejected" in note.message and "No evidence" in note.message


# --------------------------------------------------------------------------- card failures
def test_card_failure_reverses_the_posting_and_can_be_retried(session):
    txn = make_txn(session, 10_000, external_reference="FAIL-expired")
    refund = approve_all(session, request(session, txn, "40.00"))
    assert refund.status == "failed" and "refused" in refund.failure_reason
    assert L.is_reversed(session, refund.approval_group_id)
    assert L.balance_of(session, L.REFUNDS_PAYABLE, txn.fund_code, txn.account_reference) == 0
    assert L.balance_of(session, L.FUND, txn.fund_code, txn.account_reference) == -10_000
    assert L.available_amount(session, txn) == 10_000  # failed refunds do not reserve

    class SucceedsNow:
        name = "test-provider"
        calls: list[str] = []

        def refund(self, *, payment_id, amount, refund_amount_available, idempotency_key, reference):
            self.calls.append(idempotency_key)
            return RefundResult(True, "ok-1", "success", "ok")

    provider = SucceedsNow()
    refund = RF.retry_refund(session, refund.id, actor="clerk", provider=provider)
    assert refund.status == "paid" and refund.payment_attempts == 1
    assert provider.calls == [f"ims-refund-{refund.id}-2"]  # a fresh key after a definite failure
    assert L.balance_of(session, L.REFUNDS_PAYABLE, txn.fund_code, txn.account_reference) == 0
    assert L.available_amount(session, txn) == 6_000
    with pytest.raises(Conflict):
        RF.retry_refund(session, refund.id, actor="clerk")


def test_crash_between_approval_and_payment_leaves_it_payable_and_never_pays_twice(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "12.00")
    [task] = ready(session, refund)
    wf.complete_task(session, task.id, "manager", "approve", None)
    session.info.pop(RF.PAY_QUEUE, None)  # the process dies before paying
    session.expire_all()
    assert session.get(Refund, refund.id).status == "approved"
    assert RF.pay_due_card_refunds(session) >= 1  # `ims tick` pays it
    session.expire_all()
    refund = session.get(Refund, refund.id)
    assert refund.status == "paid"
    again = RF.pay_card_refund(session, refund.id)  # a second payer finds it paid
    assert again.status == "paid"
    from app.simulator import STORE

    assert STORE.refunds_for_key(f"ims-refund-{refund.id}-1") == 1
    assert session.scalar(select(func.count(LedgerLine.id)).where(
        LedgerLine.transaction_id == txn.id, LedgerLine.account == L.CARD_CLEARING)) == 1


def test_unreachable_provider_keeps_the_refund_approved_with_the_same_key(session):
    txn = make_txn(session, 10_000, external_reference="DOWN-123")
    refund = approve_all(session, request(session, txn, "5.00"))
    assert refund.status == "approved" and "retried" in refund.failure_reason
    assert refund.payment_attempts == 0  # the next try reuses ims-refund-<id>-1


# --------------------------------------------------------------------------- payment runs
def _approved(session, method, payee, amount="20.00", method_code="CHQ"):
    txn = make_txn(session, 10_000, method=method_code, payer="Jane Payer")
    refund = approve_all(session, request(session, txn, amount, method=method, payee=payee))
    assert refund.status == "approved"
    return txn, refund


def test_payment_run_pays_bacs_and_cheques_once_with_files(session):
    t1, bacs = _approved(session, "bacs", {"name": "Jane Payer", "sort_code": "40-11-62",
                                           "account_number": "31926819"}, "20.00")
    t2, chq = _approved(session, "cheque", None, "7.50")
    assert {bacs.id, chq.id} <= {r.id for r in RF.awaiting_payment_run(session)}
    result = RF.create_payment_run(session, refund_ids=[bacs.id, chq.id], actor="manager")
    run = result.run
    assert run.number.startswith("RR") and run.bacs_count == 1 and run.cheque_count == 1
    assert run.bacs_total == 2_000 and run.cheque_total == 750
    session.expire_all()
    for r, t in ((session.get(Refund, bacs.id), t1), (session.get(Refund, chq.id), t2)):
        assert r.status == "paid" and r.payment_run_id == run.id
        assert L.balance_of(session, L.REFUNDS_PAYABLE, t.fund_code, t.account_reference) == 0
    assert not L.unbalanced_groups(session)
    # idempotent: the same refunds cannot be paid again
    with pytest.raises(Conflict):
        RF.create_payment_run(session, refund_ids=[bacs.id, chq.id], actor="manager")
    with pytest.raises(ValidationError):
        RF.create_payment_run(session, refund_ids=[], actor="manager")

    run = RF.get_run(session, run.id)
    records = RF.bacs_standard18(run, {"sort_code": "200000", "account": "12345678",
                                       "name": "Llanwern CC"}).split("\r\n")[:-1]
    assert len(records) == 2 and all(len(r) == 100 for r in records)
    rec = records[0]
    assert rec[0:6] == "401162" and rec[6:14] == "31926819" and rec[14] == "0"
    assert rec[15:17] == "99" and rec[17:23] == "200000" and rec[23:31] == "12345678"
    assert rec[35:46] == "00000002000" and rec[46:64].rstrip() == "LLANWERN CC"
    assert rec[64:82].rstrip() == f"IMS REFUND {bacs.id:06d}" and rec[82:100].rstrip() == "JANE PAYER"
    contra = records[1]
    assert contra[15:17] == "17" and contra[0:6] == "200000" and contra[35:46] == "00000002000"
    csv_text = RF.bacs_csv(run)
    assert "40-11-62,31926819,20.00" in csv_text
    cheques = RF.cheque_csv(session, run)
    assert "Jane Payer,7.50" in cheques


def test_card_refunds_are_not_in_payment_runs(session):
    txn = make_txn(session, 10_000)
    refund = request(session, txn, "1.00")
    with pytest.raises(Conflict):
        RF.create_payment_run(session, refund_ids=[refund.id], actor="manager")


def test_register_filters(session):
    txn = make_txn(session, 10_000, method="CASH")
    r = request(session, txn, "3.21", method="cheque", actor="clerk2")
    rows = RF.search(session, RF.parse_filters({"requester": "clerk2", "method": "cheque",
                                                "amount_min": "3.21", "amount_max": "3.21",
                                                "status": "awaiting_approval",
                                                "date_from": date.today().isoformat()}))
    assert r.id in [x.id for x in rows]
    assert all(x.requested_by == "clerk2" and x.method == "cheque" for x in rows)
    with pytest.raises(ValidationError) as info:
        RF.parse_filters({"status": "lost", "amount_min": "1.234", "date_to": "31/12/2026"})
    assert set(info.value.errors) == {"status", "amount_min", "date_to"}
    text = RF.register_csv(session, RF.parse_filters({"transaction_id": str(txn.id)}))
    assert text.splitlines()[0].startswith("id,requested_at") and "3.21" in text
