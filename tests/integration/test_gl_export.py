"""GL export batches: summarised and itemised files in the shipped layouts, the control total,
VAT to the VAT code's GL code, a line in at most one live batch (also with two batches at once,
on both databases), void, identical re-downloads, a failed batch exporting nothing, bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, NotFound, ValidationError
from app.models.audit import AuditEvent
from app.models.gl import GlExportBatch, GlExportLine
from app.models.reference import Fund
from app.services import gl_export as G
from app.services import gl_layouts as LAY
from app.services.receipts import take_receipt
from tests.conftest import unique
from tests.integration.test_concurrency import race


@pytest.fixture(autouse=True)
def _fund_outside_vat(session):
    """GLO: a fund whose income is outside the scope of VAT, with no reference validator."""
    if session.scalar(select(Fund.id).where(Fund.code == "GLO")) is None:
        session.add(Fund(code="GLO", name="GL test fund", gl_code="6001-GL", vat_code="O"))
        session.commit()


def code_all_funds(session):
    """Funds other tests made without a GL code would stop every batch: give them one."""
    for fund in session.scalars(select(Fund).where(Fund.gl_code.is_(None))):
        fund.gl_code = f"T-{fund.code}"
    session.commit()


def flush_all(session):
    """Export whatever earlier tests left, so a test sees its own lines only."""
    code_all_funds(session)
    G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                   actor="manager", allow_empty=True)


def receipt(session, date: str, amount: str, fund="TWS", vat_code=None):
    line = {"fund_code": fund, "account_reference": unique("G"), "amount": amount}
    if vat_code:
        line["vat_code"] = vat_code
    return take_receipt(session, lines=[line], payment_method_code="CASH", actor="cashier",
                        transaction_date=date)


def rows_of(batch):
    return list(csv.DictReader(io.StringIO(batch.content.decode())))


def live_duplicates(session) -> int:
    return len(session.execute(select(GlExportLine.ledger_line_id).where(
        GlExportLine.voided.is_(False)).group_by(GlExportLine.ledger_line_id)
        .having(func.count() > 1)).all())


def test_summarised_batch_codes_vat_and_balances_to_the_control_total(session):
    flush_all(session)
    receipt(session, "2010-03-04", "120.00")            # TWS: standard-rated VAT (20.00)
    receipt(session, "2010-03-04", "30.00")
    receipt(session, "2010-03-05", "50.00", fund="GLO")  # outside the scope of VAT
    batch = G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                           actor="manager")
    assert batch.number.startswith("GL") and batch.line_count == 6
    assert batch.control_total == 200_00
    rows = rows_of(batch)
    debits = sum(int(round(float(r["Debit"] or 0) * 100)) for r in rows)
    credits = sum(int(round(float(r["Credit"] or 0) * 100)) for r in rows)
    assert debits == credits == batch.control_total
    got = {(r["Date"], r["GL code"], r["Cost centre"], r["VAT code"], r["Debit"], r["Credit"])
           for r in rows}
    assert got == {
        ("2010-03-04", "7002-CH", "C100", "", "150.00", ""),   # cash: Dr cash in hand
        ("2010-03-04", "4002-TW", "C100", "S", "", "125.00"),   # net 100 + 25 (VAT 5 of 30)
        ("2010-03-04", "8101-VAT", "C100", "S", "", "25.00"),
        ("2010-03-05", "7002-CH", "C100", "", "50.00", ""),
        ("2010-03-05", "6001-GL", "C100", "O", "", "50.00"),
    }
    # nothing left: a second batch has nothing to take
    with pytest.raises(ValidationError, match="Nothing to export"):
        G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                       actor="manager")
    assert live_duplicates(session) == 0


def test_cut_off_takes_lines_up_to_it_only(session):
    flush_all(session)
    receipt(session, "2010-05-01", "10.00")
    receipt(session, "2010-05-03", "20.00")
    first = G.create_batch(session, cut_off="2010-05-02", layout="generic_journal_csv",
                           actor="manager")
    assert first.control_total == 10_00
    second = G.create_batch(session, cut_off="2010-05-03", layout="unit4_gl07", actor="manager")
    assert second.control_total == 20_00


def test_other_layouts_and_itemised(session):
    flush_all(session)
    r = receipt(session, "2010-06-07", "60.00")
    oracle = G.create_batch(session, cut_off="2010-06-07", layout="oracle_fusion_gl_interface",
                            actor="manager")
    lines = oracle.content.decode().splitlines()
    assert len(lines) == 3 and lines[0].startswith("NEW,,2010/06/07,IMS,Receipts,GBP,")
    assert {tuple(line.split(",")[8:12]) for line in lines} == {
        ("7002-CH", "C100", "60.00", ""), ("4002-TW", "C100", "", "50.00"),
        ("8101-VAT", "C100", "", "10.00")}
    G.void_batch(session, oracle.id, reason="re-run itemised", actor="manager")
    items = G.create_batch(session, cut_off="2010-06-07", layout="generic_journal_csv",
                           actor="manager", summarised=False)
    assert items.line_count == 2 and items.row_count == 3  # the FUND line's VAT split out
    unit4 = LAY.validate(LAY.UNIT4)
    assert unit4["amounts"] == "signed"
    assert r.receipt_number  # (the receipt posted)
    with pytest.raises(ValidationError, match="only known in an itemised"):
        LAY.validate({**LAY.GENERIC, "columns": [{"header": "No", "field": "posting_number"},
                                                 {"header": "D", "field": "debit"}]},
                     summarised=True)


def test_void_puts_lines_into_the_next_batch_and_downloads_are_identical(session):
    flush_all(session)
    receipt(session, "2010-07-01", "7.77")
    batch = G.create_batch(session, cut_off="2010-07-01", layout="generic_journal_csv",
                           actor="manager")
    first = G.download(session, batch.id, actor="auditor").content
    second = G.download(session, batch.id, actor="manager").content
    assert first == second == batch.content
    with pytest.raises(ValidationError, match="reason"):
        G.void_batch(session, batch.id, reason="  ", actor="manager")
    G.void_batch(session, batch.id, reason="wrong layout", actor="manager")
    with pytest.raises(Conflict, match="already void"):
        G.void_batch(session, batch.id, reason="again", actor="manager")
    again = G.create_batch(session, cut_off="2010-07-01", layout="unit4_gl07", actor="manager")
    assert again.control_total == 7_77 and again.line_count == 2
    # the void batch keeps its file
    assert G.download(session, batch.id, actor="manager").content == first
    actions = [a for a, in session.execute(select(AuditEvent.action).where(
        AuditEvent.entity == "GlExportBatch", AuditEvent.entity_id == str(batch.id)))]
    assert actions.count("gl_export.download") == 3
    assert {"gl_export.run", "gl_export.void"} <= set(actions)


def test_a_failed_batch_marks_nothing_exported(session):
    flush_all(session)
    code = unique("NG", 6)
    session.add(Fund(code=code, name="No GL code"))
    session.commit()
    receipt(session, "2010-08-01", "5.00", fund=code)
    before = G.unexported_summary(session, dt.date.today())
    n_batches = session.scalar(select(func.count()).select_from(GlExportBatch))
    with pytest.raises(ValidationError, match="no GL code"):
        G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                       actor="manager")
    assert G.unexported_summary(session, dt.date.today()) == before
    assert session.scalar(select(func.count()).select_from(GlExportBatch)) == n_batches
    code_all_funds(session)
    assert G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                          actor="manager").control_total == before[1]


def test_bad_input(session):
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with pytest.raises(ValidationError, match="in the future"):
        G.create_batch(session, cut_off=tomorrow, layout="generic_journal_csv", actor="manager")
    with pytest.raises(ValidationError, match="cut_off"):
        G.create_batch(session, cut_off="31/02/2010", layout="generic_journal_csv", actor="m")
    with pytest.raises(ValidationError, match="Unknown layout"):
        G.create_batch(session, cut_off="2010-01-01", layout="nope", actor="manager")
    with pytest.raises(ValidationError, match="unknown field 'amont'"):
        LAY.validate({**LAY.GENERIC, "columns": [{"header": "Amount", "field": "amont"}]})
    with pytest.raises(ValidationError, match="either a field or fixed text"):
        LAY.validate({**LAY.GENERIC, "columns": [{"header": "X"}]})
    with pytest.raises(ValidationError, match="date_format"):
        LAY.validate({**LAY.GENERIC, "date_format": "%H:%M"})
    with pytest.raises(ValidationError, match="not valid JSON"):
        LAY.validate("{")
    with pytest.raises(NotFound):
        G.get_batch(session, "99999999")
    with pytest.raises(NotFound):
        G.void_batch(session, "abc", reason="x", actor="manager")


def test_new_layout_version(session):
    custom = {**LAY.GENERIC, "name": unique("lay", 6).lower(), "amounts": "signed",
              "sign": "credit_positive", "date_format": "%d/%m/%Y",
              "columns": [{"header": "When", "field": "accounting_date"},
                          {"header": "Code", "field": "gl_code"},
                          {"header": "Amt", "field": "amount"},
                          {"header": "Src", "text": "IMS"}]}
    row = LAY.add_version(session, custom, actor="admin")
    again = LAY.add_version(session, custom, actor="admin")
    session.commit()
    assert (row.version, again.version) == (1, 2)
    assert LAY.get(session, custom["name"]).version == 2
    flush_all(session)
    receipt(session, "2010-09-09", "3.00", fund="GLO")
    batch = G.create_batch(session, cut_off="2010-09-09", layout=custom["name"], actor="manager")
    assert rows_of(batch) == [
        {"When": "09/09/2010", "Code": "6001-GL", "Amt": "3.00", "Src": "IMS"},
        {"When": "09/09/2010", "Code": "7002-CH", "Amt": "-3.00", "Src": "IMS"}]


def test_two_batches_at_once_never_export_a_line_twice(app, session):
    flush_all(session)
    for i in range(5):
        receipt(session, "2010-10-01", f"{i + 1}.00")
    results = race(app, *(lambda s: G.create_batch(s, cut_off="2010-10-01",
                                                   layout="generic_journal_csv",
                                                   actor="manager") for _ in range(3)))
    assert results.count("ok") == 1, results
    assert set(results) <= {"ok", "ValidationError", "Conflict"}, results
    session.expire_all()
    assert live_duplicates(session) == 0
    assert G.unexported_summary(session, dt.date(2010, 10, 1)) == (0, 0)


def test_scheduled_run_once_a_day(app, session):
    flush_all(session)
    receipt(session, "2010-11-11", "4.00")
    receipt(session, "2010-11-12", "1.00")  # after the cut-off
    summary = G.scheduled_run(session, now=dt.date(2010, 11, 12))   # up to yesterday
    assert summary and summary.startswith("GL") and "4.00" in summary
    assert G.scheduled_run(session, now=dt.date(2010, 11, 12)) is None  # once a day
    assert G.unexported_summary(session, dt.date(2010, 11, 12)) == (2, 1_00)


def test_the_tick_job_reports_a_batch_that_cannot_run(session):
    flush_all(session)
    code = unique("NJ", 6)
    session.add(Fund(code=code, name="No GL code"))
    session.commit()
    receipt(session, "2010-12-01", "2.00", fund=code)
    before = session.scalar(select(func.count()).select_from(GlExportBatch))
    summary = G.run_job(session, now=dt.date(2010, 12, 2))
    assert summary.startswith("failed") and "no GL code" in summary
    assert session.scalar(select(func.count()).select_from(GlExportBatch)) == before
    code_all_funds(session)
    assert G.run_job(session, now=dt.date(2010, 12, 2)).startswith("GL")


def test_bank_lines_of_another_bank_account_go_to_its_own_gl_code(session):
    """The default account's Bank lines go to gl.account.BANK; another bank account's (its lines
    carry its ledger reference) to that account's ledger account code, in every layout."""
    from app.services import ledger as L
    from app.services import reconciliation as RC

    flush_all(session)
    code = unique("BK", 10)
    acct = RC.save_bank_account(session, actor="admin", data={
        "code": code, "name": "Car parks account", "sort_code": "20-00-00",
        "account_number": "12345678", "ledger_account_code": "7777-CP"})
    session.commit()
    L.post_group(session, "cash_up", [L.Leg("BANK", 4_000, None, acct.ledger_reference),
                                      L.Leg("BANK", 1_500),
                                      L.Leg("CASH_IN_HAND", -5_500, None, "CIVIC")], actor="t")
    session.commit()
    batch = G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                           actor="manager")
    debits = {(r["GL code"], r["Debit"]) for r in rows_of(batch) if r["Debit"]}
    default_gl = G.coding(session).account_gl("BANK")
    assert ("7777-CP", "40.00") in debits and (default_gl, "15.00") in debits
    assert default_gl != "7777-CP"
    G.void_batch(session, batch.id, reason="again, itemised", actor="manager")
    session.commit()
    itemised = G.create_batch(session, cut_off=dt.date.today(), layout="generic_journal_csv",
                              actor="manager", summarised=False)
    got = {(r["GL code"], r["Debit"]) for r in rows_of(itemised) if r["Debit"]}
    assert ("7777-CP", "40.00") in got and (default_gl, "15.00") in got
