"""Bank reconciliation (issue 17), on SQLite and PostgreSQL: bank accounts, statements with their
balances and debit lines, settlement lines kept out of income by a rule, expected credits (bags,
card settlements, agent files), proposals, matching (splits, fees, amounts that do not add up),
unmatching, concurrent clerks, the reconciliation's difference and its four-eyes sign-off."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, ValidationError
from app.models.card_payment import CardPayment
from app.models.cashup import ExpectedBankCredit
from app.models.imports import ImportBatch, ProcessingRule
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reconciliation import BankStatement, CardSettlement, StatementLine
from app.security import roles as R
from app.services import ledger as L
from app.services import reconciliation as RC
from app.services.imports.processing import process_import
from app.services.imports.receiving import receive_import
from tests.conftest import unique
from tests.integration.test_concurrency import race

DAY = dt.date(2026, 11, 16)  # a Monday


@pytest.fixture
def acct(session):
    code = unique("BA", 10)
    a = RC.save_bank_account(session, actor="admin", data={
        "code": code, "name": f"Account {code}", "sort_code": "20-00-00",
        "account_number": "12345678", "ledger_account_code": "1100"})
    session.commit()
    return a


def credit(session, acct, amount, *, kind=RC.BAG, day=DAY, ref=None, fee=0,
           clearing=L.CASH_IN_TRANSIT, clearing_ref="CIVIC"):
    it = ExpectedBankCredit(kind=kind, amount=amount, fee=fee, expected_date=day,
                            reference=ref or unique("BAG", 10), source_id=random.randrange(1, 2**31),
                            clearing_account=clearing, clearing_reference=clearing_ref,
                            bank_account_id=acct.id)
    session.add(it)
    session.commit()
    return it


def statement(session, acct, lines, *, opening=0, closing=None, day=DAY):
    total = sum(ln[1] for ln in lines)
    stmt = RC.add_statement(
        session, actor="clerk", bank_account=acct.code, statement_date=day,
        opening_balance=opening, closing_balance=opening + total if closing is None else closing,
        lines=[{"date": d, "amount": a, "reference": r} for d, a, r in lines])
    session.commit()
    return [ln.id for ln in stmt.lines]


def legs(session, group_id):
    return sorted((ln.account, ln.account_reference, ln.amount) for ln in session.scalars(
        select(LedgerLine).where(LedgerLine.group_id == group_id)))


# --------------------------------------------------------------------------- bank accounts
def test_default_bank_account_and_bad_account_input(session):
    default = RC.default_account(session)
    assert default.is_default and default.ledger_reference is None
    assert RC.bank_account_for(session, None).id == default.id
    with pytest.raises(ValidationError) as exc:
        RC.save_bank_account(session, actor="admin", data={
            "code": "x y", "name": "", "sort_code": "2000", "account_number": "12",
            "ledger_account_code": ""})
    assert set(exc.value.errors) == {"code", "name", "sort_code", "account_number",
                                     "ledger_account_code"}
    with pytest.raises(ValidationError):
        RC.bank_account_for(session, "NO-SUCH")


# --------------------------------------------------------------------------- statements
CAMT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="GBP">1000.00</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-15</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="GBP">1{total}</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-16</Dt></Dt></Bal>
<Ntry><Amt Ccy="GBP">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-11-16</Dt></BookgDt><NtryDtls><TxDtls><RmtInf><Ustrd>{ref}</Ustrd></RmtInf>
</TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="GBP">{bag}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-11-16</Dt></BookgDt><NtryDtls><TxDtls><RmtInf><Ustrd>{bagref}</Ustrd>
</RmtInf></TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="GBP">4.50</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-11-16</Dt></BookgDt><AcctSvcrRef>CHG1</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>BANK CHARGES</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>
"""


def test_camt_statement_keeps_balances_debits_and_settlement_lines_out_of_income(
        app, session, acct, tmp_path):
    bagref = unique("DEP", 10)
    rule = ProcessingRule(name=unique("settle", 20), priority=1, import_type="camt053",
                          conditions=f'reference starts_with "{bagref}"',
                          set_line_kind="settlement", stop_processing=True)
    session.add(rule)
    session.commit()
    try:
        ref = unique("W", 9)
        # 1000.00 + 25.00 + 123.45 - 4.50 = 1143.95
        xml = CAMT.format(total="143.95", ref=ref, bag="123.45", bagref=bagref)
        batch = receive_import(session, stream=io.BytesIO(xml.encode()), filename="s.xml",
                               fmt="camt053", actor="clerk", instance_path=str(tmp_path),
                               max_bytes=1 << 20, bank_account=acct.code)
        process_import(session, batch.id)
        session.expire_all()
        batch = session.get(ImportBatch, batch.id)
        assert batch.status == "succeeded", batch.errors_json
        assert (batch.rows_posted + batch.rows_suspense, batch.rows_settlement) == (1, 1)
        assert batch.settlement_amount == 12345
        stmt = session.scalar(select(BankStatement).where(BankStatement.import_id == batch.id))
        assert (stmt.opening_balance, stmt.closing_balance) == (100000, 114395)
        assert stmt.statement_date == DAY
        kept = sorted((ln.kind, ln.amount) for ln in stmt.lines)
        assert kept == [("debit", -450), ("settlement", 12345)]
        # the citizen's payment debited this account's Bank dimension; the settlement nothing
        bank = session.scalars(select(LedgerLine.amount).join(
            PostingGroup, PostingGroup.id == LedgerLine.group_id).where(
            PostingGroup.import_id == batch.id, LedgerLine.account == "BANK",
            LedgerLine.account_reference == acct.ledger_reference)).all()
        assert sum(bank) == 2500
        assert session.scalar(select(Transaction.id).where(
            Transaction.amount == 12345, Transaction.import_id == batch.id)) is None
    finally:
        session.delete(session.get(ProcessingRule, rule.id))
        session.commit()


# --------------------------------------------------------------------------- matching
def test_proposal_then_match_posts_bank_and_clears_then_unmatch_reverses(session, acct):
    bag = credit(session, acct, 50000, day=DAY)
    other = credit(session, acct, 50000, day=DAY + dt.timedelta(days=1))  # same amount
    (line,) = statement(session, acct, [(DAY + dt.timedelta(days=1), 50000,
                                         f"DEPOSIT {bag.reference}")])
    props = RC.propose(session, acct)
    assert [(p.line_ids, p.item_ids) for p in props] == [([line], [bag.id])]
    assert "reference in the line" in props[0].reason and "1 day(s) apart" in props[0].reason
    m = RC.match(session, actor="clerk", line_ids=[line], item_ids=[bag.id], reason=props[0].reason)
    assert legs(session, m.posting_group_id) == sorted([
        ("BANK", acct.ledger_reference, 50000), ("CASH_IN_TRANSIT", "CIVIC", -50000)])
    session.expire_all()
    assert session.get(ExpectedBankCredit, bag.id).cleared
    assert session.get(StatementLine, line).match_id == m.id
    assert session.get(ExpectedBankCredit, other.id).match_id is None
    with pytest.raises(Conflict):
        RC.match(session, actor="clerk2", line_ids=[line], item_ids=[other.id])
    session.rollback()
    with pytest.raises(ValidationError):
        RC.unmatch(session, m.id, actor="clerk", reason="")
    RC.unmatch(session, m.id, actor="clerk", reason="wrong bag")
    session.expire_all()
    rev = session.get(PostingGroup, session.get(type(m), m.id).reversal_group_id)
    assert rev.reverses_id == m.posting_group_id
    assert session.get(StatementLine, line).match_id is None
    assert not session.get(ExpectedBankCredit, bag.id).cleared
    with pytest.raises(Conflict):
        RC.unmatch(session, m.id, actor="clerk", reason="again")


def test_split_and_amounts_that_do_not_add_up(session, acct):
    a = credit(session, acct, 30000)
    b = credit(session, acct, 20000)
    l1, l2 = statement(session, acct, [(DAY, 40000, "X1"), (DAY, 10000, "X2")])
    with pytest.raises(ValidationError) as exc:
        RC.match(session, actor="clerk", line_ids=[l1], item_ids=[a.id, b.id])
    assert "do not add up" in exc.value.message
    with pytest.raises(ValidationError):
        RC.match(session, actor="clerk", line_ids=[], item_ids=["x"])
    session.rollback()
    assert session.get(StatementLine, l1).match_id is None
    # several lines against several items: 400 + 100 = 300 + 200
    m = RC.match(session, actor="clerk", line_ids=[l1, l2], item_ids=[a.id, b.id])
    assert m.lines_total == m.items_total == 50000
    # one line against several items of a kind and day: proposed as a group
    c, d = credit(session, acct, 1234, day=DAY), credit(session, acct, 766, day=DAY)
    (l3,) = statement(session, acct, [(DAY, 2000, "TWO BAGS")])
    props = RC.propose(session, acct, line_ids=[l3])
    assert props and sorted(props[0].item_ids) == sorted([c.id, d.id])


def _card_payments(session, provider: str, day: dt.date, pays) -> None:
    """Paid card payments of ``provider`` settled on ``day``, (amount, fee) each, received as one
    receipt into CARD_CLEARING."""
    total = sum(amount for amount, _ in pays)
    gid = L.post_group(session, "receipt", [L.Leg("CARD_CLEARING", total, None, provider),
                                            L.Leg("FUND", -total, "HRA")], actor="t").id
    for amount, fee in pays:
        session.add(CardPayment(token=unique("tok", 20), status="paid", amount=amount,
                                provider=provider, settled_date=day, fee=fee,
                                posting_group_id=gid, expires_at=dt.datetime.now(dt.timezone.utc)))
    session.commit()


def _paid_card_refund(session, provider: str, pence: int, paid_on: dt.date):
    """A card refund paid through ``provider`` on ``paid_on``, posted as refunds.pay_card_refund
    posts it (out of CARD_CLEARING)."""
    from app.models.refund import Refund
    from app.services.clearing import card_clearing_leg
    from tests.integration.test_refunds import make_txn

    txn = make_txn(session, 50_000)
    L.post_group(session, "refund", [L.Leg(L.REFUNDS_PAYABLE, pence),
                                     card_clearing_leg(-pence, provider, txn.id)], actor="t")
    refund = Refund(transaction_id=txn.id, amount=pence, reason="Paid twice", method="card",
                    status="paid", requested_by="clerk", provider=provider,
                    paid_at=dt.datetime.combine(paid_on, dt.time(12), dt.timezone.utc))
    session.add(refund)
    session.commit()
    return refund


def _clearing(session, provider: str) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0)).where(
        LedgerLine.account == L.CARD_CLEARING, LedgerLine.account_reference == provider))


def test_card_refunds_are_netted_off_their_days_settlement(session, acct):
    """The provider pays out a card refund from the next working day's settlement: the expected
    credit is that day's payments less fees less refunds, matching it clears CARD_CLEARING to
    nothing, and a refresh counts nothing twice. A day whose refunds take all of it expects no
    credit, and its payments and refunds are still attached (not counted again later)."""
    provider = unique("p", 10).lower()
    paid_on = dt.date.today() - dt.timedelta(days=14)
    day = RC.next_working_day(paid_on)
    _card_payments(session, provider, day, ((10000, 75), (10000, 75)))
    refund = _paid_card_refund(session, provider, 3000, paid_on)
    other = _paid_card_refund(session, unique("q", 10).lower(), 500, paid_on)  # another provider
    later = _paid_card_refund(session, provider, 700, dt.date.today() + dt.timedelta(days=3))
    for _ in range(2):  # the second refresh changes nothing
        RC.refresh_expected(session)
        session.commit()
        settlement = session.scalar(select(CardSettlement).where(
            CardSettlement.provider == provider, CardSettlement.settled_date == day))
        assert (settlement.payments, settlement.gross, settlement.fees, settlement.refund_count,
                settlement.refunds) == (2, 20000, 150, 1, 3000)
        item = session.scalar(select(ExpectedBankCredit).where(
            ExpectedBankCredit.kind == RC.CARD, ExpectedBankCredit.source_id == settlement.id))
        assert (item.amount, item.fee, item.gross) == (16850, 150, 17000)
    session.refresh(refund), session.refresh(other), session.refresh(later)
    assert refund.settlement_id == settlement.id
    assert other.settlement_id not in (None, settlement.id)  # its own provider's settlement
    assert later.settlement_id is None  # not due yet
    item.bank_account_id = acct.id
    session.commit()
    (line,) = statement(session, acct, [(day, 16850, "CARD SETTLEMENT")])
    m = RC.match(session, actor="clerk", line_ids=[line], item_ids=[item.id])
    assert legs(session, m.posting_group_id) == sorted([
        ("BANK", acct.ledger_reference, 16850), ("CARD_FEES", provider, 150),
        ("CARD_CLEARING", provider, -17000)])
    assert _clearing(session, provider) == -700  # only the refund not settled yet

    # refunds beyond the day's payments: no credit to expect, nothing counted twice
    p2 = unique("r", 10).lower()
    day2 = RC.next_working_day(paid_on + dt.timedelta(days=3))
    _card_payments(session, p2, day2, ((1000, 10),))
    big = _paid_card_refund(session, p2, 2000, paid_on + dt.timedelta(days=3))
    for _ in range(2):
        RC.refresh_expected(session)
        session.commit()
    s2 = session.scalar(select(CardSettlement).where(CardSettlement.provider == p2))
    session.refresh(big)
    assert big.settlement_id is not None
    assert (s2.payments, s2.gross, s2.fees) == (1, 1000, 10)
    assert s2.refunds == 2000 and s2.refund_count == 1
    assert session.scalar(select(ExpectedBankCredit).where(
        ExpectedBankCredit.kind == RC.CARD, ExpectedBankCredit.source_id == s2.id)) is None


def test_card_settlement_from_simulator_facts_with_fees_and_clerk_fee(session, acct):
    provider = unique("p", 10).lower()
    day = dt.date.today() - dt.timedelta(days=10)
    _card_payments(session, provider, day, ((10000, 75), (10000, 75)))
    RC.refresh_expected(session)
    session.commit()
    settlement = session.scalar(select(CardSettlement).where(CardSettlement.provider == provider))
    assert (settlement.payments, settlement.gross, settlement.fees) == (2, 20000, 150)
    item = session.scalar(select(ExpectedBankCredit).where(
        ExpectedBankCredit.kind == RC.CARD, ExpectedBankCredit.source_id == settlement.id))
    assert (item.amount, item.fee) == (19850, 150)
    item.bank_account_id = acct.id
    session.commit()
    RC.refresh_expected(session)  # idempotent
    assert session.scalar(select(CardSettlement.payments).where(
        CardSettlement.id == settlement.id)) == 2
    # the bank paid 1.00 less than reported: an unreported fee, entered with a reason
    (line,) = statement(session, acct, [(day, 19750, "CARD SETTLEMENT")])
    with pytest.raises(ValidationError):
        RC.match(session, actor="clerk", line_ids=[line], item_ids=[item.id])
    session.rollback()
    with pytest.raises(ValidationError) as exc:
        RC.match(session, actor="clerk", line_ids=[line], item_ids=[item.id],
                 fee_adjustment="1.00")
    assert "reason" in exc.value.errors
    session.rollback()
    m = RC.match(session, actor="clerk", line_ids=[line], item_ids=[item.id],
                 fee_adjustment="1.00", reason="Chargeback fee on the provider's invoice")
    assert legs(session, m.posting_group_id) == sorted([
        ("BANK", acct.ledger_reference, 19750), ("CARD_FEES", provider, 250),
        ("CARD_CLEARING", provider, -20000)])


def test_concurrent_clerks_match_a_line_and_an_item_once(app, session, acct):
    a = credit(session, acct, 7700)
    b = credit(session, acct, 7700)
    a_id, b_id = a.id, b.id
    (line,) = statement(session, acct, [(DAY, 7700, "RACE")])

    def clerk(item_id, who):
        return lambda s: RC.match(s, actor=who, line_ids=[line], item_ids=[item_id])

    results = race(app, clerk(a_id, "c1"), clerk(b_id, "c2"))
    assert sorted(results) == ["Conflict", "ok"], results
    session.expire_all()
    assert len({session.get(ExpectedBankCredit, i).match_id for i in (a.id, b.id)} - {None}) == 1
    (l2,) = statement(session, acct, [(DAY, 7700, "RACE2")])
    other = a.id if session.get(ExpectedBankCredit, a.id).match_id is None else b.id
    (l3,) = statement(session, acct, [(DAY, 7700, "RACE3")])
    session.commit()
    results = race(app, lambda s: RC.match(s, actor="c1", line_ids=[l2], item_ids=[other]),
                   lambda s: RC.match(s, actor="c2", line_ids=[l3], item_ids=[other]))
    assert sorted(results) == ["Conflict", "ok"], results


def test_agreed_proposals_are_confirmed_in_one_go_and_the_rest_left(session, acct):
    """The proposals whose line carries the credit's reference are confirmed together, each its
    own posted match; a proposal by amount and date alone is left for a clerk."""
    bags = [credit(session, acct, pence) for pence in (12000, 3456)]
    loose = credit(session, acct, 9900)
    lines = statement(session, acct, [(DAY, 12000, f"BAG {bags[0].reference}"),
                                      (DAY, 3456, f"DEPOSIT {bags[1].reference.lower()}"),
                                      (DAY, 9900, "CASH")])
    props = {p.line_ids[0]: p for p in RC.propose(session, acct)}
    assert [props[ln].agreed for ln in lines] == [True, True, False]
    assert props[lines[0]].as_json()["agreed"] is True

    done = RC.confirm_agreed(session, acct, actor="clerk")
    assert done.skipped == 0
    assert sorted(m.lines_total for m in done.matches) == [3456, 12000]
    session.expire_all()
    for line, bag, m in zip(lines, bags, sorted(done.matches, key=lambda m: -m.lines_total)):
        assert session.get(StatementLine, line).match_id == m.id
        assert session.get(ExpectedBankCredit, bag.id).cleared
        assert legs(session, m.posting_group_id) == sorted([
            ("BANK", acct.ledger_reference, bag.amount), ("CASH_IN_TRANSIT", "CIVIC", -bag.amount)])
        assert m.created_by == "clerk"
    assert session.get(StatementLine, lines[2]).match_id is None
    assert not session.get(ExpectedBankCredit, loose.id).cleared
    assert [p.line_ids for p in RC.propose(session, acct)] == [[lines[2]]]
    assert RC.confirm_agreed(session, acct, actor="clerk").matches == []


def test_two_clerks_confirming_the_agreed_proposals_at_once_match_each_once(app, session, acct):
    bags = [credit(session, acct, 1000 + i) for i in range(6)]
    lines = statement(session, acct, [(DAY, b.amount, f"BAG {b.reference}") for b in bags])
    made: dict[str, tuple[list[int], int]] = {}  # clerk -> (their matches' groups, skipped)

    def clerk(who):
        def run(s):
            done = RC.confirm_agreed(s, RC.bank_account_for(s, acct.code), actor=who)
            made[who] = ([m.posting_group_id for m in done.matches], done.skipped)
        return run

    assert race(app, clerk("c1"), clerk("c2")) == ["ok", "ok"]
    groups = [g for mine, _ in made.values() for g in mine]
    assert len(groups) == len(set(groups)) == 6  # each proposal confirmed by one clerk
    session.expire_all()
    matched = [session.get(StatementLine, ln).match_id for ln in lines]
    assert None not in matched and len(set(matched)) == 6
    assert session.scalar(select(func.sum(LedgerLine.amount)).where(
        LedgerLine.group_id.in_(groups), LedgerLine.account == "BANK")) == sum(
        b.amount for b in bags)


def test_api_and_page_confirm_the_agreed_proposals(api, as_user, session, acct):
    first, second = credit(session, acct, 2500), credit(session, acct, 7500)
    (l1,) = statement(session, acct, [(DAY, 2500, first.reference)])
    base = "/api/v1/reconciliation"
    props = api("clerk").get(f"{base}/accounts/{acct.code}/proposals").json["result"]
    assert [p["agreed"] for p in props] == [True]
    url = f"{base}/accounts/{acct.code}/confirm-agreed"
    assert api("auditor").post(url).status_code == 403
    assert api("clerk").post(f"{base}/accounts/NO-SUCH/confirm-agreed").status_code == 422
    page_url = f"/reconciliation/?account={acct.code}&as_of={DAY.isoformat()}"
    page = as_user("clerk").get(page_url)
    assert b'id="recon-confirm-agreed"' in page.data
    assert "1 proposal(s), £25.00" in page.get_data(as_text=True)
    assert b'id="recon-confirm-agreed"' not in as_user("auditor").get(page_url).data
    resp = as_user("clerk").post("/reconciliation/confirm-agreed", data={
        "account": acct.code, "as_of": DAY.isoformat()}, follow_redirects=True)
    assert resp.status_code == 200
    assert "Confirmed 1 match(es) whose reference agrees: £25.00" in resp.get_data(as_text=True)
    assert b'id="recon-confirm-agreed"' not in resp.data  # nothing left to confirm
    session.expire_all()
    assert session.get(StatementLine, l1).match_id is not None

    (l2,) = statement(session, acct, [(DAY, 7500, f"PAID IN {second.reference}")])
    done = api("clerk").post(url)
    assert done.status_code == 200, done.json
    assert done.json["count"] == 1 and done.json["skipped"] == 0
    assert done.json["result"][0]["line_ids"] == [l2]
    assert done.json["result"][0]["lines_total"] == "75.00"
    assert api("clerk").post(url).json["count"] == 0


# --------------------------------------------------------------------------- reconciliation
def test_reconciliation_difference_explained_and_four_eyes_sign_off(session, acct):
    bag = credit(session, acct, 12000)
    banked = credit(session, acct, 3000, clearing=L.BANK, clearing_ref=None)
    # the banked-to-Bank bag is in the ledger already
    L.post_group(session, "cash_up", [L.Leg("BANK", 3000, None, acct.ledger_reference),
                                      L.Leg("CASH_IN_HAND", -3000, None, "CIVIC")],
                 actor="t", accounting_date=DAY)
    session.commit()
    lines = statement(session, acct, [(DAY, 12000, bag.reference), (DAY, -450, "CHARGES"),
                                      (DAY, 999, "UNKNOWN")], opening=0)
    rec = RC.reconciliation(session, acct, DAY)
    assert rec["statement_balance"] == 12549 and rec["ledger_balance"] == 3000
    assert rec["explained"] == 12000 - 450 + 999 - 3000
    assert rec["unexplained"] == 0 and rec["reconciled"]
    RC.match(session, actor="clerk", line_ids=[lines[0]], item_ids=[bag.id])
    rec = RC.reconciliation(session, acct, DAY)
    assert rec["ledger_balance"] == 15000 and rec["unexplained"] == 0
    assert [i["id"] for i in rec["ledger_items"]] == [banked.id]
    so = RC.prepare(session, acct, DAY, actor="clerk")
    with pytest.raises(Conflict):
        RC.prepare(session, acct, DAY, actor="clerk")
    session.rollback()
    with pytest.raises(Forbidden):
        RC.decide(session, so.id, actor="clerk", roles={R.MANAGER}, approve=True)
    with pytest.raises(Forbidden):
        RC.decide(session, so.id, actor="someone", roles={R.CLERK}, approve=True)
    session.rollback()
    done = RC.decide(session, so.id, actor="manager", roles={R.MANAGER}, approve=True)
    assert done.status == "signed_off" and done.decided_by == "manager"
    ages = {a["account"]: a for a in RC.ageing(session, DAY + dt.timedelta(days=10))}
    assert ages["BANK"]["count"] >= 1


def test_prepare_refuses_an_unexplained_difference(session, acct):
    statement(session, acct, [(DAY, 500, "X")], opening=0, closing=10000)
    rec = RC.reconciliation(session, acct, DAY)
    assert rec["unexplained"] == 10000 - 500
    with pytest.raises(ValidationError):
        RC.prepare(session, acct, DAY, actor="clerk")


# --------------------------------------------------------------------------- API and page
def test_api_match_prepare_and_sign_off_with_role_rules(api, session, acct):
    bag = credit(session, acct, 4321)
    (line,) = statement(session, acct, [(DAY, 4321, f"BAG {bag.reference}")])
    base = "/api/v1/reconciliation"
    assert api("cashier").get(f"{base}/accounts/{acct.code}").status_code == 403
    got = api("auditor").get(f"{base}/accounts/{acct.code}?as_of={DAY.isoformat()}")
    assert got.status_code == 200 and got.json["unexplained"] == 0
    assert [i["id"] for i in got.json["expected_items"]] == [bag.id]
    props = api("clerk").get(f"{base}/accounts/{acct.code}/proposals").json["result"]
    assert props[0]["line_ids"] == [line] and "reference" in props[0]["reason"]
    assert api("auditor").post(f"{base}/matches", json={"line_ids": [line],
                                                        "item_ids": [bag.id]}).status_code == 403
    bad = api("clerk").post(f"{base}/matches", json={"line_ids": [line], "item_ids": []})
    assert bad.status_code == 422
    made = api("clerk").post(f"{base}/matches", json={"line_ids": [line], "item_ids": [bag.id]})
    assert made.status_code == 201, made.json
    again = api("clerk").post(f"{base}/matches", json={"line_ids": [line], "item_ids": [bag.id]})
    assert again.status_code == 409
    assert api("clerk").get(f"{base}/accounts/{acct.code}?as_of=0001-01-01").status_code == 422
    prep = api("clerk").post(f"{base}/accounts/{acct.code}/sign-offs",
                             json={"as_of": DAY.isoformat()})
    assert prep.status_code == 201, prep.json
    sid = prep.json["id"]
    assert api("clerk").post(f"{base}/sign-offs/{sid}",
                             json={"decision": "sign_off"}).status_code == 403
    done = api("manager").post(f"{base}/sign-offs/{sid}", json={"decision": "sign_off"})
    assert done.status_code == 200 and done.json["status"] == "signed_off"


def test_reconciliation_page_for_clerk_not_cashier(as_user, session, acct):
    client = as_user("clerk")
    page = client.get(f"/reconciliation/?account={acct.code}&as_of={DAY.isoformat()}")
    assert page.status_code == 200 and b"recon-unexplained" in page.data
    client = as_user("cashier")
    assert client.get("/reconciliation/").status_code in (302, 403)


def test_period_close_lists_unmatched_statement_lines(session, acct):
    from app.services import periods

    (line,) = statement(session, acct, [(DAY, 1234, "UNMATCHED")])
    check = periods._CLOSE_CHECKS["unreconciled"](session, DAY.replace(day=1), DAY)
    assert check["count"] >= 1 and check["note"] is None
    assert line in [i["id"] for i in check["items"]] or check["count"] > 50


def test_agent_file_total_becomes_an_expected_credit_once(session):
    batch = ImportBatch(format="allpay", filename="allpay.txt", sha256=unique("sha", 20),
                        status="succeeded", rows_total=3, posted_amount=4_000,
                        suspense_amount=975, total_amount=4_975, last_date=DAY, created_by="t")
    session.add(batch)
    session.commit()
    RC.refresh_expected(session)
    session.commit()
    RC.refresh_expected(session)
    session.commit()
    items = session.scalars(select(ExpectedBankCredit).where(
        ExpectedBankCredit.kind == RC.AGENT, ExpectedBankCredit.source_id == batch.id)).all()
    assert [(i.amount, i.clearing_account, i.clearing_reference, i.expected_date)
            for i in items] == [(4_975, "AGENT_CLEARING", "ALLPAY", DAY + dt.timedelta(days=1))]


def test_debit_line_posted_as_bank_charge_and_reversed(session, acct):
    (charge, credit_line) = statement(session, acct, [(DAY, -450, "CHARGES"), (DAY, 100, "X")])
    with pytest.raises(ValidationError):
        RC.post_debit_line(session, charge, actor="clerk", reason=" ")
    with pytest.raises(ValidationError):
        RC.post_debit_line(session, credit_line, actor="clerk", reason="not a debit")
    session.rollback()
    m = RC.post_debit_line(session, charge, actor="clerk", reason="Monthly charges")
    assert legs(session, m.posting_group_id) == sorted([
        ("BANK", acct.ledger_reference, -450), ("BANK_CHARGES", None, 450)])
    rec = RC.reconciliation(session, acct, DAY)
    assert rec["ledger_balance"] == -450 and rec["unexplained"] == 0
    with pytest.raises(Conflict):
        RC.post_debit_line(session, charge, actor="clerk", reason="again")
    session.rollback()
    RC.unmatch(session, m.id, actor="clerk", reason="charge refunded")
    # the reversal is posted today: as at today the charge is an unmatched line again
    rec = RC.reconciliation(session, acct, dt.date.today())
    assert rec["ledger_balance"] == 0 and charge in [ln["id"] for ln in rec["unmatched_lines"]]


def test_rule_tester_shows_a_settlement_line(session):
    from app.services.imports.rows import dry_run

    rule = ProcessingRule(name=unique("settle", 20), priority=1, import_type="mt940",
                          conditions='narrative contains "SIMULATOR SETTLEMENT"',
                          set_line_kind="settlement", stop_processing=True)
    session.add(rule)
    session.commit()
    try:
        out = dry_run(session, reference="X", amount="99.25", import_type="mt940",
                      narrative="SIMULATOR SETTLEMENT 2026-11-16")
        assert out["destination"] == "settlement" and out["fired"] == [rule.name]
        assert dry_run(session, reference="X", amount="99.25", import_type="ims_csv",
                       narrative="SIMULATOR SETTLEMENT")["destination"] != "settlement"
    finally:
        session.delete(session.get(ProcessingRule, rule.id))
        session.commit()


def test_bank_accounts_api_administrators_add_and_edit(api, session):
    from app.models.audit import AuditEvent

    base = "/api/v1/bank-accounts/"
    code = unique("BA", 10)
    body = {"code": code, "name": "Car parks", "sort_code": "20-00-00",
            "account_number": "87654321", "ledger_account_code": "7001-CP"}
    assert api("clerk").post(base, json=body).status_code == 403
    assert api("cashier").get(base).status_code == 403
    made = api("admin").post(base, json=body)
    assert made.status_code == 201, made.json
    assert (made.json["result"]["code"], made.json["result"]["is_default"]) == (code, False)
    again = api("admin").post(base, json=body)
    assert again.status_code == 422 and "code" in again.json["errors"]
    for bad in ({**body, "code": unique("BB", 10), "sort_code": "2000"},
                {**body, "code": unique("BC", 10), "account_number": "12"},
                {**body, "code": "bad code!"}, ["not", "an object"]):
        r = api("admin").post(base, json=bad)
        assert r.status_code == 422, (bad, r.status_code)
    listed = api("auditor").get(base)
    assert listed.status_code == 200 and listed.json["result"][0]["is_default"]
    assert code in {a["code"] for a in listed.json["result"]}
    changed = api("admin").put(f"{base}{made.json['id']}",
                               json={**body, "name": "Car parks (new)", "disabled": True})
    assert changed.status_code == 200 and changed.json["result"]["disabled"] is True
    default_id = listed.json["result"][0]["id"]
    refused = api("admin").put(f"{base}{default_id}", json={
        **{k: listed.json["result"][0][k] for k in ("code", "name", "sort_code",
                                                   "account_number", "ledger_account_code")},
        "disabled": True})
    assert refused.status_code == 422
    assert api("admin").put(f"{base}999999", json=body).status_code == 404
    session.rollback()
    assert session.scalars(select(AuditEvent).where(AuditEvent.entity == "BankAccount",
                                                    AuditEvent.entity_id == str(made.json["id"]))
                           ).all()
