"""Receipts service: balanced posting under one number, VAT rules, stops, printable data; search."""

import csv
import datetime as dt
import io
from dataclasses import replace

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.domain.errors import ValidationError
from app.models.ledger import LedgerLine
from app.models.reference import AccountHolder, Fund
from app.services import search as S
from app.services.receipts import receipt_view, take_receipt
from tests.conftest import unique


def _sun_account(session):
    return session.scalar(select(AccountHolder).where(AccountHolder.fund_code == "SUN",
                                                      AccountHolder.stop_message.is_(None)).limit(1))


def test_receipt_lines_one_group_with_vat_breakdown(session):
    sun = _sun_account(session)
    res = take_receipt(session, payment_method_code="CARD", actor="cashier", office_code="CIVIC",
                       lines=[{"fund_code": "SUN", "account_reference": sun.account_reference,
                               "amount": "10.50", "vat_code": "R"},
                              {"fund_code": "TWS", "account_reference": "W1", "amount": "24.00"},
                              {"fund_code": "TWS", "account_reference": "W1", "amount": "24.00"}])
    lines = session.scalars(select(LedgerLine).where(LedgerLine.group_id == res.group.id)).all()
    # a card receipt debits Card clearing for the provider, not Bank (issue 17)
    assert [(l.account_reference, l.amount) for l in lines if l.account == "CARD_CLEARING"] \
        == [("simulator", 5850)]
    assert not [l for l in lines if l.account == "BANK"]
    assert sorted(l.amount for l in lines if l.account == "FUND") == [-2400, -2400, -1050]
    assert {l.transaction_id for l in lines if l.account == "FUND"} == {t.id for t in res.transactions}
    assert {t.receipt_number for t in res.transactions} == {res.receipt_number}
    view = receipt_view(session, res.receipt_number)
    by_code = {v["code"]: v for v in view["vat"]}
    assert by_code["R"]["vat"] == 50 and by_code["R"]["gross"] == 1050  # 10.50 at 5%
    assert by_code["S"]["vat"] == 800 and by_code["S"]["net"] == 4000
    assert view["total"] == 5850 and view["total_vat"] == 850


def test_stop_refused_unless_manager(session):
    code = unique("S")
    session.add(Fund(code=code, name="Stops"))
    session.flush()
    session.add(AccountHolder(fund_code=code, account_reference="ST1", name="Sam",
                              stop_message="Refer to Revenues: insolvency"))
    session.commit()
    line = [{"fund_code": code, "account_reference": "st1", "amount": "2.00"}]
    with pytest.raises(ValidationError) as exc:
        take_receipt(session, payment_method_code="CASH", actor="cashier", lines=line)
    assert "insolvency" in exc.value.errors["lines[0].account_reference"][0]
    res = take_receipt(session, payment_method_code="CASH", actor="manager", lines=line,
                       may_override_stop=True)
    assert res.transactions[0].account_reference == "ST1"


def test_method_maximum_applies_to_receipt_total(session):
    with pytest.raises(ValidationError) as exc:
        take_receipt(session, payment_method_code="CASH", actor="cashier", lines=[
            {"fund_code": "NNDR", "account_reference": "x", "amount": "9000.00"},
            {"fund_code": "TWS", "account_reference": "y", "amount": "1500.00"}])
    assert exc.value.errors  # NNDR reference invalid and/or total over CASH maximum


def test_search_filters_and_export(session):
    tag = unique("N", 10)
    res = take_receipt(session, payment_method_code="CHQ", actor="cashier", office_code="LIB",
                       transaction_date="2025-03-04",
                       lines=[{"fund_code": "TWS", "account_reference": f"S{tag}", "amount": "3.21",
                               "narrative": f"Skip hire {tag} =cmd"},
                              {"fund_code": "TWS", "account_reference": f"S{tag}", "amount": "1.00"}])
    f = S.parse_filters({"narrative": tag.lower()})
    page = S.search(session, f)
    assert page.total == 1 and page.rows[0].amount == 321
    rows = list(csv.reader(io.StringIO("".join(S.csv_stream(session, f)))))  # narrative joined
    assert [r[S.EXPORT_COLUMNS.index("narrative")] for r in rows[1:]] == [
        f"Skip hire {tag} =cmd"]
    f = S.parse_filters({"account_reference": tag[2:6], "reference_match": "contains",
                         "fund": "TWS", "method": ["CHQ"], "office": "LIB", "user": "cashier",
                         "date_from": "2025-03-04", "date_to": "04/03/2025", "sort": "amount",
                         "direction": "asc"})
    page = S.search(session, f)
    assert [t.amount for t in page.rows] == [100, 321]
    assert S.search(session, S.parse_filters({"receipt_number": res.receipt_number.lower()})).total == 2
    assert S.search(session, S.parse_filters({"amount": "3.21", "account_reference": f"S{tag}"})).total == 1
    rows = list(csv.reader(io.StringIO("".join(S.csv_stream(session, f)))))
    assert rows[0] == S.EXPORT_COLUMNS and len(rows) == 3
    assert rows[2][S.EXPORT_COLUMNS.index("amount")] == "3.21"
    assert rows[2][S.EXPORT_COLUMNS.index("narrative")].startswith("Skip hire")
    wb = load_workbook(io.BytesIO(S.xlsx_bytes(session, f)), read_only=True)
    data = list(wb.active.iter_rows(values_only=True))
    assert list(data[0]) == S.EXPORT_COLUMNS and len(data) == 3
    # sorted by receipt number (the posting groups' numbers): a later receipt sorts after
    later = take_receipt(session, payment_method_code="CHQ", actor="cashier", office_code="LIB",
                         transaction_date="2025-03-04",
                         lines=[{"fund_code": "TWS", "account_reference": f"S{tag}",
                                 "amount": "0.50"}])
    for direction, expect in (("asc", [res.receipt_number] * 2 + [later.receipt_number]),
                              ("desc", [later.receipt_number] + [res.receipt_number] * 2)):
        page = S.search(session, S.parse_filters({"account_reference": f"S{tag}",
                                                  "sort": "receipt_number",
                                                  "direction": direction}))
        assert [t.receipt_number for t in page.rows] == expect
        rows = list(csv.reader(io.StringIO("".join(S.csv_stream(session, S.parse_filters(
            {"account_reference": f"S{tag}", "sort": "receipt_number", "direction": direction}))))))
        assert [r[S.EXPORT_COLUMNS.index("receipt_number")] for r in rows[1:]] == expect


def test_narrative_search_takes_any_text_literally(session):
    """The pattern is written into the statement as an escaped literal: quotes, backslashes,
    % and _ are matched as themselves and cannot change the query."""
    tag = unique("Q", 9)
    text_ = f"50% off O'Brien \\ a_b {tag}"
    take_receipt(session, payment_method_code="CHQ", actor="cashier", office_code="LIB",
                 lines=[{"fund_code": "TWS", "account_reference": f"Q{tag}", "amount": "1.11",
                         "narrative": text_},
                        {"fund_code": "TWS", "account_reference": f"Q{tag}", "amount": "2.22",
                         "narrative": f"500 off OXBrien x axb {tag}"}])

    def hits(term):
        return [t.amount for t in S.search(session, S.parse_filters({"narrative": term})).rows]

    assert hits(text_.lower()) == [111]
    assert hits(f"o'brien \\ a_b {tag}") == [111]
    assert sorted(hits(tag)) == [111, 222]
    for term in (f"50% off o'brien {tag}", f"a%b {tag}", f"' OR ''=' {tag}", f"{tag}\\"):
        assert hits(term) == [], term


def test_narrative_search_can_use_the_narratives_trigram_index(app, session):
    """PostgreSQL: "narrative contains" is a semi-join on transaction_narrative that its GIN
    index on (fund_code, narrative) serves: by pattern for a user with all funds, by fund and
    pattern in the same index for a user of some fund groups (the planner would pick a scan of
    the small test table, so scans are priced out here)."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the trigram index is PostgreSQL's")
    from flask_login import login_user
    from sqlalchemy import text

    def plan(stmt):
        sql = str(stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        # scans priced out, and plain index scans too (a small table's statistics can make a
        # walk of its primary key with a filter look cheapest): what remains is an index that
        # can take the condition itself
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_indexscan = off"))
        lines = "\n".join(session.execute(text("EXPLAIN " + sql)).scalars())
        session.rollback()
        return lines

    everyone = plan(S.filtered(S.parse_filters({"narrative": "jones inv"})))
    assert "ix_transaction_narrative_fund_trgm" in everyone, everyone
    with app.test_request_context():
        login_user(app.appbuilder.sm.find_user("parking"))  # demo user: PCN and CPK only
        # the matching narratives (what a search by narrative alone counts): fund and pattern
        scoped = plan(S._narratives_matching("jones inv"))
    # (whether the fund is an index condition or a filter is the planner's choice by the
    # table's size: bench/search.py measures the scoped search at a million rows)
    assert "ix_transaction_narrative_fund_trgm" in scoped and "fund_code" in scoped, scoped


@pytest.mark.parametrize("args,field", [({"date_from": "notadate"}, "date_from"),
                                        ({"amount": "1.234"}, "amount"),
                                        ({"sort": "password"}, "sort"),
                                        ({"import_id": "x"}, "import_id")])
def test_search_bad_filters(args, field):
    with pytest.raises(ValidationError) as exc:
        S.parse_filters(args)
    assert field in exc.value.errors


def test_dashboard_counts_receipts_not_journals(session):
    today = dt.date.today()
    before = S.dashboard(session, today)
    take_receipt(session, payment_method_code="CASH", actor="cashier",
                 lines=[{"fund_code": "TWS", "account_reference": "DB1", "amount": "2.50"}])
    after = S.dashboard(session, today)
    assert after["today_total"] - before["today_total"] == 250
    assert after["today_receipts"] == before["today_receipts"] + 1
    tws = {r["code"]: r for r in after["today_by_fund"]}["TWS"]
    assert tws["amount"] >= 250


def test_a_reversed_receipt_leaves_the_dashboard(session):
    """Money in counts what was not reversed: reversing a receipt takes it out of the totals and
    the receipt count again (the anti-join against reversals)."""
    from app.models.ledger import PostingGroup
    from app.services.ledger import reverse_group

    today = dt.date.today()
    before = S.dashboard(session, today)
    out = take_receipt(session, payment_method_code="CASH", actor="cashier",
                       lines=[{"fund_code": "TWS", "account_reference": "DB9", "amount": "6.00"}])
    taken = S.dashboard(session, today)
    assert taken["today_total"] - before["today_total"] == 600
    group = session.get(PostingGroup, out.group.id)
    reverse_group(session, group, actor="manager", reason="keyed twice")
    session.commit()
    after = S.dashboard(session, today)
    assert after["today_total"] == before["today_total"]
    assert after["month_total"] == before["month_total"]
    assert after["today_receipts"] == before["today_receipts"]


def test_dashboard_folds_one_grouped_query_into_its_tables(session):
    """Figures by fund and by method agree with each other and with the totals, for today and
    the 30-day window; a receipt dated 5 days ago counts in the window only, one dated 40 days
    ago in neither."""
    today = dt.date.today()
    before = S.dashboard(session, today)
    take_receipt(session, payment_method_code="CHQ", actor="cashier",
                 lines=[{"fund_code": "TWS", "account_reference": "DB1", "amount": "3.00"},
                        {"fund_code": "TWS", "account_reference": "DB2", "amount": "4.00"}])
    take_receipt(session, payment_method_code="CASH", actor="cashier",
                 transaction_date=(today - dt.timedelta(days=40)).isoformat(),
                 lines=[{"fund_code": "TWS", "account_reference": "DB1", "amount": "9.00"}])
    take_receipt(session, payment_method_code="CHQ", actor="cashier",  # this month, not today
                 transaction_date=(today - dt.timedelta(days=5)).isoformat(),
                 lines=[{"fund_code": "TWS", "account_reference": "DB1", "amount": "2.00"}])
    after = S.dashboard(session, today)
    assert after["today_total"] - before["today_total"] == 700
    assert after["month_total"] - before["month_total"] == 900
    assert after["today_receipts"] == before["today_receipts"] + 1  # one receipt, two lines
    for period in ("today", "month"):
        total = after[f"{period}_total"]
        assert sum(r["amount"] for r in after[f"{period}_by_fund"]) == total
        assert sum(r["amount"] for r in after[f"{period}_by_method"]) == total
        amounts = [r["amount"] for r in after[f"{period}_by_fund"]]
        assert amounts == sorted(amounts, reverse=True)
    chq = lambda d: {r["code"]: r for r in d["today_by_method"]}.get("CHQ", {"count": 0})  # noqa: E731
    assert chq(after)["count"] == chq(before)["count"] + 2
    month_chq = {r["code"]: r for r in after["month_by_method"]}["CHQ"]["count"]
    assert month_chq == {r["code"]: r for r in before["month_by_method"]}.get(
        "CHQ", {"count": 0})["count"] + 3


def test_dashboard_receipt_counts_agree_with_the_receipt_groups(session):
    """The dashboard counts receipts by their number's prefix (no join to posting_group): the
    figures equal a count of the window's receipt-kind groups read through the join, and the
    prefix belongs to receipts alone."""
    from sqlalchemy import func, select

    from app.models.ledger import PostingGroup, Transaction
    from app.services.ledger import PREFIXES

    today = dt.date.today()
    take_receipt(session, payment_method_code="CASH", actor="cashier",
                 lines=[{"fund_code": "TWS", "account_reference": "DB3", "amount": "1.25"},
                        {"fund_code": "TWS", "account_reference": "DB4", "amount": "2.25"}])
    dash = S.dashboard(session, today)

    def groups(date_from):
        return session.scalar(
            select(func.count(func.distinct(Transaction.posting_group_id)))
            .join(PostingGroup, PostingGroup.id == Transaction.posting_group_id)
            .where(PostingGroup.kind == "receipt", *S._income_base(
                Transaction.transaction_date >= date_from, Transaction.transaction_date <= today)))

    assert dash["today_receipts"] == groups(today) > 0
    assert dash["month_receipts"] == groups(today - dt.timedelta(days=29))
    assert list(PREFIXES.values()).count(PREFIXES["receipt"]) == 1
    assert session.scalar(select(func.count()).select_from(PostingGroup).where(
        PostingGroup.number.like(PREFIXES["receipt"] + "%"), PostingGroup.kind != "receipt")) == 0


def test_dashboard_reads_the_date_index_alone_on_postgres(session):
    """On PostgreSQL the date index includes every column the dashboard reads (index-only scans
    of the 30-day window, whatever the table's size)."""
    from sqlalchemy import text

    from app.models.ledger import DASHBOARD_COLUMNS

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("INCLUDE columns are PostgreSQL's; SQLite keeps the plain index")
    definition = session.scalar(text("SELECT indexdef FROM pg_indexes "
                                     "WHERE indexname = 'ix_income_transaction_date_id'"))
    assert "(transaction_date, id) INCLUDE" in definition
    assert all(col in definition for col in DASHBOARD_COLUMNS)


def test_cached_dashboard_is_reused_within_its_age(session):
    today = dt.date.today()
    S._DASHBOARD_CACHE.clear()  # figures an earlier test cached are not this test's
    first = S.cached_dashboard(session, 3600, today)
    take_receipt(session, payment_method_code="CASH", actor="cashier",
                 lines=[{"fund_code": "TWS", "account_reference": "DB1", "amount": "1.00"}])
    assert S.cached_dashboard(session, 3600, today) is first  # within its age: the same figures
    fresh = S.cached_dashboard(session, 0, today)
    assert fresh["today_total"] == first["today_total"] + 100


def test_search_counts_up_to_its_cap_and_says_more(session, monkeypatch):
    """Beyond COUNT_CAP matches the page does not count them all: it says "more than" and
    still pages on."""
    everything = S.search(session, S.parse_filters({}), 1, 2)
    assert everything.total >= 3 and not everything.total_capped and everything.has_next
    monkeypatch.setattr(S, "NARRATIVE_COUNT_CAP", 2)  # a search by narrative's cap only
    assert S.search(session, S.parse_filters({}), 1, 2).total == everything.total
    monkeypatch.setattr(S, "COUNT_CAP", 2)
    capped = S.search(session, S.parse_filters({}), 1, 2)
    assert capped.total_capped and capped.total == 2 and capped.has_next
    assert [t.id for t in capped.rows] == [t.id for t in everything.rows]
    last = S.search(session, S.parse_filters({}), everything.pages, 2)
    assert not last.has_next


def test_narrative_search_pages_newest_first_from_the_narratives(session, monkeypatch):
    """A search by narrative alone chooses its page by the date kept beside each narrative
    (search._narrative_page): newest transaction date first whatever the ids' order, counted
    in the same statement, pages past the last empty but counted, and beyond COUNT_CAP the
    page is still the newest of all the matches, not of the first ones found. A narrative
    search counts to NARRATIVE_COUNT_CAP (1,000), not COUNT_CAP."""
    from app.models.ledger import Transaction, TransactionNarrative as N
    from app.services import ledger as L

    word = unique("Nsort", 12)
    today = dt.date.today()
    # created oldest-last for the first five (ids against dates), the newest two last
    offsets = [3, 9, 9, 40, 60, 1, 0]
    made = []
    for i, days in enumerate(offsets):
        group = L.post_group(session, "receipt", [L.Leg(L.BANK, 100 + i),
                                                  L.Leg(L.FUND, -(100 + i), "TWS", "NS1")],
                             actor="cashier")
        made.append(L.record_income(session, group=group, fund_code="TWS",
                                    account_reference="NS1", amount=100 + i,
                                    payment_method_code="CASH",
                                    transaction_date=today - dt.timedelta(days=days),
                                    narrative=f"Paid {word} {i}", created_by="cashier"))
    session.commit()
    # each narrative keeps its transaction's date
    assert {(n.transaction_id, n.transaction_date) for n in session.scalars(
        select(N).where(N.narrative.like(f"%{word}%")))} == {(t.id, t.transaction_date)
                                                             for t in made}
    newest = [t.id for t in sorted(made, key=lambda t: (t.transaction_date, t.id), reverse=True)]
    f = S.parse_filters({"narrative": word.lower()})
    pages = [S.search(session, f, n, 3) for n in (1, 2, 3)]
    assert [[t.id for t in p.rows] for p in pages] == [newest[:3], newest[3:6], newest[6:]]
    assert [(p.total, p.has_next, p.total_capped) for p in pages] == [
        (7, True, False), (7, True, False), (7, False, False)]
    past = S.search(session, f, 5, 3)
    assert past.rows == [] and past.total == 7 and not past.has_next
    oldest = S.search(session, replace(f, direction="asc"), 1, 4)
    assert [t.id for t in oldest.rows] == newest[::-1][:4]
    by_id = S.search(session, replace(f, sort="id"), 1, 7)
    assert [t.id for t in by_id.rows] == sorted(newest, reverse=True)
    # the same rows as the general search (another sort takes that path)
    by_amount = S.search(session, replace(f, sort="amount", direction="asc"), 1, 7)
    assert [t.amount for t in by_amount.rows] == sorted(t.amount for t in made)
    assert S.search(session, S.parse_filters({"narrative": unique("Nnone", 12)}), 1, 3).total == 0
    monkeypatch.setattr(S, "NARRATIVE_COUNT_CAP", 3)
    capped = S.search(session, f, 1, 2)
    assert capped.total_capped and capped.total == 3 and capped.has_next
    assert [t.id for t in capped.rows] == newest[:2]
    assert isinstance(capped.rows[0], Transaction)
    assert S.count_cap(f) == 3 and S.count_cap(S.parse_filters({})) == S.COUNT_CAP == 10_000
