"""/api/v1/gl-exports and /api/v1/accounting-periods: role rules, create/get/download/void,
bad input as clear 4xx, and the receipts API's accounting date in a closed period."""

from __future__ import annotations

import datetime as dt

from app.services import periods as P
from tests.conftest import unique
from tests.integration.test_gl_export import code_all_funds, flush_all


def test_gl_export_api_round_trip(api, session):
    flush_all(session)
    fm = api("manager")
    r = fm.post("/api/v1/receipts/", json={
        "payment_method_code": "CASH", "transaction_date": "2011-02-03",
        "lines": [{"fund_code": "TWS", "account_reference": unique("A"), "amount": "12.00"}]})
    assert r.status_code == 201, r.json
    made = fm.post("/api/v1/gl-exports/", json={"cut_off": "2011-02-03",
                                                "layout": "generic_journal_csv"})
    assert made.status_code == 201, made.json
    body = made.json
    assert body["control_total"] == "12.00" and body["status"] == "complete"
    got = api("auditor").get(f"/api/v1/gl-exports/{body['id']}")
    assert got.status_code == 200 and got.json["number"] == body["number"]
    one = api("auditor").get(f"/api/v1/gl-exports/{body['id']}/download")
    two = fm.get(f"/api/v1/gl-exports/{body['id']}/download")
    assert one.status_code == two.status_code == 200
    assert one.data == two.data and one.headers["X-Control-Total"] == "12.00"
    listed = api("auditor").get("/api/v1/gl-exports/")
    assert listed.status_code == 200 and listed.json["result"][0]["id"] == body["id"]
    assert api("auditor").get("/api/v1/gl-exports/layouts").status_code == 200
    # roles: an Auditor reads but does not run or void; a clerk does neither
    assert api("auditor").post("/api/v1/gl-exports/", json={
        "cut_off": "2011-02-03", "layout": "generic_journal_csv"}).status_code == 403
    assert api("clerk").get("/api/v1/gl-exports/").status_code == 403
    no_reason = fm.post(f"/api/v1/gl-exports/{body['id']}/void", json={})
    assert no_reason.status_code == 422 and "reason" in no_reason.json["errors"]
    void = fm.post(f"/api/v1/gl-exports/{body['id']}/void", json={"reason": "wrong layout"})
    assert void.status_code == 200 and void.json["status"] == "void"
    assert fm.post(f"/api/v1/gl-exports/{body['id']}/void",
                   json={"reason": "again"}).status_code == 409


def test_gl_export_api_bad_input(api, session):
    code_all_funds(session)
    fm = api("manager")
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    r = fm.post("/api/v1/gl-exports/", json={"cut_off": future, "layout": "generic_journal_csv"})
    assert r.status_code == 422 and "future" in r.json["message"]
    r = fm.post("/api/v1/gl-exports/", json={"cut_off": "2011-01-01", "layout": "nope"})
    assert r.status_code == 422 and "layout" in r.json["errors"]
    r = fm.post("/api/v1/gl-exports/", json={"cut_off": "2011-01-01",
                                             "layout": "generic_journal_csv", "summarised": "x"})
    assert r.status_code == 422
    r = fm.post("/api/v1/gl-exports/", json=["not", "an", "object"])
    assert r.status_code in (400, 422)
    assert fm.get("/api/v1/gl-exports/999999").status_code == 404
    assert fm.get("/api/v1/gl-exports/?page=x").status_code == 400


def test_periods_api_and_explicit_date_in_a_closed_period(api, session):
    P.apply_change(session, dt.date(2012, 4, 1), "close", actor="head")
    session.commit()
    fm = api("manager")
    listed = api("auditor").get("/api/v1/accounting-periods/")
    assert listed.status_code == 200
    assert any(p["period"] == "2012-04" and p["status"] == "closed" for p in listed.json["result"])
    one = api("auditor").get("/api/v1/accounting-periods/2012-04")
    assert one.status_code == 200 and set(one.json["checks"]) >= {"suspense", "unexported",
                                                                  "unreconciled"}
    assert api("auditor").get("/api/v1/accounting-periods/April").status_code == 422
    again = fm.post("/api/v1/accounting-periods/2012-04/close", json={})
    assert again.status_code == 409 and "already closed" in again.json["message"]
    assert api("auditor").post("/api/v1/accounting-periods/2012-05/close",
                               json={}).status_code == 403
    req = fm.post("/api/v1/accounting-periods/2012-05/close", json={"reason": "month end"})
    assert req.status_code == 201 and req.json["status"] == "pending"
    line = {"fund_code": "TWS", "account_reference": unique("A"), "amount": "3.00"}
    moved = fm.post("/api/v1/receipts/", json={"payment_method_code": "CASH",
                                               "transaction_date": "2012-04-10", "lines": [line]})
    assert moved.status_code == 201, moved.json
    assert moved.json["accounting_date"] == "2012-05-01"
    assert "closed period" in moved.json["period_message"]
    refused = fm.post("/api/v1/receipts/", json={
        "payment_method_code": "CASH", "transaction_date": "2012-04-10",
        "accounting_date": "2012-04-10", "lines": [line]})
    assert refused.status_code == 422 and "accounting_date" in refused.json["errors"]


def test_journal_api_explicit_accounting_date(api, session):
    P.apply_change(session, dt.date(2012, 7, 1), "close", actor="head")
    session.commit()
    r = api("cashier").post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": "TWS", "account_reference": unique("J"), "amount": "20.00"}]})
    tid = r.json["transactions"][0]["id"]
    body = {"transaction_id": tid, "reason": "wrong account",
            "targets": [{"fund_code": "TWS", "account_reference": unique("K"), "amount": "5.00"}]}
    refused = api("clerk").post("/api/v1/journals", json={**body, "accounting_date": "2012-07-09"})
    assert refused.status_code == 422 and "accounting_date" in refused.json["errors"]
    bad = api("clerk").post("/api/v1/journals", json={**body, "accounting_date": "July"})
    assert bad.status_code == 422
    ok = api("clerk").post("/api/v1/journals", json=body)
    assert ok.status_code == 201 and ok.json["accounting_date"] == dt.date.today().isoformat()
    assert ok.json["period_message"] is None
