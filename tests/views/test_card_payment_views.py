"""Staff card-payment pages: the list with filters (Income Clerk, Finance Manager, Auditor read),
a payment's page, a cashier's card payment by phone (MOTO) ending on the printable receipt, and
an Income Clerk's payment requests (create, list, cancel)."""

from __future__ import annotations

from sqlalchemy import select

from app.models.card_payment import CardPayment, PaymentRequest
from app.services import card_payments as CP
from tests.conftest import unique
from tests.integration.test_card_payments import basket, make_fund, pay


def test_list_and_filters_for_readers(as_user, session):
    fund = make_fund(session)
    open_cp = CP.start_payment(session, items=basket(fund, 321), channel="online")
    failed = CP.start_payment(session, items=basket(fund, 654), channel="online")
    pay(failed, "4000000000000002")
    CP.confirm_payment(session, failed.token)
    for user in ("clerk", "manager", "auditor"):
        client = as_user(user)
        page = client.get("/card-payments/?status=failed")
        assert page.status_code == 200, user
        text = page.get_data(as_text=True)
        assert f'data-card-payment="{failed.id}"' in text
        assert f'data-card-payment="{open_cp.id}"' not in text
    client = as_user("clerk")
    text = client.get("/card-payments/?status=created&channel=online").get_data(as_text=True)
    assert f'data-card-payment="{open_cp.id}"' in text
    ref = open_cp.items[0]["reference"]
    found = client.get(f"/card-payments/?q={ref}").get_data(as_text=True)
    assert f'data-card-payment="{open_cp.id}"' in found
    assert client.get("/card-payments/?status=bogus").status_code == 422
    assert client.get("/card-payments/?date_from=31/31/2026").status_code == 422
    assert client.get(f"/card-payments/{open_cp.id}").status_code == 200
    assert client.get("/card-payments/999999").status_code == 404
    # "ask the provider now" after the citizen paid and vanished
    pay(open_cp)
    resp = client.post(f"/card-payments/{open_cp.id}/check")
    assert resp.status_code == 302
    session.expire_all()
    assert session.get(CardPayment, open_cp.id).status == "paid"


def test_cashier_takes_a_card_payment_by_phone(as_user, session):
    fund = make_fund(session, online=False)
    client = as_user("cashier")
    refs = [unique("MO", 10), unique("MO", 10)]
    resp = client.post("/card-payments/moto", data={
        "fund_code": [fund.code, fund.code], "account_reference": refs,
        "amount": ["10.00", "£2.50"], "vat_code": ["", ""], "narrative": ["", ""]})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    cp = session.scalar(select(CardPayment).where(CardPayment.channel == "moto")
                        .order_by(CardPayment.id.desc()).limit(1))
    assert resp.headers["Location"] == cp.next_url and cp.amount == 1250
    assert cp.created_by == "cashier"
    state = CP.provider().get_payment(cp.provider_payment_id)
    assert state.moto is True
    back = pay(cp)
    assert back.endswith(f"/card-payments/moto/{cp.token}")
    resp = client.get(f"/card-payments/moto/{cp.token}")
    assert resp.status_code == 302
    session.expire_all()
    cp = session.get(CardPayment, cp.id)
    assert cp.status == "paid" and resp.headers["Location"].endswith(f"/receipts/{cp.receipt_number}/print")
    printed = client.get(f"/receipts/{cp.receipt_number}/print")
    assert printed.status_code == 200 and refs[0] in printed.get_data(as_text=True)
    # the second visit shows the same receipt
    assert client.get(f"/card-payments/moto/{cp.token}").headers["Location"] == resp.headers["Location"]


def test_moto_bad_input_goes_back_to_the_receipt_page(as_user, session):
    client = as_user("cashier")
    before = session.query(CardPayment).count()
    resp = client.post("/card-payments/moto", data={"fund_code": ["NOPE"], "account_reference": ["A"],
                                                    "amount": ["1.00"]})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/receipts/new")
    resp = client.post("/card-payments/moto", data={"fund_code": [""], "account_reference": [""],
                                                    "amount": ["abc"]})
    assert resp.status_code == 302
    assert session.query(CardPayment).count() == before
    assert as_user("auditor").post("/card-payments/moto", data={}).status_code in (302, 403)
    assert session.query(CardPayment).count() == before


def test_receipt_page_offers_card_by_phone(as_user):
    text = as_user("cashier").get("/receipts/new").get_data(as_text=True)
    assert 'id="card-phone"' in text and "/card-payments/moto" in text


def test_clerk_creates_lists_and_cancels_a_payment_request(as_user, session):
    fund = make_fund(session)
    client = as_user("clerk")
    assert client.get("/payment-requests/new").status_code == 200
    bad = client.post("/payment-requests/new", data={"fund_code": fund.code, "reference": "R1",
                                                     "amount": "12.345", "email": "a@b.org"})
    assert bad.status_code == 422
    ref = unique("PQ", 10)
    resp = client.post("/payment-requests/new", data={"fund_code": fund.code, "reference": ref,
                                                      "amount": "42.00", "email": "payer@example.org",
                                                      "name": "Payer"})
    assert resp.status_code == 302
    req = session.scalar(select(PaymentRequest).order_by(PaymentRequest.id.desc()).limit(1))
    assert req.amount == 4200 and req.email == "payer@example.org" and req.created_by == "clerk"
    text = client.get("/payment-requests/").get_data(as_text=True)
    assert f'data-request="{req.id}"' in text and f"/pay/request/{req.token}" in text
    assert client.post(f"/payment-requests/{req.id}/cancel").status_code == 302
    session.expire_all()
    assert session.get(PaymentRequest, req.id).status == "cancelled"
    assert client.post(f"/payment-requests/{req.id}/cancel").status_code == 302  # flashed refusal
    assert session.get(PaymentRequest, req.id).status == "cancelled"
    # a Cashier may not create requests
    assert as_user("cashier").get("/payment-requests/new").status_code in (302, 403)
