"""/api/v1/cash-ups: role rules (Cashier creates their own, managers approve through tasks,
Auditors read), bad input as 4xx with nothing saved, the whole journey through the API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.models.cashup import CashUp
from app.models.reference import Office
from app.services import ledger as L
from app.services.receipts import take_receipt
from tests.conftest import unique

def _today() -> str:
    """Today, when asked (a value fixed at import goes stale when the run passes midnight)."""
    return dt.date.today().isoformat()


@pytest.fixture
def office(session):
    code = unique("A", 8)
    session.add(Office(code=code, name=f"API office {code}"))
    session.commit()
    return code


def _receipt(session, office, amount="10.00", method="CASH"):
    take_receipt(session, payment_method_code=method, actor="cashier", office_code=office,
                 lines=[{"fund_code": "TWS", "account_reference": unique("W"), "amount": amount}])


def _body(office, **kw):
    return {"office_code": office, "till_date": _today(), "bag_number": unique("API", 10),
            "denominations": {"10.00": 1}, **kw}


def test_cashier_cashes_up_manager_approves_auditor_reads(api, session, office):
    _receipt(session, office, "10.00")
    _receipt(session, office, "25.00", method="CHQ")
    till = api("cashier").get(f"/api/v1/cash-ups/till?office_code={office}")
    assert till.status_code == 200 and till.json["cash"] == "10.00" and till.json["cheques"] == "25.00"
    resp = api("cashier").post("/api/v1/cash-ups/", json=_body(office, cheques=[
        {"drawer": "B Evans", "sort_code": "40-11-22", "cheque_number": "100200", "amount": "25.00"}]))
    assert resp.status_code == 201, resp.json
    cu = resp.json
    assert (cu["status"], cu["expected"], cu["counted"], cu["variance"]) == (
        "submitted", "35.00", "35.00", "0.00")
    assert len(cu["receipts"]) == 2 and cu["cheques"][0]["sort_code"] == "40-11-22"
    # other roles may not cash up; a clerk may not even read
    assert api("manager").post("/api/v1/cash-ups/", json=_body(office)).status_code == 403
    assert api("clerk").get("/api/v1/cash-ups/").status_code == 403
    # the submitter sees no task; a Finance Manager approves it through the tasks API
    tasks = api("manager").get("/api/v1/tasks/").json
    mine = [t for t in tasks if t.get("subject_type") == "cash_up"
            and str(t.get("subject_id")) == str(cu["id"])]
    assert mine, tasks
    done = api("manager").post(f"/api/v1/tasks/{mine[0]['id']}/complete",
                               json={"decision": "approve"})
    assert done.status_code == 200, done.json
    got = api("auditor").get(f"/api/v1/cash-ups/{cu['id']}").json
    assert got["status"] == "approved" and got["posting"] and got["decided_by"] == "manager"
    listed = api("auditor").get(f"/api/v1/cash-ups/?office_code={office}").json
    assert [c["id"] for c in listed["result"]] == [cu["id"]]
    assert L.balance_of(session, L.CASH_IN_HAND, account_reference=office) == 0
    # approved: too late to void
    assert api("manager").post(f"/api/v1/cash-ups/{cu['id']}/void",
                               json={"reason": "x"}).status_code == 409


def test_bad_input_is_4xx_and_nothing_saved(api, session, office):
    _receipt(session, office, "10.00")
    before = session.scalar(select(func.count(CashUp.id)))
    cases = [
        (_body(office, denominations={"10.00": -1}), "denominations.10.00"),
        (_body(office, denominations={"10.00": 0.5}), "denominations.10.00"),
        (_body(office, denominations={"0.001": 1}), "denominations"),
        (_body(office, cheques=[{"drawer": "X", "cheque_number": "1", "amount": "1.00"}]),
         "cheques[0].sort_code"),
        (_body(office, bag_number=""), "bag_number"),
        (_body(office, denominations={"5.00": 1}), "variance_reason"),
    ]
    for body, field in cases:
        resp = api("cashier").post("/api/v1/cash-ups/", json=body)
        assert resp.status_code == 422, (body, resp.json)
        assert field in resp.json["errors"], (field, resp.json)
    bad = api("cashier").post("/api/v1/cash-ups/", data="{not json",
                              headers={"Content-Type": "application/json"})
    assert bad.status_code in (400, 422)
    assert api("cashier").get("/api/v1/cash-ups/?status=nope").status_code == 422
    assert api("cashier").get("/api/v1/cash-ups/999999999").status_code == 404
    assert session.scalar(select(func.count(CashUp.id))) == before
    # a bag number used twice the same day
    bag = unique("DUP", 10)
    assert api("cashier").post("/api/v1/cash-ups/", json=_body(office, bag_number=bag)).status_code == 201
    _receipt(session, office, "10.00")
    again = api("cashier").post("/api/v1/cash-ups/", json=_body(office, bag_number=bag))
    assert again.status_code == 422 and "bag_number" in again.json["errors"]


def test_void_and_who_sees_what(api, session, office):
    _receipt(session, office, "10.00")
    cu = api("cashier").post("/api/v1/cash-ups/", json=_body(office)).json
    assert api("auditor").post(f"/api/v1/cash-ups/{cu['id']}/void",
                               json={"reason": "x"}).status_code == 403
    assert api("cashier").post(f"/api/v1/cash-ups/{cu['id']}/void",
                               json={"reason": ""}).status_code == 422
    voided = api("cashier").post(f"/api/v1/cash-ups/{cu['id']}/void", json={"reason": "wrong bag"})
    assert voided.status_code == 200 and voided.json["status"] == "voided"
    # the till is back
    assert api("cashier").get(f"/api/v1/cash-ups/till?office_code={office}").json["cash"] == "10.00"


def test_idempotency_key_replays_the_first_cash_up(api, session, office):
    _receipt(session, office, "10.00")
    body = _body(office)
    headers = {"Idempotency-Key": unique("k", 16)}
    first = api("cashier").post("/api/v1/cash-ups/", json=body, headers=headers)
    again = api("cashier").post("/api/v1/cash-ups/", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json["id"] == again.json["id"]
    other = api("cashier").post("/api/v1/cash-ups/", json={**body, "bag_number": "X1"},
                                headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    assert session.scalar(select(func.count(CashUp.id)).where(CashUp.office_code == office)) == 1
