"""Cash-ups (eReturns) and the clearing accounts they empty (issue 17), on SQLite and PostgreSQL:
receipts into Cash in hand, the till, counting, approval through the workflow (posted once),
rejection and correction, voiding, template rows, bad input and races."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, ValidationError
from app.models.cashup import CashUp, CashUpReceipt, CashUpTemplateRow, ExpectedBankCredit
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import Office
from app.models.workflow import WorkflowTask
from app.services import cashups as CU
from app.services import ledger as L
from app.services import workflow as wf
from app.services.receipts import take_receipt
from tests.conftest import unique
from tests.integration.test_concurrency import race

def _today() -> dt.date:
    """Today, when asked (a value fixed at import goes stale when the run passes midnight)."""
    return dt.date.today()


@pytest.fixture
def office(session):
    code = unique("O", 8)
    session.add(Office(code=code, name=f"Test office {code}"))
    session.commit()
    return code


@pytest.fixture
def cashier():
    return unique("cash", 12).lower()


def receipt(session, cashier, office, amount, method="CASH", ref=None):
    return take_receipt(session, payment_method_code=method, actor=cashier, office_code=office,
                        lines=[{"fund_code": "TWS", "account_reference": ref or unique("W"),
                                "amount": amount}])


def submit(session, cashier, office, **data):
    body = {"office_code": office, "till_date": _today().isoformat(),
            "bag_number": unique("B", 10), **data}
    return CU.submit_cash_up(session, actor=cashier, data=body)


def ready_task(session, cu) -> WorkflowTask:
    session.expire_all()
    return session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == session.get(CashUp, cu.id).workflow_instance_id,
        WorkflowTask.status == "ready"))


def decide(session, cu, decision="approve", who="manager", comment=None):
    task = ready_task(session, cu)
    assert task is not None
    wf.complete_task(session, task.id, who, decision, comment)
    session.expire_all()
    return session.get(CashUp, cu.id)


def lines_of(session, group_id):
    return sorted((ln.account, ln.account_reference, ln.amount) for ln in session.scalars(
        select(LedgerLine).where(LedgerLine.group_id == group_id)))


def count_cash_ups(session):
    return session.scalar(select(func.count(CashUp.id)))


# --------------------------------------------------------------------------- clearing accounts
def test_cash_and_cheque_receipts_debit_cash_in_hand_for_the_office(session, office, cashier):
    res = receipt(session, cashier, office, "12.34")
    assert lines_of(session, res.group.id)[0] == ("CASH_IN_HAND", office, 1234)
    res = receipt(session, cashier, office, "5.00", method="CHQ")
    assert ("CASH_IN_HAND", office, 500) in lines_of(session, res.group.id)
    res = receipt(session, cashier, office, "7.00", method="BACS")
    assert ("BANK", None, 700) in lines_of(session, res.group.id)
    assert L.balance_of(session, L.CASH_IN_HAND, account_reference=office) == 1734


# --------------------------------------------------------------------------- the happy path
def test_till_counted_approved_posts_once_and_expects_the_bag(session, office, cashier):
    receipt(session, cashier, office, "20.00")
    receipt(session, cashier, office, "3.50")
    receipt(session, cashier, office, "45.00", method="CHQ")
    till = CU.till_summary(session, cashier, office, _today())
    assert (till["cash"], till["cheques"]) == (2350, 4500)
    assert {m["method"]: m["amount"] for m in till["by_method"]} == {"CASH": 2350, "CHQ": 4500}

    cu = submit(session, cashier, office, denominations={"20.00": 1, "2.00": 1, "1.00": 1,
                                                         "0.50": 1},
                cheques=[{"drawer": "A Jones", "sort_code": "12-34-56", "cheque_number": "000123",
                          "amount": "45.00"}])
    assert cu.status == "submitted" and cu.variance == 0 and cu.cash_counted == 2350
    assert ready_task(session, cu).role == "Finance Manager"
    # the submitter may never approve their own cash-up
    with pytest.raises(Forbidden):
        wf.complete_task(session, ready_task(session, cu).id, cashier, "approve", None)

    cu = decide(session, cu)
    assert cu.status == "approved" and cu.decided_by == "manager"
    group = session.get(PostingGroup, cu.posting_group_id)
    assert group.kind == "cash_up"
    assert lines_of(session, group.id) == sorted([("CASH_IN_TRANSIT", office, 6850),
                                                  ("CASH_IN_HAND", office, -6850)])
    assert L.balance_of(session, L.CASH_IN_HAND, account_reference=office) == 0
    credit = CU.expected_credit_of(session, cu)
    assert (credit.kind, credit.amount, credit.reference, credit.cleared) == (
        "cash_up_bag", 6850, cu.bag_number, False)
    assert credit.expected_date > _today() and credit.expected_date.weekday() < 5
    assert L.trial_balance(session)["balanced"] and L.unbalanced_groups(session) == []
    # the till is empty now
    assert CU.till_summary(session, cashier, office, _today())["total"] == 0


def test_over_and_short_need_a_reason_and_post_to_variance(session, office, cashier):
    receipt(session, cashier, office, "10.00")
    before = count_cash_ups(session)
    with pytest.raises(ValidationError) as exc:
        submit(session, cashier, office, denominations={"5.00": 1, "2.00": 2})  # £9.00: short £1
    assert "variance_reason" in exc.value.errors
    assert count_cash_ups(session) == before
    cu = submit(session, cashier, office, denominations={"5.00": 1, "2.00": 2},
                variance_reason="£1 coin missing")
    assert cu.variance == -100
    cu = decide(session, cu)
    assert lines_of(session, cu.posting_group_id) == sorted([
        ("CASH_IN_TRANSIT", office, 900), ("CASH_IN_HAND", office, -1000),
        ("CASH_VARIANCE", office, 100)])


def test_rejection_returns_it_for_correction_then_it_is_approved(session, office, cashier):
    receipt(session, cashier, office, "8.00")
    cu = submit(session, cashier, office, denominations={"5.00": 1, "1.00": 2},
                variance_reason="miscount")
    cu = decide(session, cu, "reject", comment="Count it again")
    assert cu.status == "returned" and cu.decision_comment == "Count it again"
    assert cu.posting_group_id is None
    # the receipts stay with it: a new cash-up of the till finds nothing
    assert CU.till_summary(session, cashier, office, _today())["total"] == 0
    with pytest.raises(Forbidden):
        CU.resubmit_cash_up(session, cu.id, actor="someone-else", data={})
    cu = CU.resubmit_cash_up(session, cu.id, actor=cashier, data={
        "denominations": {"5.00": 1, "1.00": 3}, "bag_number": cu.bag_number})
    assert cu.status == "submitted" and cu.variance == 0
    cu = decide(session, cu, who="manager2")
    assert cu.status == "approved"
    assert L.balance_of(session, L.CASH_IN_HAND, account_reference=office) == 0


def test_receipts_after_a_cash_up_go_into_the_next_one(session, office, cashier):
    first = receipt(session, cashier, office, "4.00")
    cu1 = submit(session, cashier, office, denominations={"2.00": 2})
    second = receipt(session, cashier, office, "6.00")
    cu2 = submit(session, cashier, office, denominations={"5.00": 1, "1.00": 1})
    taken = dict(session.execute(select(CashUpReceipt.transaction_id, CashUpReceipt.cash_up_id)
                                 .where(CashUpReceipt.cash_up_id.in_([cu1.id, cu2.id]))).all())
    assert taken == {first.transactions[0].id: cu1.id, second.transactions[0].id: cu2.id}
    # another cashier's receipts and another office's are other tills
    receipt(session, cashier + "x", office, "1.00")
    assert CU.till_summary(session, cashier, office, _today())["total"] == 0


def test_void_before_approval_releases_the_till_and_the_bag(session, office, cashier):
    receipt(session, cashier, office, "3.00")
    cu = submit(session, cashier, office, denominations={"1.00": 3})
    with pytest.raises(ValidationError):
        CU.void_cash_up(session, cu.id, actor=cashier, roles={"Cashier"}, reason=" ")
    with pytest.raises(Forbidden):
        CU.void_cash_up(session, cu.id, actor="other-cashier", roles={"Cashier", "Auditor"},
                        reason="not mine")
    cu = CU.void_cash_up(session, cu.id, actor=cashier, roles={"Cashier"}, reason="wrong office")
    assert cu.status == "voided" and cu.void_reason == "wrong office"
    assert ready_task(session, cu) is None  # its approval task is gone from the inbox
    # the receipts are in the till again and the bag number may be used again today
    assert CU.till_summary(session, cashier, office, _today())["total"] == 300
    again = submit(session, cashier, office, denominations={"1.00": 3}, bag_number=cu.bag_number)
    again = decide(session, again)
    with pytest.raises(Conflict):
        CU.void_cash_up(session, again.id, actor="manager", roles={"Finance Manager"},
                        reason="too late")


def test_template_rows_post_their_own_income(session, office, cashier):
    row = CU.save_template_row(session, actor="admin", data={
        "office_code": office, "description": "Car park machine 1", "fund_code": "TWS",
        "account_reference": "CARPARK1", "sort_order": 1})
    with pytest.raises(ValidationError):  # same description twice in one office
        CU.save_template_row(session, actor="admin", data={
            "office_code": office, "description": "Car park machine 1", "fund_code": "TWS"})
    receipt(session, cashier, office, "2.00")
    cu = submit(session, cashier, office, denominations={"10.00": 1, "2.00": 1},
                lines=[{"template_row_id": row.id, "amount": "10.00"}])
    assert (cu.template_total, cu.expected, cu.variance) == (1000, 1200, 0)
    cu = decide(session, cu)
    assert lines_of(session, cu.posting_group_id) == sorted([
        ("CASH_IN_TRANSIT", office, 1200), ("CASH_IN_HAND", office, -200),
        ("FUND", "CARPARK1", -1000)])
    income = session.scalar(select(Transaction).where(
        Transaction.posting_group_id == cu.posting_group_id))
    assert (income.fund_code, income.account_reference, income.amount) == ("TWS", "CARPARK1", 1000)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("data, field", [
    ({"denominations": {"1.00": -1}}, "denominations.1.00"),
    ({"denominations": {"1.00": 1.5}}, "denominations.1.00"),
    ({"denominations": {"1.00": "1.5"}}, "denominations.1.00"),
    ({"denominations": {"1.00": True}}, "denominations.1.00"),
    ({"denominations": {"0.005": 1}}, "denominations"),
    ({"denominations": {"3.00": 1}}, "denominations"),
    ({"denominations": [1, 2]}, "denominations"),
    ({"cheques": [{"drawer": "X", "cheque_number": "1", "amount": "5.00"}]}, "cheques[0].sort_code"),
    ({"cheques": [{"drawer": "X", "sort_code": "12-34", "cheque_number": "1", "amount": "5.00"}]},
     "cheques[0].sort_code"),
    ({"cheques": [{"drawer": "X", "sort_code": "123456", "cheque_number": "1",
                   "amount": "5.005"}]}, "cheques[0].amount"),
    ({"cheques": [{"drawer": "X", "sort_code": "123456", "cheque_number": "1",
                   "amount": "-5.00"}]}, "cheques[0].amount"),
    ({"bag_number": ""}, "bag_number"),
    ({"bag_number": "<script>"}, "bag_number"),
    ({"till_date": "2999-01-01"}, "till_date"),
    ({"office_code": "NOPE"}, "office_code"),
    ({"lines": [{"template_row_id": 999999999, "amount": "1.00"}]}, "lines[0].template_row_id"),
])
def test_bad_input_is_refused_and_nothing_is_saved(session, office, cashier, data, field):
    receipt(session, cashier, office, "1.00")
    before = count_cash_ups(session)
    body = {"denominations": {"1.00": 1}, **data}
    with pytest.raises(ValidationError) as exc:
        submit(session, cashier, office, **body)
    assert field in exc.value.errors, exc.value.errors
    assert count_cash_ups(session) == before
    assert CU.till_summary(session, cashier, office, _today())["total"] == 100


def test_a_bag_number_is_used_once_a_day(session, office, cashier):
    bag = unique("BAG", 12)
    receipt(session, cashier, office, "1.00")
    submit(session, cashier, office, denominations={"1.00": 1}, bag_number=bag)
    receipt(session, cashier, office, "2.00")
    before = count_cash_ups(session)
    with pytest.raises(ValidationError) as exc:
        submit(session, cashier, office, denominations={"2.00": 1}, bag_number=bag)
    assert "bag_number" in exc.value.errors and count_cash_ups(session) == before
    # another day's bag may have the same number
    yesterday = (_today() - dt.timedelta(days=1)).isoformat()
    other = unique("cash", 12).lower()
    take_receipt(session, payment_method_code="CASH", actor=other, office_code=office,
                 transaction_date=yesterday, lines=[{"fund_code": "TWS", "account_reference": "Y",
                                                     "amount": "1.00"}])
    cu = CU.submit_cash_up(session, actor=other, data={
        "office_code": office, "till_date": yesterday, "bag_number": bag,
        "denominations": {"1.00": 1}})
    assert cu.status == "submitted"


def test_an_empty_till_is_refused(session, office, cashier):
    with pytest.raises(ValidationError) as exc:
        submit(session, cashier, office, denominations={"1.00": 1})
    assert "till" in exc.value.errors


# --------------------------------------------------------------------------- races
def test_two_submissions_of_the_same_till_take_each_receipt_once(app, session, office, cashier):
    for amount in ("1.00", "2.00", "3.00"):
        receipt(session, cashier, office, amount)

    def sub(i):
        return lambda s: CU.submit_cash_up(s, actor=cashier, data={
            "office_code": office, "till_date": _today().isoformat(), "bag_number": unique("R", 10),
            "denominations": {"1.00": 6}})

    results = race(app, sub(1), sub(2))
    assert sorted(results) in (["Conflict", "ok"], ["ValidationError", "ok"]), results
    session.expire_all()
    live = session.scalars(select(CashUp).where(CashUp.cashier == cashier)).all()
    assert len(live) == 1 and live[0].expected == 600
    assert session.scalar(select(func.count()).select_from(CashUpReceipt).where(
        CashUpReceipt.cash_up_id == live[0].id)) == 3


def test_an_approved_cash_up_posts_exactly_once(app, session, office, cashier):
    receipt(session, cashier, office, "9.99")
    cu = submit(session, cashier, office, denominations={"5.00": 1, "2.00": 2, "0.50": 1,
                                                         "0.20": 2, "0.05": 1, "0.02": 2})
    task_id = ready_task(session, cu).id

    def approve(who):
        def call(s):
            try:
                wf.complete_task(s, task_id, who, "approve", None)
            except Forbidden as exc:  # surfaces as a refusal like Conflict
                raise Conflict(str(exc)) from None
        return call

    results = race(app, approve("manager"), approve("manager2"), approve("head"))
    assert results.count("ok") == 1 and set(results) <= {"ok", "Conflict"}, results
    session.expire_all()
    cu = session.get(CashUp, cu.id)
    assert cu.status == "approved"
    groups = session.scalars(select(PostingGroup).where(
        PostingGroup.kind == "cash_up", PostingGroup.office_code == office)).all()
    assert len(groups) == 1
    assert session.scalar(select(func.count(ExpectedBankCredit.id)).where(
        ExpectedBankCredit.source_id == cu.id)) == 1
    assert L.balance_of(session, L.CASH_IN_HAND, account_reference=office) == 0


def test_void_and_approve_at_once_do_one_or_the_other(app, session, office, cashier):
    receipt(session, cashier, office, "4.00")
    cu = submit(session, cashier, office, denominations={"2.00": 2})
    task_id = ready_task(session, cu).id

    def approve(s):
        try:
            wf.complete_task(s, task_id, "manager", "approve", None)
        except Forbidden as exc:
            raise Conflict(str(exc)) from None

    def void(s):
        CU.void_cash_up(s, cu.id, actor=cashier, roles={"Cashier"}, reason="race")

    results = race(app, approve, void)
    assert "ok" in results, results
    session.expire_all()
    cu = session.get(CashUp, cu.id)
    if cu.status == "approved":
        assert cu.posting_group_id is not None
    else:
        assert cu.status == "voided" and cu.posting_group_id is None
        assert session.scalar(select(func.count(PostingGroup.id)).where(
            PostingGroup.kind == "cash_up", PostingGroup.office_code == office)) == 0
    assert L.trial_balance(session)["balanced"]


def test_template_row_admin_bad_input(session, office):
    before = session.scalar(select(func.count(CashUpTemplateRow.id)))
    with pytest.raises(ValidationError) as exc:
        CU.save_template_row(session, actor="admin", data={"office_code": office,
                                                           "description": "", "fund_code": "NOPE"})
    assert {"description", "fund_code"} <= set(exc.value.errors)
    assert session.scalar(select(func.count(CashUpTemplateRow.id))) == before
