"""Reports against hand-computed figures: receipts, a reversal, a refund, a write-off, a journal
and last year's income are posted through the services, then each report is read in pence."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.domain.errors import NotFound, ValidationError
from app.models.ledger import PostingGroup
from app.models.reference import Fund, Office, VatCode
from app.models.workflow import WorkflowTask
from app.services import journals as J
from app.services import ledger as L
from app.services import receipts as RC
from app.services import refunds as RF
from app.services import reports as REP
from app.services import workflow as wf
from app.services import writeoffs as WO
from tests.conftest import unique


def _decide_all(session, instance_id, approvers=("manager", "head", "manager2")):
    """Approve every task of the instance; returns who decided each, in order."""
    decided = []
    for _ in range(4):
        session.expire_all()
        tasks = list(session.scalars(select(WorkflowTask).where(
            WorkflowTask.instance_id == instance_id, WorkflowTask.status == "ready")))
        if not tasks:
            break
        who = next(a for a in approvers if a not in decided)
        wf.complete_task(session, tasks[0].id, who, "approve", "ok")
        decided.append(who)
    return decided


@pytest.fixture
def books(session):
    """A unique office, user, VAT code and two funds, with known postings dated today."""
    today = dt.date.today()
    office, user, vat = unique("O", 10), unique("u", 12).lower(), unique("V", 10)
    fund, other = unique("F", 10), unique("G", 10)
    gl, gl2 = unique("GL", 12), unique("GM", 12)
    session.add(Office(code=office, name="Report office"))
    session.add(VatCode(code=vat, name="Report VAT", rate=Decimal("0.20")))
    session.flush()
    session.add(Fund(code=fund, name="Report fund", gl_code=gl, vat_code=vat))
    session.add(Fund(code=other, name="Other fund", gl_code=gl2))
    session.commit()

    def receipt(method, *amounts, external=None):
        return RC.take_receipt(session, lines=[{"fund_code": fund, "account_reference": "A1",
                                                "amount": a} for a in amounts],
                               payment_method_code=method, actor=user, office_code=office,
                               transaction_date=today, external_reference=external)

    r1 = receipt("CASH", "120.00", "60.00")          # VAT 20.00 + 10.00
    r2 = receipt("CARD", "50.00", external="pay-1")  # VAT 8.33
    r3 = receipt("CASH", "30.00")                    # VAT 5.00, reversed below
    L.reverse_group(session, r3.group, actor="manager", reason="Keyed twice")
    session.commit()
    refund = RF.request_refund(session, transaction_id=r2.transactions[0].id, amount="24.00",
                               reason="Overpaid", method="bacs", actor="clerk",
                               payee={"name": "A Payer", "sort_code": "12-34-56",
                                      "account_number": "12345678"}).refund
    refund_deciders = _decide_all(session, refund.workflow_instance_id)
    wo = WO.request_write_off(session, transaction_id=r1.transactions[1].id, amount="5.00",
                              reason="Small balance", actor="clerk")
    wo_deciders = _decide_all(session, wo.workflow_instance_id)
    J.journal(session, transaction_id=r1.transactions[0].id, reason="Wrong fund", actor="clerk",
              targets=[{"fund_code": other, "account_reference": "B1", "amount": "10.00"}])
    # last year: 100.00 received on the same day a year ago (posted as an import would)
    ly = REP.last_year(today)
    group = L.post_group(session, "receipt", [L.Leg(L.BANK, 100_00),
                                              L.Leg(L.FUND, -100_00, fund, "A1")], actor=user)
    L.record_income(session, group=group, fund_code=fund, account_reference="A1", amount=100_00,
                    payment_method_code="CASH", transaction_date=ly, created_by=user,
                    office_code=office)
    session.commit()
    session.expire_all()
    return {"today": today, "office": office, "user": user, "vat": vat, "fund": fund,
            "other": other, "gl": gl, "gl2": gl2, "refund": refund, "refund_deciders": refund_deciders,
            "write_off": wo, "wo_deciders": wo_deciders}


def test_cash_book_by_office_user_and_method(session, books):
    rep = REP.cash_book(session, books["today"], office_code=books["office"])
    rows = {r["payment_method_code"]: r for r in rep.tables[0].rows}
    assert set(rows) == {"CASH", "CARD"}
    cash, card = rows["CASH"], rows["CARD"]
    assert (cash["user"], cash["office_code"], cash["date"]) == (books["user"], books["office"],
                                                                 books["today"])
    assert (cash["receipts"], cash["received"], cash["reversals"], cash["reversed"],
            cash["net"]) == (3, 210_00, 1, 30_00, 180_00)
    assert (card["receipts"], card["received"], card["reversed"], card["net"]) == (1, 50_00, 0,
                                                                                   50_00)
    assert rep.tables[0].totals["net"] == 230_00
    by_method = {r["payment_method_code"]: r["net"] for r in rep.tables[1].rows}
    assert by_method == {"CASH": 180_00, "CARD": 50_00}
    assert [(r["office_code"], r["net"]) for r in rep.tables[2].rows] == [(books["office"], 230_00)]
    assert rep.chart["labels"] == ["CARD", "CASH"]
    assert rep.chart["datasets"][0]["values"] == [50_00, 180_00]
    # another day has none of it
    assert REP.cash_book(session, books["today"] - dt.timedelta(days=1),
                         office_code=books["office"]).tables[0].rows == []


def test_vat_report_by_code(session, books):
    rep = REP.vat_report(session, books["today"], books["today"])
    row = next(r for r in rep.tables[0].rows if r["vat_code"] == books["vat"])
    assert row["rate"] == Decimal("0.20") and row["lines"] == 4
    assert (row["received_gross"], row["received_vat"]) == (260_00, 43_33)
    assert (row["reversed_gross"], row["reversed_vat"]) == (30_00, 5_00)
    # the refund's VAT: 8.33 × 24.00 / 50.00 = 3.9984 -> 4.00
    assert (row["refunded_gross"], row["refunded_vat"]) == (24_00, 4_00)
    assert (row["gross"], row["vat"], row["net"]) == (206_00, 34_33, 171_67)
    # the journal's target carries no VAT and is not money received
    earlier = REP.vat_report(session, books["today"] - dt.timedelta(days=3),
                             books["today"] - dt.timedelta(days=1))
    assert all(r["vat_code"] != books["vat"] for r in earlier.tables[0].rows)


def test_income_by_fund_against_last_year(session, books):
    rep = REP.income_report(session, books["today"], books["today"])
    rows = {r["fund_code"]: r for r in rep.tables[0].rows}
    mine = rows[books["fund"]]
    # 260.00 received − 30.00 reversed − 24.00 refunded − 5.00 written off − 10.00 journalled out
    assert (mine["income"], mine["last_year"], mine["change"]) == (191_00, 100_00, 91_00)
    assert mine["change_pct"] == Decimal("91.0")
    assert mine["gl_code"] == books["gl"] and mine["fund"] == "Report fund"
    other = rows[books["other"]]
    assert (other["income"], other["last_year"], other["change_pct"]) == (10_00, 0, None)
    gl = {r["gl_code"]: r for r in rep.tables[1].rows}
    assert gl[books["gl"]]["income"] == 191_00 and gl[books["gl2"]]["income"] == 10_00
    assert rep.extra["compare_from"] == REP.last_year(books["today"])


def test_approvals_by_approver_and_band(session, books):
    today = books["today"]
    rep = REP.approvals_report(session, today, today)
    decisions = rep.tables[2].rows
    mine = [d for d in decisions if (d["action"], d["subject_id"]) in (
        ("Refund", str(books["refund"].id)), ("Write-off", str(books["write_off"].id)))]
    assert sorted((str(d["action"]), d["approver"], d["amount"]) for d in mine) == sorted(
        [("Refund", who, 24_00) for who in books["refund_deciders"]]
        + [("Write-off", who, 5_00) for who in books["wo_deciders"]])
    assert all(str(d["decision"]) == "Approved" and d["requester"] == "clerk" for d in mine)
    # the grouped rows agree with the decisions listed
    for r in rep.tables[0].rows:
        listed = [d for d in decisions if d["approver"] == r["approver"]
                  and str(d["action"]) == str(r["action"])
                  and REP._band_of(d["amount"] or 0) == r["band_index"]]
        assert r["approved"] + r["rejected"] == len(listed)
        assert r["approved_amount"] + r["rejected_amount"] == sum(d["amount"] or 0 for d in listed)
    refund_band = next(r for r in rep.tables[0].rows if r["approver"] ==
                       books["refund_deciders"][0] and r["action_code"] == "refund"
                       and r["band_index"] == 0)
    assert str(refund_band["band"]) == "£0.00 to £100.00"
    assert REP.band_label(4) == "over £25,000.00"


def test_approvals_count_rejections(session, books):
    """A rejected write-off shows as rejected, with its amount, in its band."""
    today = books["today"]
    before = REP.approvals_report(session, today, today).tables[1].rows
    wo = WO.request_write_off(session, transaction_id=books["refund"].transaction_id,
                              amount="2.00", reason="x", actor="clerk")
    session.expire_all()
    task = session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == wo.workflow_instance_id, WorkflowTask.status == "ready"))
    wf.complete_task(session, task.id, "head" if "Head" in task.role else "manager", "reject",
                     "Not justified")
    after = REP.approvals_report(session, today, today).tables[1].rows

    def band0(rows):
        r = next((r for r in rows if r["action_code"] == "write_off" and r["band_index"] == 0),
                 {"rejected": 0, "rejected_amount": 0})
        return r["rejected"], r["rejected_amount"]

    assert band0(after) == (band0(before)[0] + 1, band0(before)[1] + 2_00)


def test_month_end_pack_and_exports(session, books):
    first, last = REP.parse_month(books["today"].strftime("%Y-%m"))
    reports = REP.month_end(session, first, last)
    assert [r.name for r in reports] == ["cash-book", "vat", "income", "approvals"]
    data = REP.to_xlsx(reports)
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Daily cash book", "VAT report", "Income by fund and GL code",
                             "Approvals report"]
    ws = wb["VAT report"]
    found = [row for row in ws.iter_rows(values_only=True) if row[0] == books["vat"]]
    assert len(found) == 1
    header = next(row for row in ws.iter_rows(values_only=True) if row[0] == "VAT code")
    vals = dict(zip(header, found[0]))
    assert vals["Gross"] == pytest.approx(206.00) and vals["VAT"] == pytest.approx(34.33)
    assert vals["Net"] == pytest.approx(171.67) and vals["Rate"] == pytest.approx(0.2)
    z = zipfile.ZipFile(io.BytesIO(REP.to_zip(reports)))
    names = z.namelist()
    assert len(names) == 4 and names[0].startswith("cash-book-") and names[0].endswith(".csv")
    vat_csv = z.read(names[1]).decode("utf-8-sig")
    assert f"{books['vat']},Report VAT,20%,4,260.00,43.33,30.00,5.00,24.00,4.00,171.67,34.33,206.00" \
        in vat_csv


def test_cash_book_csv(session, books):
    rep = REP.cash_book(session, books["today"], office_code=books["office"])
    text = REP.to_csv(rep)
    d = books["today"].isoformat()
    assert f"{d},{books['office']},{books['user']},CASH,Cash,3,210.00,1,30.00,180.00" in text
    assert "Total,,,,,4,260.00,1,30.00,230.00" in text


def test_csv_cells_that_look_like_formulas_are_quoted():
    assert REP._safe("=SUM(A1)") == "'=SUM(A1)"
    assert REP._safe("-12.50") == "-12.50"
    assert REP._safe("@x") == "'@x"


@pytest.mark.parametrize("args,error", [
    ({"from": "2026-13-01"}, REP.BadReportArgument),
    ({"from": "01/12/2026"}, REP.BadReportArgument),
    ({"from": "٢٠٢٦-01-01"}, REP.BadReportArgument),
    ({"from": "2026-02-01", "to": "2026-01-31"}, ValidationError),
    ({"from": "2025-01-01", "to": "2026-06-30"}, ValidationError),
])
def test_bad_periods(args, error):
    with pytest.raises(error):
        REP.parse_period("vat", args)


def test_periods():
    today = dt.date(2026, 12, 6)
    assert REP.parse_period("cash-book", {}, today) == (today, today)
    assert REP.parse_period("vat", {}, today) == (dt.date(2026, 12, 1), today)
    assert REP.parse_period("month-end", {}, today) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert REP.parse_period("month-end", {"month": "2024-02"}) == (dt.date(2024, 2, 1),
                                                                   dt.date(2024, 2, 29))
    with pytest.raises(ValidationError):
        REP.parse_period("cash-book", {"from": "2026-01-01", "to": "2026-02-15"})
    with pytest.raises(REP.BadReportArgument):
        REP.parse_period("month-end", {"month": "2026-13"})
    with pytest.raises(NotFound):
        REP.parse_period("nope", {})
    with pytest.raises(REP.BadReportArgument):
        REP.parse_format("pdf")
    assert REP.last_year(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)


def test_reversal_day_is_the_posting_day(session, books):
    """A reversal posted today of money received yesterday counts today, in its till's row."""
    yesterday = books["today"] - dt.timedelta(days=1)
    r = RC.take_receipt(session, lines=[{"fund_code": books["fund"], "account_reference": "A2",
                                         "amount": "7.00"}], payment_method_code="CHQ",
                        actor=books["user"], office_code=books["office"],
                        transaction_date=yesterday)
    L.reverse_group(session, session.get(PostingGroup, r.group.id), actor="manager", reason="Bounced")
    session.commit()
    y = {x["payment_method_code"]: x for x in REP.cash_book(
        session, yesterday, office_code=books["office"]).tables[0].rows}
    t = {x["payment_method_code"]: x for x in REP.cash_book(
        session, books["today"], office_code=books["office"]).tables[0].rows}
    assert (y["CHQ"]["received"], y["CHQ"]["reversed"]) == (7_00, 0)
    assert (t["CHQ"]["received"], t["CHQ"]["reversed"], t["CHQ"]["net"]) == (0, 7_00, -7_00)
