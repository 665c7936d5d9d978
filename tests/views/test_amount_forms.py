"""Issue #15 item 5 on the web pages: forms accept a leading £ and thousands separators in the
right places ("£1,234.50"), and refuse misplaced separators ("12,34" used to post £1,234.00),
non-ASCII digits and everything the API refuses; the error shows on the page and nothing posts.
Receipt dates outside the accepted window are refused on the form too."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from app.models.ledger import PostingGroup, Transaction
from app.models.reference import Fund
from app.models.refund import Refund
from app.models.suspense_work import WriteOff
from tests.conftest import unique
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.integration.test_suspense_service import make_item

MISPLACED = ["12,34", "1,23.00", "1,2345.00", "١٢.٣٤", "１２.３４", "+12.34", ".5", "5.", "12.345"]


def _receipt_form(amount, date="", ref=None):
    data = MultiDict([("payment_method_code", "CASH"), ("transaction_date", date),
                      ("office_code", "CIVIC"), ("external_reference", "")])
    for key, value in (("fund_code", "TWS"), ("account_reference", ref or unique("FA")),
                       ("amount", amount), ("vat_code", ""), ("narrative", "")):
        data.add(key, value)
    return data


def _groups(session):
    session.rollback()
    return session.scalar(select(func.count(PostingGroup.id)))


@pytest.mark.parametrize("typed,pence", [("£1,234.50", 123450), ("1,234.50", 123450),
                                         (" 12.34 ", 1234), ("5", 500), ("5.5", 550)])
def test_receipt_form_accepts_pounds_and_separators(as_user, session, typed, pence):
    ref = unique("FA")
    resp = as_user("cashier").post("/receipts/new", data=_receipt_form(typed, ref=ref))
    assert resp.status_code == 302, resp.data[-2000:]
    session.rollback()
    assert session.scalar(select(Transaction.amount).where(Transaction.account_reference == ref)) == pence


@pytest.mark.parametrize("typed", MISPLACED)
def test_receipt_form_refuses_misplaced_separators_and_foreign_digits(as_user, session, typed):
    before = _groups(session)
    resp = as_user("cashier").post("/receipts/new", data=_receipt_form(typed))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "has-error" in html and "not posted" in html, typed
    assert _groups(session) == before


def test_inline_validation_reads_amounts_as_the_form_does(as_user):
    c = as_user("cashier")
    ok = c.post("/receipts/validate", json={"fund_code": "TWS", "account_reference": "X1",
                                            "amount": "£1,000.00"})
    assert ok.json["valid"] is True, ok.json
    bad = c.post("/receipts/validate", json={"fund_code": "TWS", "account_reference": "X1",
                                             "amount": "12,34"})
    assert bad.json["valid"] is False and "amount" in bad.json["errors"]


def test_receipt_form_refuses_dates_outside_the_window(as_user, session):
    before = _groups(session)
    for day in ("1999-12-31", (dt.date.today() + dt.timedelta(days=366)).isoformat()):
        resp = as_user("cashier").post("/receipts/new", data=_receipt_form("1.00", date=day))
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200 and "outside the accepted range" in html, day
    assert _groups(session) == before


def test_journal_and_transfer_forms(as_user, session):
    c = as_user("clerk")
    source = make_txn(session, 2_000_00, method="CASH")
    ref = unique("FJ")
    for typed in ("12,34", "1,2345.00"):
        r = c.post(f"/journals/new/{source.id}", data=MultiDict([
            ("fund_code", "TWS"), ("account_reference", ref), ("amount", typed), ("narrative", ""),
            ("reason", "wrong account")]))
        assert r.status_code == 200 and "has-error" in r.get_data(as_text=True), typed
    r = c.post(f"/journals/new/{source.id}", data=MultiDict([
        ("fund_code", "TWS"), ("account_reference", ref), ("amount", "£1,000.00"), ("narrative", ""),
        ("reason", "wrong account")]))
    assert r.status_code == 302
    session.rollback()
    assert session.scalar(select(Transaction.amount).where(Transaction.account_reference == ref)) == 100_000
    ref2 = unique("FT")
    r = c.post("/transfers/new", data=MultiDict([
        ("source_transaction_id", str(source.id)), ("fund_code", "TWS"),
        ("account_reference", ref2), ("amount", "1,00.00"), ("reason", "support credit")]))
    assert r.status_code == 200 and "has-error" in r.get_data(as_text=True)
    r = c.post("/transfers/new", data=MultiDict([
        ("source_transaction_id", str(source.id)), ("fund_code", "TWS"),
        ("account_reference", ref2), ("amount", "£500.00"), ("reason", "support credit")]))
    assert r.status_code == 302
    session.rollback()
    assert session.scalar(select(Transaction.amount).where(Transaction.account_reference == ref2)) == 50_000


def test_refund_form(as_user, session):
    deploy_refund_workflow(session)
    txn = make_txn(session, 5_000_00, method="CASH")
    c = as_user("clerk")
    form = {"reason": "Overpaid", "method": "cheque", "payee_name": "A Payer"}
    resp = c.post(f"/refunds/new/{txn.id}", data={**form, "amount": "1,00"})
    assert resp.status_code == 422
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == txn.id)) == 0
    resp = c.post(f"/refunds/new/{txn.id}", data={**form, "amount": "£1,000.00"})
    assert resp.status_code == 302
    session.rollback()
    assert session.scalar(select(Refund.amount).where(Refund.transaction_id == txn.id)) == 100_000


def test_suspense_allocation_and_write_off_forms(as_user, session):
    item = make_item(session, 2_000_00)
    c = as_user("clerk")
    ref = unique("FS")
    bad = c.post(f"/suspense/{item.id}/allocate", data={
        "fund_code": ["TWS"], "account_reference": [ref], "amount": ["1,0.00"]})
    assert bad.status_code == 422 and b"has-error" in bad.data
    ok = c.post(f"/suspense/{item.id}/allocate", data={
        "fund_code": ["TWS"], "account_reference": [ref], "amount": ["£1,000.00"]})
    assert ok.status_code == 302
    c.post("/write-offs/new", data={"suspense_item_id": item.id, "amount": "١.٠٠",
                                    "reason": "Payer untraceable"})
    session.rollback()
    assert session.scalar(select(func.count(WriteOff.id)).where(
        WriteOff.suspense_item_id == item.id)) == 0
    c.post("/write-offs/new", data={"suspense_item_id": item.id, "amount": "£1,000.00",
                                    "reason": "Payer untraceable"})
    session.rollback()
    assert session.scalar(select(WriteOff.amount).where(WriteOff.suspense_item_id == item.id)) == 100_000


def test_reference_data_money_fields(as_user, session):
    c = as_user("admin")
    for typed in ("12,34", "1,23.00", "١٢.٣٤"):
        code = unique("F")
        resp = c.post("/fundview/add", data={"code": code, "name": "X", "maximum_amount": typed})
        assert b"has-error" in resp.data or b"Not a valid amount" in resp.data or \
            b"groups of three" in resp.data, typed
        assert session.scalar(select(Fund).where(Fund.code == code)) is None
    code = unique("F")
    c.post("/fundview/add", data={"code": code, "name": "X", "maximum_amount": "£12,345,678.00"})
    session.rollback()
    assert session.scalar(select(Fund.maximum_amount).where(Fund.code == code)) == 1_234_567_800


def test_filters_on_pages_read_form_amounts(as_user):
    c = as_user("manager")
    assert c.get("/refunds/?amount_min=%C2%A31,000.00").status_code == 200
    assert c.get("/refunds/?amount_min=12,34").status_code == 422
    assert c.get("/suspense/?min=%C2%A31,000").status_code == 200
