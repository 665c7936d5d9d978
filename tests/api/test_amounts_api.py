"""Issue #15 item 5 through the API: amounts are JSON strings of ASCII digits with an optional
point and one or two decimals, nothing else; transaction dates outside the accepted window are
refused. Each refusal is a 422 naming the field, and nothing is posted."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.refund import Refund
from app.models.suspense_work import WriteOff
from tests.conftest import unique
from tests.integration.test_suspense_service import make_item

#: What the API used to accept (issue #15: "12,34" posted £1,234.00), and the Settled refusals.
REFUSED = ["12,34", "١٢.٣٤", "１２.３４", "£12.34", "+12.34", " 12.34", "12.34 ", ".5", "5.",
           "1,234.50", "12.345", "-12.34", "1e3", "NaN", "", "100000000000000000000", "9" * 10_000,
           12, 12.5, True, None, ["12.34"], {"pounds": 12}]


def _counts(session):
    session.rollback()
    return tuple(session.scalar(select(func.count(m.id))) for m in (PostingGroup, LedgerLine,
                                                                    Transaction))


def _receipt(api, amount, *, user="cashier", ref=None, fund="TWS", **extra):
    return api(user).post("/api/v1/receipts", json={
        "payment_method_code": "CASH", **extra,
        "lines": [{"fund_code": fund, "account_reference": ref or unique("AM"), "amount": amount}]})


def _txn(api, amount="50.00", method="CASH"):
    r = api("cashier").post("/api/v1/receipts", json={
        "payment_method_code": method, "external_reference": unique("pay-"),
        "lines": [{"fund_code": "TWS", "account_reference": unique("AM"), "amount": amount}]})
    assert r.status_code == 201, r.json
    return r.json["transactions"][0]["id"]


@pytest.mark.parametrize("amount", REFUSED, ids=repr)
def test_receipt_refuses_every_lenient_amount(api, session, amount):
    before = _counts(session)
    r = _receipt(api, amount)
    assert r.status_code == 422, (amount, r.json)
    assert "lines[0].amount" in r.json["errors"], r.json
    assert r.json["message"]
    assert _counts(session) == before


@pytest.mark.parametrize("amount,stored", [("5", "5.00"), ("5.5", "5.50"), ("5.50", "5.50"),
                                           ("0.01", "0.01"), ("1234.50", "1234.50")])
def test_receipt_accepts_digits_with_up_to_two_places(api, amount, stored):
    r = _receipt(api, amount)
    assert r.status_code == 201, r.json
    assert r.json["transactions"][0]["amount"] == stored


def test_reference_validation_amount_is_strict(api):
    for amount in ("12,34", "£1.00", 12):
        r = api("cashier").post("/api/v1/references/validate",
                                json={"fund_code": "TWS", "reference": "X1", "amount": amount})
        assert r.status_code == 422 and "amount" in r.json["errors"], (amount, r.json)


@pytest.mark.parametrize("amount", ["12,34", "١٢.٣٤", "+1.00", ".5", 12], ids=repr)
def test_journals_and_transfers_refuse_lenient_amounts(api, session, amount):
    tid = _txn(api)
    before = _counts(session)
    target = {"fund_code": "TWS", "account_reference": unique("JT"), "amount": amount}
    r = api("clerk").post("/api/v1/journals", json={"transaction_id": tid, "reason": "x",
                                                    "targets": [target]})
    assert r.status_code == 422 and "targets[0].amount" in r.json["errors"], r.json
    r = api("clerk").post("/api/v1/transfers", json={"reason": "x", "pairs": [
        {"transaction_id": tid, **target}]})
    assert r.status_code == 422 and "pairs[0].amount" in r.json["errors"], r.json
    r = api("clerk").post("/api/v1/transfers", json={"reason": "x", "source_transaction_id": tid,
                                                     "targets": [target]})
    assert r.status_code == 422 and "targets[0].amount" in r.json["errors"], r.json
    assert _counts(session) == before


@pytest.mark.parametrize("amount", ["1,00", "£1.00", " 1.00", "１.００", "5.", 1], ids=repr)
def test_refunds_refuse_lenient_amounts(api, session, amount):
    tid = _txn(api, method="CARD")
    r = api("clerk").post("/api/v1/refunds", json={"transaction_id": tid, "amount": amount,
                                                   "reason": "Paid twice", "method": "card"})
    assert r.status_code == 422 and "amount" in r.json["errors"], r.json
    session.rollback()
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == tid)) == 0


@pytest.mark.parametrize("amount", ["1,00", "£1.00", "+1.00", "١.٠٠", ".5"], ids=repr)
def test_write_offs_and_allocations_refuse_lenient_amounts(api, session, amount):
    item = make_item(session, 10_00)
    r = api("clerk").post("/api/v1/write-offs", json={"suspense_item_id": item.id, "amount": amount,
                                                      "reason": "Unclaimed"})
    assert r.status_code == 422 and "amount" in r.json["errors"], r.json
    r = api("clerk").post(f"/api/v1/suspense/{item.id}/allocations", json={"lines": [
        {"fund_code": "TWS", "account_reference": unique("SA"), "amount": amount}]})
    assert r.status_code == 422 and "lines[0].amount" in r.json["errors"], r.json
    session.rollback()
    assert session.scalar(select(func.count(WriteOff.id)).where(
        WriteOff.suspense_item_id == item.id)) == 0
    session.expire_all()
    assert item.remaining_amount == 10_00


def test_reference_data_amounts_are_strict(api, session):
    for amount in ("1,000.00", "£5.00", 500):
        r = api("admin").post("/api/v1/payment-methods/", json={
            "code": unique("M", 6), "name": "Kiosk", "kind": "card", "maximum_amount": amount})
        assert r.status_code == 422 and "maximum_amount" in r.json["errors"], (amount, r.json)


def test_search_filters_are_strict_in_the_api_and_friendly_on_the_page(api, as_user):
    r = api("auditor").get("/api/v1/transactions/?amount_min=%C2%A31,000.00")
    assert r.status_code == 422 and "amount_min" in r.json["errors"]
    assert api("auditor").get("/api/v1/transactions/?amount_min=1000.00").status_code == 200
    r = api("manager").get("/api/v1/refunds/?amount_min=1,000")
    assert r.status_code == 422 and "amount_min" in r.json["errors"]
    page = as_user("auditor").get("/transactions/?amount_min=%C2%A31,000.00")
    assert page.status_code == 200
    page = as_user("auditor").get("/transactions/?amount_min=12,34")
    assert page.status_code == 422


# ---------------------------------------------------------------------------- dates
def test_receipt_dates_outside_the_window_are_refused(api, session):
    today = dt.date.today()
    for day in ("1999-12-31", "0202-01-31", (today + dt.timedelta(days=366)).isoformat(),
                "2206-01-31", "٢٠٢٦-٠١-٠١", "2026-1-5"):
        before = _counts(session)
        r = _receipt(api, "1.00", transaction_date=day)
        assert r.status_code == 422 and "transaction_date" in r.json["errors"], (day, r.json)
        assert _counts(session) == before
    for day in ("2000-01-01", today.isoformat(), (today + dt.timedelta(days=365)).isoformat()):
        r = _receipt(api, "1.00", transaction_date=day)
        assert r.status_code == 201, (day, r.json)


def test_the_window_is_configurable(api, app):
    saved = dict(app.config)
    app.config["IMS_EARLIEST_TRANSACTION_DATE"] = dt.date(2020, 1, 1)
    app.config["IMS_TRANSACTION_DAYS_AHEAD"] = 0
    try:
        r = _receipt(api, "1.00", transaction_date="2019-12-31")
        assert r.status_code == 422 and "2020-01-01" in r.json["errors"]["transaction_date"][0]
        tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
        assert _receipt(api, "1.00", transaction_date=tomorrow).status_code == 422
        assert _receipt(api, "1.00", transaction_date="2020-01-01").status_code == 201
    finally:
        app.config.update(saved)


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def test_an_import_line_outside_the_window_fails_the_file_naming_the_line(api, session, inline):
    tag = unique("W", 6)
    ahead = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    content = ("transaction_date,account_reference,amount,narrative,fund_code\n"
               f"2026-01-05,{tag}1,1.00,ok,TWS\n"
               f"1999-12-31,{tag}2,1.00,too old,TWS\n"
               f"{ahead},{tag}3,1.00,too far ahead,TWS\n").encode()
    before = _counts(session)
    r = api("clerk").post("/api/v1/imports/", data={"file": (io.BytesIO(content), "w.csv"),
                                                     "format": "ims_csv"},
                          content_type="multipart/form-data")
    assert r.status_code == 422, r.json
    assert [e["line"] for e in r.json["lines"]] == [3, 4]
    assert "1999-12-31" in r.json["lines"][0]["message"]
    assert r.json["lines"][0]["message"].startswith("Line 3")
    assert _counts(session) == before
