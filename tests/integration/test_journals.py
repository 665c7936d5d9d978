"""Journals, undo and transfers through the services; concurrency on PostgreSQL."""

import threading

import pytest
from sqlalchemy import select

from app.domain.errors import Conflict, NotFound, ValidationError
from app.models.ledger import PostingGroup, Transaction
from app.services import journals as J
from app.services import ledger as L
from app.services.receipts import take_receipt


def receipt(session, amount="100.00", ref="JSRC"):
    res = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": ref, "amount": amount}],
                       payment_method_code="CASH", actor="cashier")
    return res.transactions[0]


def test_partial_journal_to_two_targets(session):
    src = receipt(session, "100.00")
    g = J.journal(session, transaction_id=src.id, reason="Paid to wrong account", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "JT1", "amount": "30.00"},
                           {"fund_code": "TWS", "account_reference": "JT2", "amount": "20.00"}])
    assert g.kind == "journal" and g.number.startswith("J")
    assert L.available_amount(session, src) == 5000
    targets = session.scalars(select(Transaction).where(Transaction.posting_group_id == g.id)).all()
    assert sorted(t.amount for t in targets) == [2000, 3000]
    assert all(t.source_transaction_id == src.id for t in targets)
    assert sum(l.amount for l in g.lines) == 0
    debit = [l for l in g.lines if l.amount > 0]
    assert len(debit) == 1 and debit[0].transaction_id == src.id and debit[0].amount == 5000


def test_journal_over_available_refused(session):
    src = receipt(session, "10.00")
    with pytest.raises(ValidationError) as exc:
        J.journal(session, transaction_id=src.id, reason="x", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "JT3", "amount": "10.01"}])
    assert "targets" in exc.value.errors
    assert L.available_amount(session, src) == 1000


@pytest.mark.parametrize("target,field", [
    ({"fund_code": "CTAX", "account_reference": "123456780", "amount": "1.00"},
     "targets[0].account_reference"),
    ({"fund_code": "NOPE", "account_reference": "A", "amount": "1.00"}, "targets[0].fund_code"),
    ({"fund_code": "TWS", "account_reference": "A", "amount": "0"}, "targets[0].amount"),
])
def test_journal_targets_validated(session, target, field):
    src = receipt(session, "10.00")
    with pytest.raises(ValidationError) as exc:
        J.journal(session, transaction_id=src.id, reason="x", actor="clerk", targets=[target])
    assert field in exc.value.errors


def test_journal_needs_reason_and_source(session):
    src = receipt(session, "10.00")
    with pytest.raises(ValidationError):
        J.journal(session, transaction_id=src.id, reason=" ", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "A", "amount": "1.00"}])
    with pytest.raises(NotFound):
        J.journal(session, transaction_id=10**9, reason="x", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "A", "amount": "1.00"}])


def test_undo_once_restores_available(session):
    src = receipt(session, "50.00")
    g = J.journal(session, transaction_id=src.id, reason="wrong", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "JU1", "amount": "50.00"}])
    assert L.available_amount(session, src) == 0
    rev = J.undo(session, group_id=g.id, reason="Journalled in error", actor="clerk")
    assert rev.reverses_id == g.id
    assert L.available_amount(session, src) == 5000
    target = session.scalar(select(Transaction).where(Transaction.posting_group_id == g.id))
    assert L.available_amount(session, target) == 0
    with pytest.raises(Conflict):
        J.undo(session, group_id=g.id, reason="again", actor="clerk")
    with pytest.raises(ValidationError):
        J.undo(session, group_id=g.id, reason="", actor="clerk")


def test_undo_refused_when_money_moved_on(session):
    src = receipt(session, "40.00")
    g = J.journal(session, transaction_id=src.id, reason="first", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "JM1", "amount": "40.00"}])
    target = session.scalar(select(Transaction).where(Transaction.posting_group_id == g.id))
    g2 = J.journal(session, transaction_id=target.id, reason="onward", actor="clerk",
                   targets=[{"fund_code": "TWS", "account_reference": "JM2", "amount": "1.00"}])
    with pytest.raises(Conflict):
        J.undo(session, group_id=g.id, reason="undo", actor="clerk")
    J.undo(session, group_id=g2.id, reason="undo onward", actor="clerk")
    J.undo(session, group_id=g.id, reason="now possible", actor="clerk")
    assert L.available_amount(session, src) == 4000


def test_transfer_one_to_many_and_pairs(session):
    src = receipt(session, "90.00")
    g = J.transfer(session, reason="CT support", actor="clerk", source_transaction_id=src.id,
                   targets=[{"fund_code": "TWS", "account_reference": "TR1", "amount": "60.00"},
                            {"fund_code": "TWS", "account_reference": "TR2", "amount": "30.00"}])
    assert g.kind == "transfer" and g.number.startswith("T")
    assert L.available_amount(session, src) == 0
    with pytest.raises(ValidationError):
        J.transfer(session, reason="more", actor="clerk", source_transaction_id=src.id,
                   targets=[{"fund_code": "TWS", "account_reference": "TR3", "amount": "0.01"}])
    a, b = receipt(session, "5.00", "PA"), receipt(session, "7.00", "PB")
    g2 = J.transfer(session, reason="pairs", actor="clerk", pairs=[
        {"transaction_id": a.id, "fund_code": "TWS", "account_reference": "PA2", "amount": "5.00"},
        {"transaction_id": b.id, "fund_code": "TWS", "account_reference": "PB2", "amount": "3.00"}])
    targets = {t.account_reference: t for t in session.scalars(
        select(Transaction).where(Transaction.posting_group_id == g2.id))}
    assert targets["PA2"].source_transaction_id == a.id and targets["PB2"].source_transaction_id == b.id
    assert L.available_amount(session, b) == 400
    with pytest.raises(ValidationError):
        J.transfer(session, reason="too much", actor="clerk", pairs=[
            {"transaction_id": b.id, "fund_code": "TWS", "account_reference": "PB3", "amount": "4.01"}])
    J.undo(session, group_id=g2.id, reason="undo pairs", actor="clerk")
    assert L.available_amount(session, a) == 500


def test_failed_receipt_posts_nothing(session):
    before = session.scalar(select(PostingGroup.id).order_by(PostingGroup.id.desc()).limit(1))
    with pytest.raises(ValidationError):
        take_receipt(session, payment_method_code="CASH", actor="cashier", lines=[
            {"fund_code": "TWS", "account_reference": "OK", "amount": "1.00"},
            {"fund_code": "TWS", "account_reference": "BAD", "amount": "1.001"}])
    assert session.scalar(select(PostingGroup.id).order_by(PostingGroup.id.desc()).limit(1)) == before


def test_concurrent_journals_never_exceed_available(app, session):
    from app.extensions import db

    src = receipt(session, "100.00", "CONC")
    src_id = src.id
    session.commit()
    results = []
    barrier = threading.Barrier(6)

    def worker(i):
        with app.app_context():
            s = db.session
            barrier.wait()
            try:
                if i % 2:
                    J.journal(s, transaction_id=src_id, reason=f"t{i}", actor="clerk", targets=[
                        {"fund_code": "TWS", "account_reference": f"CC{i}", "amount": "40.00"}])
                else:
                    J.transfer(s, reason=f"t{i}", actor="clerk2", source_transaction_id=src_id,
                               targets=[{"fund_code": "TWS", "account_reference": f"CT{i}", "amount": "40.00"}])
                results.append("ok")
            except (ValidationError, Conflict) as exc:
                results.append(type(exc).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 2, results
    session.expire_all()
    src = session.get(Transaction, src_id)
    assert L.available_amount(session, src) == 2000
    assert L.moved_out(session, src_id) == 8000


def test_concurrent_undo_only_once(app, session):
    from app.extensions import db

    src = receipt(session, "10.00", "CUNDO")
    g = J.journal(session, transaction_id=src.id, reason="x", actor="clerk",
                  targets=[{"fund_code": "TWS", "account_reference": "CU1", "amount": "10.00"}])
    gid = g.id
    results = []
    barrier = threading.Barrier(4)

    def worker():
        with app.app_context():
            barrier.wait()
            try:
                J.undo(db.session, group_id=gid, reason="race", actor="clerk")
                results.append("ok")
            except Conflict:
                results.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
