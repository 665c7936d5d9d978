"""Several people spending, allocating or reversing the same money at once, on both databases:
exactly one wins wherever the money allows only one, the others get a clear refusal, and the books
still balance. (SQLite, the embedded default `make run` serves, must hold as PostgreSQL does.)"""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from app.domain.errors import Conflict, ValidationError
from app.models.imports import ImportBatch
from app.models.ledger import PostingGroup
from app.models.refund import Refund
from app.models.suspense import SuspenseItem
from app.models.suspense_work import WriteOff
from app.services import imports as IM
from app.services import ledger as L
from app.services import refunds as RF
from app.services import suspense as S
from app.services import writeoffs as W
from tests.conftest import unique
from tests.integration.test_imports import _receive
from tests.integration.test_refunds import approve_all, deploy_refund_workflow, make_txn, request
from tests.integration.test_suspense_service import assert_books_balance


def race(app, *calls) -> list[str]:
    """Run each call(session) in its own thread and app context, all released at once; returns
    "ok" or the refusal's class name per call, in order."""
    from app.extensions import db

    results: list[str | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i, call):
        with app.app_context():
            barrier.wait()
            try:
                call(db.session)
                results[i] = "ok"
            except (ValidationError, Conflict) as exc:
                results[i] = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - a crash is a failure of the test
                results[i] = f"crash: {exc!r}"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_write_offs_never_exceed_the_transaction(app, session):
    txn = make_txn(session, 100_00, method="CASH")
    tid = txn.id

    def write_off(i):
        return lambda s: W.request_write_off(s, transaction_id=tid, amount="60.00",
                                             reason=f"race {i}", actor="clerk")

    results = race(app, *(write_off(i) for i in range(4)))
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "ValidationError", "Conflict"}, results
    session.expire_all()
    held = session.scalar(select(func.sum(WriteOff.amount)).where(WriteOff.transaction_id == tid))
    assert held == 60_00
    assert L.available_amount(session, session.get(type(txn), tid)) == 40_00


def test_concurrent_payment_runs_pay_each_refund_once(app, session):
    deploy_refund_workflow(session)
    session.commit()
    ids = []
    for amount in ("20.00", "7.50"):
        txn = make_txn(session, 100_00, method="CHQ")
        refund = approve_all(session, request(session, txn, amount, method="cheque"))
        assert refund.status == "approved"
        ids.append(refund.id)

    def pay(s):
        RF.create_payment_run(s, refund_ids=ids, actor="manager")

    results = race(app, pay, pay, pay)
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "Conflict"}, results
    session.expire_all()
    refunds = [session.get(Refund, i) for i in ids]
    assert all(r.status == "paid" for r in refunds)
    assert len({r.payment_run_id for r in refunds}) == 1
    paid_out = session.scalar(select(func.count()).select_from(L.LedgerLine).where(
        L.LedgerLine.account == L.REFUNDS_PAYABLE, L.LedgerLine.amount > 0,
        L.LedgerLine.transaction_id.in_([r.transaction_id for r in refunds])))
    assert paid_out == 2  # each refund left Refunds Payable once
    for r in refunds:
        t = session.get(L.Transaction, r.transaction_id)
        assert L.balance_of(session, L.REFUNDS_PAYABLE, t.fund_code, t.account_reference) == 0
    assert not L.unbalanced_groups(session)


def _import_with_suspense(app, session, fund_code: str):
    tag = unique("C", 6)
    csv_text = ("transaction_date,account_reference,amount,fund_code\n"
                f"2026-05-01,{tag}A,10.00,{fund_code}\n2026-05-01,{tag}B,50.00,\n")
    batch = IM.process_import(session, _receive(app, session, csv_text).id)
    assert batch.status == "succeeded" and batch.rows_suspense == 1
    item = session.scalar(select(SuspenseItem).where(SuspenseItem.import_id == batch.id))
    return batch.id, item.id


def test_an_import_is_reversed_once_under_concurrent_requests(app, session):
    batch_id, _ = _import_with_suspense(app, session, "TWS")

    def reverse(i):
        return lambda s: IM.reverse_import(s, batch_id, actor="manager", reason=f"wrong file {i}")

    results = race(app, *(reverse(i) for i in range(3)))
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "Conflict"}, results
    session.expire_all()
    assert session.get(ImportBatch, batch_id).status == "reversed"
    assert session.scalar(select(func.count()).select_from(PostingGroup).where(
        PostingGroup.import_id == batch_id, PostingGroup.kind == "reversal")) == 2
    assert_books_balance(session)


def test_reversing_an_import_while_its_suspense_money_is_allocated(app, session):
    batch_id, item_id = _import_with_suspense(app, session, "TWS")

    def reverse(s):
        IM.reverse_import(s, batch_id, actor="manager", reason="wrong file")

    def allocate(s):
        S.allocate(s, item_id, [{"fund_code": "TWS", "account_reference": unique("AL"),
                                 "amount": "30.00"}], actor="clerk")

    results = race(app, reverse, allocate)
    assert results.count("ok") == 1, results
    session.expire_all()
    item = session.get(SuspenseItem, item_id)
    if results[0] == "ok":  # the reversal won: the money left suspense once, by the reversal
        assert item.status == "withdrawn" and S.allocations_of(session, item_id) == []
    else:
        assert session.get(ImportBatch, batch_id).status == "succeeded"
        assert item.remaining_amount == 20_00
    assert_books_balance(session)


def test_reversing_an_import_while_a_refund_of_it_is_requested(app, session):
    deploy_refund_workflow(session)
    session.commit()
    batch_id, _ = _import_with_suspense(app, session, "TWS")
    tid = session.scalar(select(L.Transaction.id).where(L.Transaction.of_import(batch_id)))

    def reverse(s):
        IM.reverse_import(s, batch_id, actor="manager", reason="wrong file")

    def refund(s):
        RF.request_refund(s, transaction_id=tid, amount="10.00", reason="paid twice",
                          method="cheque", payee={"name": "A Payer"}, actor="clerk")

    results = race(app, reverse, refund)
    assert results.count("ok") == 1, results
    session.expire_all()
    refunds = session.scalars(select(Refund).where(Refund.transaction_id == tid)).all()
    reversed_ = session.get(ImportBatch, batch_id).status == "reversed"
    assert reversed_ != bool(refunds)  # never both: refunding money the reversal took back
    assert_books_balance(session)


def test_numbers_of_a_new_prefix_taken_at_once_are_distinct(app, session):
    prefix = unique("Q", 5)
    numbers: list[str] = []

    def take(s):
        numbers.append(L.next_number(s, prefix))
        s.commit()

    results = race(app, *(take for _ in range(6)))
    assert results == ["ok"] * 6, results
    assert sorted(numbers) == [f"{prefix}{i:06d}" for i in range(1, 7)]
