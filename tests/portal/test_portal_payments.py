"""A citizen pays through the portal: checkout → the simulator's hosted card page (the real
GOV.UK Pay adapter over HTTP) → the return page, which asks the provider for the state."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from app.models.card_payment import CardPayment
from app.models.ledger import Transaction


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _checkout(client, online, amounts=("12.50",), email="payer@example.com"):
    client.post("/pay/item/HRA", data={"reference": online["open"], "amount": amounts[0]})
    client.post("/pay/details", data={"email": email})
    resp = client.post("/pay/check")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    next_url = resp.headers["Location"]
    assert "/simulator/secure/" in next_url
    return next_url


def _pay(client, next_url, card="4444333322221111", action="pay"):
    resp = client.post(_path(next_url), data={"card_number": card, "action": action})
    assert resp.status_code == 303
    return resp.headers["Location"]


def test_paid_through_the_simulator_shows_the_receipt_twice_the_same(client, session, online):
    next_url = _checkout(client, online)
    back = _pay(client, next_url)
    assert "/pay/return/" in back
    first = client.get(_path(back))
    body = first.get_data(as_text=True)
    assert first.status_code == 200 and "Payment complete" in body
    token = _path(back).rsplit("/", 1)[-1]
    session.expire_all()
    cp = session.scalar(select(CardPayment).where(CardPayment.token == token))
    assert cp.status == "paid" and cp.receipt_number and cp.receipt_number in body
    assert cp.amount == 1250 and cp.payer_email == "payer@example.com" and cp.language == "en"
    # the ledger has the receipt, with the amount from the server-side basket
    posted = session.scalars(select(Transaction).where(
        Transaction.receipt_number == cp.receipt_number)).all()
    assert sum(t.amount for t in posted) == 1250
    # the same return visited again shows the same receipt and posts nothing more
    again = client.get(_path(back)).get_data(as_text=True)
    assert cp.receipt_number in again
    assert len(session.scalars(select(Transaction).where(
        Transaction.receipt_number == cp.receipt_number)).all()) == len(posted)
    # the basket is empty after paying
    assert "Your basket is empty" in client.get("/pay/basket").get_data(as_text=True)


def test_declined_and_cancelled_return_to_the_basket(client, session, online):
    back = _pay(client, _checkout(client, online), card="4000000000000002")
    body = client.get(_path(back)).get_data(as_text=True)
    assert "Your payment has not been taken" in body and 'href="/pay/basket"' in body
    assert online["open"] in client.get("/pay/basket").get_data(as_text=True)
    # paying again from the same basket, then cancelling
    resp = client.post("/pay/check")
    back = _pay(client, resp.headers["Location"], action="cancel")
    body = client.get(_path(back)).get_data(as_text=True)
    assert "Your payment was cancelled" in body
    assert online["open"] in client.get("/pay/basket").get_data(as_text=True)


def test_a_return_from_another_browser_rebuilds_no_one_elses_basket(client, app, session, online):
    back = _pay(client, _checkout(client, online), card="4000000000000002")
    other = app.test_client()
    body = other.get(_path(back)).get_data(as_text=True)
    assert "Your payment has not been taken" in body
    # the failed payment's items are put in that browser's basket to try again (they are not
    # secret to whoever holds the return link, which is as secret as the payment's token)
    assert online["open"] in other.get("/pay/basket").get_data(as_text=True)


def test_welsh_language_goes_to_the_provider(client, session, online):
    client.get("/pay/language/cy")
    next_url = _checkout(client, online)
    page = client.get(_path(next_url)).get_data(as_text=True)
    assert 'lang="cy"' in page
    cp = session.scalar(select(CardPayment).order_by(CardPayment.id.desc()).limit(1))
    assert cp.language == "cy"


def test_checkout_is_rate_limited(client, app, online):
    app.config["PORTAL_CHECKOUT_RATE_LIMIT"] = "1 per minute"
    try:
        env = {"REMOTE_ADDR": "203.0.113.9"}
        client.post("/pay/item/HRA", data={"reference": online["open"], "amount": "1.00"},
                    environ_base=env)
        client.post("/pay/details", data={"email": "a@example.com"}, environ_base=env)
        assert client.post("/pay/check", environ_base=env).status_code == 302
        resp = client.post("/pay/check", environ_base=env)
        assert resp.status_code == 429 and "tried too many times" in resp.get_data(as_text=True)
    finally:
        app.config["PORTAL_CHECKOUT_RATE_LIMIT"] = "10 per minute"


def test_payment_request_link(client, session, online):
    from app.services import card_payments

    req = card_payments.create_request(session, items=[
        {"fund_code": "HRA", "reference": online["open"], "amount": "20.00"}],
        actor="clerk", email="payer@example.com")
    session.commit()
    page = client.get(f"/pay/request/{req.token}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and online["open"] in body and "£20.00" in body
    resp = client.post(f"/pay/request/{req.token}")
    assert resp.status_code == 302 and "/simulator/secure/" in resp.headers["Location"]
    back = _pay(client, resp.headers["Location"])
    body = client.get(_path(back)).get_data(as_text=True)
    assert "Payment complete" in body
    session.expire_all()
    closed = client.get(f"/pay/request/{req.token}")
    assert closed.status_code == 410 and "It has been paid" in closed.get_data(as_text=True)
