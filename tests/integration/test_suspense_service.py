"""Suspense allocation service: split, partial, limits and approval, bad input, notes, ageing,
report and reconciliation. Every scenario ends with a balanced trial balance."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from app.domain.errors import Forbidden, NotFound, ValidationError
from app.models.ledger import LedgerLine, Transaction
from app.models.reference import AccountHolder, Fund
from app.models.suspense import SuspenseItem
from app.models.suspense_work import SuspenseAllocation
from app.models.workflow import WorkflowTask
from app.services import ledger as L
from app.services import suspense as S
from app.services import workflow as wf
from tests.conftest import unique


def make_item(session, pence: int, *, reference: str = "UNKNOWN REF", narrative: str | None = None,
              days_old: int = 3, fund_code: str | None = None) -> SuspenseItem:
    """Unmatched money as an import leaves it: Dr Bank / Cr Suspense and a suspense item."""
    group = L.post_group(session, "suspense", [L.Leg(L.BANK, pence),
                                               L.Leg(L.SUSPENSE, -pence, "SUSP")], actor="clerk")
    item = SuspenseItem(amount=pence, reference_text=reference, narrative=narrative,
                        reason="test", fund_code=fund_code,
                        transaction_date=dt.date.today() - dt.timedelta(days=days_old),
                        posting_group_id=group.id, status="unallocated")
    session.add(item)
    session.commit()
    return item


def line(fund, ref, amount):
    return {"fund_code": fund, "account_reference": ref, "amount": amount}


def assert_books_balance(session):
    session.expire_all()
    tb = L.trial_balance(session)
    assert tb["balanced"], tb
    assert not L.unbalanced_groups(session)
    rec = S.reconciliation(session)
    assert rec["agrees"], rec


def ready(session, instance_id):
    session.expire_all()
    return list(session.scalars(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance_id, WorkflowTask.status == "ready")))


def test_split_across_two_funds_posts_at_once(session):
    item = make_item(session, 250_00, narrative="PAYMENT J SMITH")
    ref1, ref2 = unique("A"), unique("B")
    res = S.allocate(session, item.id, [line("TWS", ref1, "100.00"), line("TWS", ref2, "50.50")],
                     actor="clerk", note="Phoned customer")
    assert res.allocation.status == "posted"
    session.expire_all()
    item = session.get(SuspenseItem, item.id)
    assert item.remaining_amount == 99_50
    assert item.status == "part_allocated"
    txns = session.scalars(select(Transaction).where(
        Transaction.posting_group_id == res.allocation.posting_group_id)).all()
    assert sorted((t.account_reference, t.amount) for t in txns) == sorted([(ref1, 100_00), (ref2, 50_50)])
    lines = session.scalars(select(LedgerLine).where(
        LedgerLine.group_id == res.allocation.posting_group_id)).all()
    assert {(ln.account, ln.amount) for ln in lines} >= {("SUSPENSE", 150_50), ("FUND", -100_00)}
    assert all(ln.transaction_id for ln in lines if ln.account == "FUND")
    # the rest, then nothing is left: allocated
    S.allocate(session, item.id, [line("TWS", ref1, "99.50")], actor="clerk2")
    session.expire_all()
    item = session.get(SuspenseItem, item.id)
    assert item.remaining_amount == 0 and item.status == "allocated"
    with pytest.raises(ValidationError):
        S.allocate(session, item.id, [line("TWS", ref1, "0.01")], actor="clerk")
    assert_books_balance(session)


@pytest.mark.parametrize("bad, field", [
    ([line("TWS", "X1", "0.00")], "lines[0].amount"),
    ([line("TWS", "X1", "1.234")], "lines[0].amount"),
    ([line("TWS", "X1", 1.5)], "lines[0].amount"),
    ([line("SUSP", "X1", "1.00")], "lines[0].fund_code"),
    ([line("NOPE", "X1", "1.00")], "lines[0].fund_code"),
    ([line("CTAX", "12345678Z", "1.00")], "lines[0].account_reference"),
    ([line("TWS", "X1", "60.00"), line("TWS", "X2", "60.01")], "lines"),
    ([], "lines"),
])
def test_bad_allocations_post_nothing(session, bad, field):
    item = make_item(session, 120_00)
    before = session.scalar(select(LedgerLine.id).order_by(LedgerLine.id.desc()).limit(1))
    with pytest.raises(ValidationError) as exc:
        S.allocate(session, item.id, bad, actor="clerk")
    assert field in exc.value.errors, exc.value.errors
    assert session.scalar(select(LedgerLine.id).order_by(LedgerLine.id.desc()).limit(1)) == before
    session.expire_all()
    assert session.get(SuspenseItem, item.id).remaining_amount == 120_00


def test_disabled_fund_is_refused(session):
    code = unique("D", 8)
    session.add(Fund(code=code, name="Closed fund", disabled=True))
    session.commit()
    item = make_item(session, 10_00)
    with pytest.raises(ValidationError) as exc:
        S.allocate(session, item.id, [line(code, "ABC", "5.00")], actor="clerk")
    assert "disabled" in " ".join(exc.value.errors["lines[0].fund_code"])


def test_missing_item_is_404(session):
    with pytest.raises(NotFound):
        S.allocate(session, 99_999_999, [line("TWS", "X", "1.00")], actor="clerk")


def test_large_allocation_waits_for_a_manager_and_reserves(session):
    item = make_item(session, 15_000_00)
    ref = unique("L")
    res = S.allocate(session, item.id, [line("TWS", ref, "12000.00")], actor="clerk",
                     note="Large payment from a business")
    alloc = res.allocation
    assert alloc.status == "awaiting_approval" and alloc.workflow_instance_id
    session.expire_all()
    item = session.get(SuspenseItem, item.id)
    assert item.remaining_amount == 3_000_00  # reserved while it waits
    with pytest.raises(ValidationError):  # the reservation counts
        S.allocate(session, item.id, [line("TWS", ref, "3000.01")], actor="clerk2")
    [task] = ready(session, alloc.workflow_instance_id)
    assert task.role == "Finance Manager"
    with pytest.raises(Forbidden):  # the clerk cannot approve (role) ...
        wf.complete_task(session, task.id, "clerk", "approve")
    assert L.balance_of(session, L.FUND, "TWS", ref) == 0  # nothing posted yet
    wf.complete_task(session, task.id, "manager", "approve", "Checked with the bank")
    session.expire_all()
    alloc = session.get(SuspenseAllocation, alloc.id)
    assert alloc.status == "posted"
    assert L.balance_of(session, L.FUND, "TWS", ref) == -12_000_00
    assert session.get(SuspenseItem, item.id).remaining_amount == 3_000_00
    assert_books_balance(session)


def test_rejected_allocation_releases_the_amount(session):
    item = make_item(session, 20_000_00)
    res = S.allocate(session, item.id, [line("TWS", unique("R"), "20000.00")], actor="clerk")
    session.expire_all()
    assert session.get(SuspenseItem, item.id).remaining_amount == 0
    [task] = ready(session, res.allocation.workflow_instance_id)
    with pytest.raises(ValidationError):  # a rejection needs a reason
        wf.complete_task(session, task.id, "manager", "reject")
    wf.complete_task(session, task.id, "manager", "reject", "Wrong account")
    session.expire_all()
    assert session.get(SuspenseAllocation, res.allocation.id).status == "rejected"
    item = session.get(SuspenseItem, item.id)
    assert item.remaining_amount == 20_000_00 and item.status == "unallocated"
    assert_books_balance(session)


def test_requester_cannot_approve_own_allocation(session):
    item = make_item(session, 11_000_00)
    res = S.allocate(session, item.id, [line("TWS", unique("O"), "10500.00")], actor="manager")
    [task] = ready(session, res.allocation.workflow_instance_id)
    with pytest.raises(Forbidden):
        wf.complete_task(session, task.id, "manager", "approve")
    session.expire_all()
    assert session.get(SuspenseAllocation, res.allocation.id).status == "awaiting_approval"


def test_notes_and_assignment(session):
    item = make_item(session, 5_00)
    S.add_note(session, item.id, "Left a voicemail", actor="clerk")
    S.add_note(session, item.id, "Customer called back", actor="clerk2")
    assert [n.text for n in S.notes_of(session, item.id)] == ["Customer called back", "Left a voicemail"]
    with pytest.raises(ValidationError):
        S.add_note(session, item.id, "   ", actor="clerk")
    assert S.assign(session, [item.id], "clerk", actor="clerk") == 1
    items, total = S.queue(session, S.QueueFilters(assigned_to="clerk", text="UNKNOWN"))
    assert item.id in [i.id for i in items]


def test_queue_filters(session):
    text = unique("Q")
    old = make_item(session, 7_00, reference=text, days_old=80)
    new = make_item(session, 900_00, reference=text, days_old=1)
    ids = lambda f: {i.id for i in S.queue(session, f, page_size=500)[0]}  # noqa: E731
    assert ids(S.QueueFilters(text=text.lower())) == {old.id, new.id}
    assert ids(S.QueueFilters(text=text, age="stale")) == {old.id}
    assert ids(S.QueueFilters(text=text, age="fresh")) == {new.id}
    assert ids(S.QueueFilters(text=text, min_amount=100_00)) == {new.id}
    assert ids(S.QueueFilters(text=text, max_amount=10_00)) == {old.id}
    S.allocate(session, new.id, [line("TWS", unique("P"), "1.00")], actor="clerk")
    assert ids(S.QueueFilters(text=text, status="part_allocated")) == {new.id}
    assert ids(S.QueueFilters(text=text, status="unallocated")) == {old.id}
    assert S.age_class(old.transaction_date) == "ims-age-stale"
    assert S.age_class(new.transaction_date) == "ims-age-fresh"
    assert S.age_class(dt.date.today() - dt.timedelta(days=30)) == "ims-age-old"


def test_age_report_and_reconciliation(session):
    before = {b["band"]: b for b in S.age_report(session)}
    make_item(session, 3_33, days_old=100)
    after = {b["band"]: b for b in S.age_report(session)}
    assert after["92–182 days"]["count"] == before["92–182 days"]["count"] + 1
    assert after["92–182 days"]["value"] == before["92–182 days"]["value"] + 3_33
    rec = S.reconciliation(session)
    assert rec["agrees"] and rec["ledger_balance"] == rec["open_remaining"] + rec["reserved"]


def test_stop_account_refused_for_clerk(session):
    acct = session.scalar(select(AccountHolder).where(AccountHolder.stop_message.is_not(None)).limit(1))
    if acct is None:
        pytest.skip("no account on stop in the demo data")
    item = make_item(session, 10_00)
    with pytest.raises(ValidationError) as exc:
        S.allocate(session, item.id, [line(acct.fund_code, acct.account_reference, "1.00")],
                   actor="clerk")
    assert "stop" in str(exc.value.errors).lower()
