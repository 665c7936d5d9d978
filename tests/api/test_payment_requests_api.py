"""POST/GET /api/v1/payment-requests (shared/API.md "Taking money"): the Payment Integration role
creates and reads requests and nothing else; the citizen pays through the simulator and returns
to the caller with a signed status and receipt number."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse

from app.models.card_payment import PaymentRequest
from app.services import card_payments as CP
from tests.conftest import unique
from tests.integration.test_card_payments import make_fund, pay

URL = "/api/v1/payment-requests"


def body(fund, **extra):
    return {"items": [{"fund_code": fund.code, "reference": unique("PR", 10), "amount": "12.34"},
                      {"fund_code": fund.code, "reference": unique("PR", 10), "amount": "0.66"}],
            "reference": "CALLER-42", "return_url": "http://localhost/back?x=1",
            "email": "payer@example.org", **extra}


def test_integration_creates_a_request_the_citizen_pays_and_returns_signed(app, api, session):
    fund = make_fund(session, online=False)  # a request is the council's own: any enabled fund
    resp = api("payint").post(URL, json=body(fund))
    assert resp.status_code == 201, resp.json
    out = resp.json
    assert set(out) >= {"id", "status", "next_url", "expires_at"} and out["status"] == "created"
    req = session.get(PaymentRequest, out["id"])
    assert out["next_url"].endswith(f"/pay/request/{req.token}")
    assert req.amount == 1300 and req.caller_reference == "CALLER-42"
    got = api("payint").get(f"{URL}/{out['id']}").json
    assert got["status"] == "created" and got["total"] == "13.00" and len(got["items"]) == 2
    # the citizen pays it
    cp = CP.start_request_payment(session, req.token)
    assert cp.channel == "request" and cp.payment_request_id == req.id and cp.amount == 1300
    assert api("payint").get(f"{URL}/{out['id']}").json["status"] == "pending"
    pay(cp)
    done = CP.confirm_payment(session, cp.token)
    assert done.status == "paid"
    got = api("payint").get(f"{URL}/{out['id']}").json
    assert got["status"] == "paid" and got["receipt_number"] == done.receipt_number
    assert got["provider_payment_id"] == done.provider_payment_id and got["paid_at"]
    # back to the caller, signed as documented: HMAC-SHA256 over "id=..&status=..&receipt_number=.."
    session.expire_all()
    target = CP.caller_return_url(session.get(PaymentRequest, out["id"]))
    parts = urllib.parse.urlsplit(target)
    assert parts.netloc == "localhost" and parts.path == "/back"
    params = urllib.parse.parse_qsl(parts.query)
    assert params[0] == ("x", "1")
    signed = params[1:4]
    assert [k for k, _ in signed] == ["id", "status", "receipt_number"]
    assert dict(signed) == {"id": str(out["id"]), "status": "paid",
                            "receipt_number": done.receipt_number}
    expected = hmac.new(app.config["IMS_PAYMENT_REQUEST_SIGNING_KEY"].encode(),
                        urllib.parse.urlencode(signed).encode(), hashlib.sha256).hexdigest()
    assert params[4] == ("signature", expected)
    # a paid request cannot be paid or cancelled again
    import pytest

    from app.domain.errors import Conflict

    with pytest.raises(Conflict):
        CP.start_request_payment(session, req.token)
    with pytest.raises(Conflict):
        CP.cancel_request(session, req.id, actor="clerk")


def test_bad_requests_create_nothing(api, session):
    fund = make_fund(session)
    before = session.query(PaymentRequest).count()
    client = api("payint")
    bad = [
        (body(fund, return_url="https://evil.example.com/x"), "return_url"),
        (body(fund, return_url="javascript:alert(1)"), "return_url"),
        ({**body(fund), "items": []}, "items"),
        ({**body(fund), "items": [{"fund_code": fund.code, "reference": "A", "amount": 1.5}]},
         "items[0].amount"),
        ({**body(fund), "items": [{"fund_code": fund.code, "reference": "A", "amount": "1.234"}]},
         "items[0].amount"),
        ({**body(fund), "items": [{"fund_code": "NOPE", "reference": "A", "amount": "1.00"}]},
         "items[0].fund"),
        ({**body(fund), "items": [{"fund_code": fund.code, "reference": "A", "amount": "1.00"}] * 11},
         "items"),
        (body(fund, email="not-an-email"), "email"),
        (body(fund, reference="x" * 101), "reference"),
        (body(fund, language="fr"), "language"),
    ]
    for payload, field in bad:
        resp = client.post(URL, json=payload)
        assert resp.status_code == 422, (field, resp.json)
        assert field in resp.json["errors"], (field, resp.json)
    assert client.post(URL, data="{not json", content_type="application/json").status_code == 400
    assert client.post(URL, json=["a list"]).status_code == 422
    assert client.get(f"{URL}/999999").status_code == 404
    assert session.query(PaymentRequest).count() == before


def test_payment_integration_role_may_only_create_and_read_requests(api, session):
    fund = make_fund(session)
    client = api("payint")
    assert client.get(URL + "/").status_code == 200
    for url in ("/api/v1/funds/", "/api/v1/transactions/", "/api/v1/refunds/", "/api/v1/tasks/"):
        assert client.get(url).status_code in (401, 403), url
    resp = client.post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": fund.code, "account_reference": "A1", "amount": "1.00"}]})
    assert resp.status_code in (401, 403)
    # a Cashier may not create requests; an Income Clerk may
    assert api("cashier").post(URL, json=body(fund)).status_code == 403
    assert api("clerk").post(URL, json=body(fund)).status_code == 201
    assert api("auditor").get(URL + "/").status_code == 200
    assert api("auditor").post(URL, json=body(fund)).status_code == 403


def test_citizen_returns_to_the_calling_system_through_the_portal(api, session, client):
    fund = make_fund(session, online=False)
    out = api("payint").post(URL, json=body(fund)).json
    req = session.get(PaymentRequest, out["id"])
    cp = CP.start_request_payment(session, req.token)
    back = pay(cp)
    path = urllib.parse.urlsplit(back).path
    client.get("/logout/")
    resp = client.get(path)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    target = urllib.parse.urlsplit(resp.headers["Location"])
    assert target.netloc == "localhost" and target.path == "/back"
    q = dict(urllib.parse.parse_qsl(target.query))
    assert q["status"] == "paid" and q["id"] == str(req.id) and q["receipt_number"]
    assert len(q["signature"]) == 64


def _requests_by(session, reference: str) -> int:
    session.expire_all()
    return session.query(PaymentRequest).filter(PaymentRequest.caller_reference == reference).count()


def test_idempotency_key_replays_the_first_request_and_refuses_another_body(api, session):
    fund = make_fund(session)
    client = api("payint")
    ref = unique("IDEM", 16)
    payload = body(fund, reference=ref)
    headers = {"Idempotency-Key": unique("k", 16)}
    first = client.post(URL, json=payload, headers=headers)
    assert first.status_code == 201, first.json
    # a retry (keys in another order: the same body) returns the same request and creates nothing
    again = client.post(URL, json=dict(reversed(list(payload.items()))), headers=headers)
    assert again.status_code == 201 and again.json["id"] == first.json["id"], again.json
    assert again.json["next_url"] == first.json["next_url"]
    assert _requests_by(session, ref) == 1
    # the replay shows the request as it is now
    CP.cancel_request(session, first.json["id"], actor="clerk")
    assert client.post(URL, json=payload, headers=headers).json["status"] == "cancelled"
    # the same key with another body: 422 naming the header, nothing created
    other = {**payload, "items": payload["items"][:1]}
    resp = client.post(URL, json=other, headers=headers)
    assert resp.status_code == 422 and "Idempotency-Key" in resp.json["errors"], resp.json
    assert _requests_by(session, ref) == 1
    # keys are per user: an Income Clerk's use of the same key is a new request
    clerk = api("clerk").post(URL, json=payload, headers=headers)
    assert clerk.status_code == 201 and clerk.json["id"] != first.json["id"]
    assert _requests_by(session, ref) == 2
    # without a key each POST is a new request; a blank or over-long key is a 422
    assert client.post(URL, json=payload).json["id"] != first.json["id"]
    for bad in (" ", "k" * 201, "k\x01"):
        resp = client.post(URL, json=payload, headers={"Idempotency-Key": bad})
        assert resp.status_code == 422 and "Idempotency-Key" in resp.json["errors"]
    assert _requests_by(session, ref) == 3


def test_a_refused_request_does_not_use_up_its_key(api, session):
    fund = make_fund(session)
    client = api("payint")
    ref = unique("IDEM", 16)
    headers = {"Idempotency-Key": unique("k", 16)}
    bad = client.post(URL, json=body(fund, reference=ref, email="not-an-email"), headers=headers)
    assert bad.status_code == 422 and "email" in bad.json["errors"]
    # the corrected request with the same key is created (the refused one claimed nothing)
    good = client.post(URL, json=body(fund, reference=ref), headers=headers)
    assert good.status_code == 201, good.json
    assert _requests_by(session, ref) == 1


def test_two_concurrent_posts_with_one_key_make_one_request(app, session):
    import threading

    from tests.conftest import api_token

    fund = make_fund(session)
    session.commit()
    ref = unique("IDEM", 16)
    payload = body(fund, reference=ref)
    headers = {"Idempotency-Key": unique("k", 16),
               "Authorization": f"Bearer {api_token(app.test_client(), 'payint')}"}
    barrier = threading.Barrier(2)
    results: list[tuple[int, dict]] = []

    def worker():
        client = app.test_client()
        barrier.wait()
        resp = client.post(URL, json=payload, headers=headers)
        results.append((resp.status_code, resp.json))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [code for code, _ in results] == [201, 201], results
    assert results[0][1]["id"] == results[1][1]["id"], results
    assert _requests_by(session, ref) == 1
