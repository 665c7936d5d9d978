"""Retention and subject-access pages and APIs: roles, dry run, run, holds, the report as page,
CSV and print view; names gone from the pages and the API after anonymisation."""

import datetime as dt
import json
import secrets

from sqlalchemy import select

from app.models.card_payment import PaymentRequest
from app.models.ledger import Transaction
from app.models.personal import LegalHold
from app.models.reference import AccountHolder
from tests.conftest import unique


def _old_records(session):
    """Records of 2017 naming three people of their own (this test's, whatever ran before)."""
    from app.services.receipts import post_receipt

    tag = unique("P", 6)
    gwen, idris, myfanwy = (f"Gwenllian{tag}", f"Idris{tag}", f"Myfanwy{tag}")
    ref = unique("HRA")[:10]
    holder = AccountHolder(fund_code="HRA", account_reference=ref, name=f"{gwen} Pryce",
                           address="7 Heol y Felin", postcode="NP18 2AA",
                           closed_at=dt.datetime(2017, 9, 30, tzinfo=dt.timezone.utc))
    session.add(holder)
    for name in (gwen, idris, myfanwy):
        post_receipt(session, [{"fund_code": "HRA", "account_reference": ref, "amount": 500,
                                "vat_code": None, "narrative": f"Paid by {name}"}],
                     payment_method_code="CHQ", actor="cashier",
                     transaction_date=dt.date(2017, 6, 1), office_code="CIVIC",
                     method_kind="cheque")
    moment = dt.datetime(2017, 6, 1, tzinfo=dt.timezone.utc)
    session.add(PaymentRequest(
        token=secrets.token_urlsafe(24), status="expired", amount=500,
        items_json=json.dumps([{"fund_code": "HRA", "reference": ref, "amount": 500}]),
        name=myfanwy, created_by="clerk", created_at=moment))
    session.commit()
    return gwen, idris, myfanwy


def test_pages_and_api_by_role_then_anonymise_from_the_page(session, as_user, api, client):
    GWEN, IDRIS, MYFANWY = _old_records(session)
    for who in ("clerk", "cashier", "manager"):
        client = as_user(who)
        assert client.get("/retention/").status_code in (302, 403)
        assert client.get(f"/subject-access/?q={IDRIS}").status_code in (302, 403)
        assert api(who).get("/api/v1/retention/due").status_code in (401, 403)
        assert api(who).get(f"/api/v1/subject-access/?q={IDRIS}").status_code in (401, 403)
    # an Auditor reads but may not run
    client = as_user("auditor")
    assert client.get("/retention/").status_code == 200
    assert client.post("/retention/run").status_code in (302, 403)
    assert api("auditor").post("/api/v1/retention/run", json={}).status_code == 403
    client = as_user("auditor")
    page = client.get(f"/subject-access/?q={IDRIS}")
    assert page.status_code == 200 and IDRIS.encode() in page.data
    assert client.get("/subject-access/?q=ab").status_code == 422

    client = as_user("admin")
    page = client.get("/retention/")
    assert page.status_code == 200 and b"retention-due" in page.data
    dry = client.post("/retention/dry-run")
    assert dry.status_code == 200 and b"retention-dry-run" in dry.data
    assert session.scalar(select(Transaction.narrative).select_from(Transaction).where(
        Transaction.narrative == f"Paid by {GWEN}")) is not None

    # API: bad input, a hold, a dry run
    admin = api("admin")
    assert admin.post("/api/v1/retention/holds", json={"match": "x"}).status_code == 422
    assert admin.post("/api/v1/retention/holds", json=[1]).status_code == 422
    assert admin.post("/api/v1/retention/run", json={"dry_run": "yes"}).status_code == 422
    assert admin.post("/api/v1/retention/holds/999999/release").status_code == 404
    resp = admin.post("/api/v1/retention/holds",
                      json={"match": "person", "value": MYFANWY, "reason": "Court order"})
    assert resp.status_code == 201, resp.json
    hold_id = resp.json["id"]
    due = admin.get("/api/v1/retention/due").json
    kinds = {k["kind"]: k for k in due["kinds"]}
    assert kinds["payment_request"]["held"] >= 1 and kinds["transaction"]["held"] >= 1
    dry = admin.post("/api/v1/retention/run", json={"dry_run": True}).json
    assert dry["dry_run"] is True and dry["due"] == due["due"]

    # the page runs it (the hold on Myfanwy keeps her records)
    client = as_user("admin")
    assert client.post("/retention/run").status_code == 302
    for name in (GWEN, f"{GWEN} Pryce"):
        body = client.get(f"/subject-access/?q={name}").data
        assert b"0 records found" in body
    # the account holder's audit history shows "(erased)" where the name was
    body = client.get("/audit/?entity=AccountHolder").data
    assert GWEN.encode() not in body
    # CSV and print view
    csv = client.get(f"/subject-access/?q={MYFANWY}&format=csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv" and MYFANWY.encode() in csv.data
    printed = client.get(f"/subject-access/?q={MYFANWY}&format=print")
    assert printed.status_code == 200 and b"<main" in printed.data
    # release the hold from the page
    assert client.post(f"/retention/holds/{hold_id}/release").status_code == 302
    session.expire_all()
    assert session.get(LegalHold, hold_id).released_by == "admin"
    assert client.post("/retention/holds", data={"match": "person", "value": "",
                                                 "reason": ""}).status_code == 302
    for name in (GWEN, f"{GWEN} Pryce"):
        assert admin.get(f"/api/v1/subject-access/?q={name}").json["total"] == 0
    held = admin.get(f"/api/v1/subject-access/?q={MYFANWY}").json
    assert held["payment_requests"] and held["transactions"]
    api_csv = admin.get(f"/api/v1/subject-access/?q={MYFANWY}&format=csv")
    assert api_csv.status_code == 200 and b"payment_requests" in api_csv.data
    assert admin.get("/api/v1/subject-access/?q=").status_code == 422
    holds = admin.get("/api/v1/retention/holds").json["result"]
    assert any(h["id"] == hold_id and h["released_at"] for h in holds)


def test_pages_in_welsh(as_user, client):
    client = as_user("admin")
    client.get("/lang/cy")
    try:
        body = client.get("/retention/").data.decode()
        assert "Cyfnodau cadw a daliadau cyfreithiol" in body
        assert "Rhediad prawf" in body  # dry run
        body = client.get("/subject-access/").data.decode()
        assert "Adroddiad mynediad at ddata" in body
    finally:
        client.get("/lang/en")
