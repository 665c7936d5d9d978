"""Ledger contract: balanced groups, append-only lines, reversals, numbers, availability."""

import datetime as dt

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DatabaseError, IntegrityError

from app.domain.errors import Conflict, NotFound, ValidationError
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.services import ledger as L
from app.services.audit import history_for


def _receipt(session, amount=1000, fund="TWS", ref="X1"):
    g = L.post_group(session, "receipt", [L.Leg(L.BANK, amount), L.Leg(L.FUND, -amount, fund, ref)],
                     actor="clerk", office_code="CIVIC")
    t = L.record_income(session, group=g, fund_code=fund, account_reference=ref, amount=amount,
                        payment_method_code="CASH", transaction_date=dt.date.today(),
                        created_by="clerk", vat_code="S")
    return g, t


def test_post_group_balanced_and_linked(session):
    g, t = _receipt(session, 1200)
    session.commit()
    lines = session.scalars(select(LedgerLine).where(LedgerLine.group_id == g.id)).all()
    assert sum(l.amount for l in lines) == 0
    fund_line = next(l for l in lines if l.account == L.FUND)
    assert fund_line.transaction_id == t.id
    assert t.receipt_number == g.number and g.number.startswith("R")
    assert t.vat_amount == 200  # 12.00 incl. 20% VAT
    assert history_for(session, "PostingGroup", g.id)[0].action == "post"
    assert L.available_amount(session, t) == 1200


@pytest.mark.parametrize("legs", [
    [L.Leg(L.BANK, 100), L.Leg(L.FUND, -99, "TWS", "X")],
    [L.Leg(L.BANK, 100)],
    [L.Leg(L.BANK, 100), L.Leg(L.FUND, -100, "TWS", "X"), L.Leg(L.SUSPENSE, 0, "SUSP")],
    [L.Leg("NOPE", 100), L.Leg(L.FUND, -100, "TWS", "X")],
    [L.Leg(L.BANK, 100), L.Leg(L.FUND, -100)],
])
def test_post_group_refuses_bad_legs(session, legs):
    before = session.scalar(select(PostingGroup.id).order_by(PostingGroup.id.desc()).limit(1))
    with pytest.raises(ValidationError):
        L.post_group(session, "receipt", legs, actor="clerk")
    session.rollback()
    assert session.scalar(select(PostingGroup.id).order_by(PostingGroup.id.desc()).limit(1)) == before


def test_ledger_rows_are_append_only(session):
    g, t = _receipt(session)
    session.commit()
    for sql in ("UPDATE ledger_line SET amount = amount + 1 WHERE group_id = :g",
                "DELETE FROM ledger_line WHERE group_id = :g",
                "UPDATE posting_group SET reason = 'x' WHERE id = :g",
                "DELETE FROM income_transaction WHERE posting_group_id = :g",
                "UPDATE income_transaction SET amount = 1 WHERE posting_group_id = :g"):
        with pytest.raises(DatabaseError):
            session.execute(text(sql), {"g": g.id})
            session.flush()
        session.rollback()




def test_balance_trigger_refuses_an_unbalanced_statement_on_postgres(session):
    """The database itself refuses lines that leave a posting group unbalanced: checked at the end
    of each INSERT into ledger_line, for every group the statement wrote to."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the balance trigger is PostgreSQL only")
    def group():
        g = PostingGroup(kind="journal", number=L.next_number(session, "Z"), created_by="x")
        session.add(g)
        session.flush()
        return g

    g = group()
    session.add(LedgerLine(group_id=g.id, account=L.BANK, amount=5))
    with pytest.raises(DatabaseError, match=f"posting group {g.id} does not balance"):
        session.flush()
    session.rollback()
    g, h = group(), group()
    lines = LedgerLine.__table__.insert()
    # one balanced group and one unbalanced group in the same statement: refused whole
    with pytest.raises(DatabaseError, match=f"posting group {h.id} does not balance"):
        session.execute(lines.values([
            dict(group_id=g.id, account=L.BANK, amount=7),
            dict(group_id=g.id, account=L.FUND, fund_code="CTAX", amount=-7),
            dict(group_id=h.id, account=L.BANK, amount=3),
            dict(group_id=h.id, account=L.FUND, fund_code="CTAX", amount=-2)]))
    session.rollback()
    # lines added later to a group that balanced: the check sums the whole group
    group = L.post_group(session, "journal", [L.Leg(L.BANK, 9), L.Leg(L.FUND, -9, "CTAX")],
                         actor="x")
    session.commit()
    with pytest.raises(DatabaseError, match="does not balance"):
        session.execute(lines.values([dict(group_id=group.id, account=L.BANK, amount=1)]))
    session.rollback()
    assert sum(l.amount for l in session.get(PostingGroup, group.id).lines) == 0


def test_sqlite_refuses_to_commit_an_unbalanced_posting_group(session):
    """SQLite has no statement-level triggers: every group a transaction wrote lines to must
    balance when it commits, or the commit is refused and nothing of the transaction is kept."""
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL refuses it per statement (test above)")
    lines = LedgerLine.__table__.insert()

    def group():
        g = PostingGroup(kind="journal", number=L.next_number(session, "Z"), created_by="x")
        session.add(g)
        session.flush()
        return g

    g = group()
    gid = g.id
    session.execute(lines.values([dict(group_id=gid, account=L.BANK, amount=5)]))
    with pytest.raises(IntegrityError, match=f"posting group {gid} does not balance"):
        session.commit()
    session.rollback()
    assert session.get(PostingGroup, gid) is None  # the whole transaction was rolled back
    # a balanced group and an unbalanced one in the same transaction: refused whole
    g, h = group(), group()
    ids = (g.id, h.id)
    session.execute(lines.values([
        dict(group_id=g.id, account=L.BANK, amount=7),
        dict(group_id=g.id, account=L.FUND, fund_code="CTAX", amount=-7)]))
    session.execute(lines.values([
        dict(group_id=h.id, account=L.BANK, amount=3),
        dict(group_id=h.id, account=L.FUND, fund_code="CTAX", amount=-2)]))
    with pytest.raises(IntegrityError, match=f"posting group {h.id} does not balance"):
        session.commit()
    session.rollback()
    assert session.scalar(select(func.count()).where(LedgerLine.group_id.in_(ids))) == 0
    # a line added later to a group that balanced: the check sums the whole group
    balanced = L.post_group(session, "journal", [L.Leg(L.BANK, 9), L.Leg(L.FUND, -9, "CTAX")],
                            actor="x")
    session.commit()
    session.execute(lines.values([dict(group_id=balanced.id, account=L.BANK, amount=1)]))
    with pytest.raises(IntegrityError, match="does not balance"):
        session.commit()
    session.rollback()
    assert sum(l.amount for l in session.get(PostingGroup, balanced.id).lines) == 0
    # a balanced posting still commits, and leaves nothing waiting for the check
    g2, _ = _receipt(session, 250)
    session.commit()
    assert session.execute(text("SELECT count(*) FROM ledger_commit_check")).scalar() == 0


def test_sqlite_enforces_foreign_keys(session):
    """SQLite checks references as PostgreSQL does (foreign keys are on for every connection)."""
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL: foreign keys and the per-statement checks (test below)")
    assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    missing = session.scalar(select(func.max(PostingGroup.id))) + 1000
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        session.execute(LedgerLine.__table__.insert().values([
            dict(group_id=missing, account=L.BANK, amount=7),
            dict(group_id=missing, account=L.FUND, fund_code="CTAX", amount=-7)]))
    session.rollback()
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        session.execute(Transaction.__table__.insert().values(
            fund_code="CTAX", amount=5, vat_amount=0, payment_method_code="CASH",
            transaction_date=dt.date.today(), created_by="x", created_at=dt.datetime.now(dt.UTC),
            posting_group_id=_receipt(session, 5)[0].id, source_transaction_id=987654321))
    session.rollback()


def test_ledger_references_are_checked_per_statement_on_postgres(session):
    """PostgreSQL checks the ledger's own references at the end of each statement (no foreign
    keys on them): a line of a group that does not exist, a line or an income row naming a
    transaction or group that does not exist, are refused; TRUNCATE is refused too."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the reference triggers are PostgreSQL only")
    fks = {fk["name"] for table in ("ledger_line", "income_transaction", "transaction_narrative")
           for fk in inspect(session.connection()).get_foreign_keys(table)}
    assert not fks & {"ledger_line_group_id_fkey", "ledger_line_transaction_id_fkey",
                      "income_transaction_posting_group_id_fkey",
                      "transaction_narrative_transaction_id_fkey"}
    with pytest.raises(IntegrityError, match="transaction 987654321, which does not exist"):
        session.execute(text("INSERT INTO transaction_narrative (transaction_id, narrative, fund_code, "
                             "transaction_date) VALUES (987654321, 'nobody', 'HRA', '2026-04-01')"))
    session.rollback()
    missing = session.scalar(select(func.max(PostingGroup.id))) + 1000
    lines = LedgerLine.__table__.insert()
    with pytest.raises(IntegrityError, match=f"posting group {missing}, which does not exist"):
        session.execute(lines.values([dict(group_id=missing, account=L.BANK, amount=7),
                                      dict(group_id=missing, account=L.FUND, fund_code="CTAX",
                                           amount=-7)]))
    session.rollback()
    g = PostingGroup(kind="journal", number=L.next_number(session, "Z"), created_by="x")
    session.add(g)
    session.flush()
    # one good statement's worth of lines, then a transaction id that does not exist
    with pytest.raises(IntegrityError, match="transaction 987654321, which does not exist"):
        session.execute(lines.values([
            dict(group_id=g.id, account=L.BANK, fund_code=None, amount=7, transaction_id=None),
            dict(group_id=g.id, account=L.FUND, fund_code="CTAX", amount=-7,
                 transaction_id=987654321)]))
    session.rollback()
    with pytest.raises(IntegrityError, match=f"posting group {missing}, which does not exist"):
        session.execute(Transaction.__table__.insert().values(
            fund_code="CTAX", amount=5, vat_amount=0, payment_method_code="CASH",
            transaction_date=dt.date.today(), created_by="x", created_at=dt.datetime.now(dt.UTC),
            posting_group_id=missing))
    session.rollback()
    # filling in a line's transaction (the one change allowed) is checked as well
    group = L.post_group(session, "journal", [L.Leg(L.BANK, 9), L.Leg(L.FUND, -9, "CTAX")],
                         actor="x")
    session.commit()
    line = next(x for x in group.lines if x.account == L.FUND)
    with pytest.raises(IntegrityError, match="transaction 987654321, which does not exist"):
        session.execute(text("UPDATE ledger_line SET transaction_id = 987654321 WHERE id = :i"),
                        {"i": line.id})
    session.rollback()
    g2, t2 = _receipt(session, 300)  # the ordinary path still works
    session.commit()
    assert t2.posting_group_id == g2.id
    for table in ("ledger_line", "income_transaction", "posting_group"):
        with pytest.raises(DatabaseError, match="append-only"):
            session.execute(text(f"TRUNCATE {table} CASCADE"))
        session.rollback()
    assert session.get(PostingGroup, g2.id) is not None


def test_reverse_group_once_with_reason(session):
    g, t = _receipt(session, 700)
    session.commit()
    with pytest.raises(ValidationError):
        L.reverse_group(session, g, actor="manager", reason="  ")
    r = L.reverse_group(session, g, actor="manager", reason="Posted twice")
    session.commit()
    assert r.reverses_id == g.id and r.kind == "reversal"
    assert sum(l.amount for l in r.lines) == 0
    assert L.available_amount(session, t) == 0
    with pytest.raises(Conflict):
        L.reverse_group(session, g, actor="manager", reason="again")
    session.rollback()
    with pytest.raises(Conflict):
        L.reverse_group(session, r, actor="manager", reason="reverse a reversal")
    session.rollback()


def test_next_number_unique_and_increasing(session):
    a = L.next_number(session, "q")
    b = L.next_number(session, "Q")
    assert a.startswith("Q") and int(b[1:]) == int(a[1:]) + 1


def test_lock_transaction(session):
    _, t = _receipt(session)
    session.commit()
    assert L.lock_transaction(session, t.id).id == t.id
    session.commit()
    with pytest.raises(NotFound):
        L.lock_transaction(session, 10**9)


def test_available_amount_with_reservation(session):
    _, t = _receipt(session, 5000)
    session.commit()
    tid = t.id

    def reservation(s, transaction_ids):
        return {tid: 1500} if tid in transaction_ids else {}

    L.register_reservation(reservation)
    try:
        assert L.available_amount(session, t) == 3500
    finally:
        L._reservations.remove(reservation)


def test_balances_and_trial_balance(session):
    before_bank = L.balance_of(session, L.BANK)
    before_fund = L.balance_of(session, L.FUND, "TWS", "BAL1")
    _receipt(session, 2500, ref="BAL1")
    session.commit()
    assert L.balance_of(session, L.BANK) == before_bank + 2500
    assert L.balance_of(session, L.FUND, "TWS", "BAL1") == before_fund - 2500
    tb = L.trial_balance(session)
    assert tb["balanced"] and tb["total_debits"] == tb["total_credits"] > 0
    assert any(a["account"] == "BANK" for a in tb["accounts"])
    assert L.unbalanced_groups(session) == []
