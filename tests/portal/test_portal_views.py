"""The /pay pages: each page, bad input, CSRF, rate limits, and the whole flow through the
payment-provider simulator (over HTTP when it runs; see the browser tests)."""

from __future__ import annotations

import re

import pytest

from app.models.portal import PortalBasket


def _text(resp) -> str:
    return resp.get_data(as_text=True)


def _add(client, code, reference, amount):
    return client.post(f"/pay/item/{code}", data={"reference": reference, "amount": amount})


def test_start_page_lists_only_online_funds(client, online):
    resp = client.get("/pay/")
    assert resp.status_code == 200
    body = _text(resp)
    assert "Rent" in body and "Trade Waste" not in body
    assert "govuk-generic-header" in body and "Llanwern County Council" in body
    assert 'lang="en"' in body and "Cymraeg" in body
    assert "<script>" not in body and "onclick" not in body  # CSP: no inline script
    assert re.search(r'<script type="module" src="/static/portal/portal.js" nonce="[^"]+">', body)


def test_welsh_pages(client, online):
    resp = client.get("/pay/language/cy?next=/pay/what")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/pay/what")
    body = _text(client.get("/pay/what"))
    assert 'lang="cy"' in body and "Rhent" in body
    body = _text(client.get("/pay/item/HRA"))
    assert "Rhif cyfrif rhent" in body and "9 nod yn dechrau HR" in body
    client.get("/pay/language/en?next=https://evil.example/")
    assert client.get("/pay/language/fr").status_code == 404


def test_language_switch_never_leaves_the_portal(client, online):
    for target in ("https://evil.example/", "//evil.example/", "/admin", "/\\evil.example"):
        resp = client.get("/pay/language/en", query_string={"next": target})
        assert resp.headers["Location"].endswith("/pay/"), target


def test_choose_fund(client, online):
    resp = client.post("/pay/what", data={})
    assert resp.status_code == 400 and "Select what you want to pay for" in _text(resp)
    assert "govuk-error-summary" in _text(resp)
    resp = client.post("/pay/what", data={"fund": "TWS"})
    assert resp.status_code == 400 and "You cannot pay for this online" in _text(resp)
    resp = client.post("/pay/what", data={"fund": "HRA"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/pay/item/HRA")


@pytest.mark.parametrize("code", ["TWS", "NOPE", "SUSP", "x" * 40])
def test_funds_not_offered_online(client, online, code):
    resp = client.get(f"/pay/item/{code}")
    assert resp.status_code == 404 and "You cannot pay for this online" in _text(resp)
    assert _add(client, code, "123", "1.00").status_code == 404


def test_disabled_fund(client, session, online):
    online["fund"].disabled = True
    session.commit()
    try:
        assert client.get("/pay/item/HRA").status_code == 404
    finally:
        online["fund"].disabled = False
        session.commit()


def test_item_errors_use_one_message_for_any_reference_failure(client, online):
    bodies = []
    for name in ("stopped", "missing", "bad_digit"):
        resp = _add(client, "HRA", online[name], "10.00")
        assert resp.status_code == 400
        body = _text(resp)
        assert "There is a problem" in body and 'href="#reference"' in body
        assert online["holder"] not in body and online["stop_reason"] not in body
        msg = re.search(r'<p id="reference-error" class="govuk-error-message">(.*?)</p>', body, re.S)
        bodies.append(msg.group(1))
    assert len(set(bodies)) == 1
    resp = _add(client, "HRA", online["open"], "abc")
    assert resp.status_code == 400 and "Enter the amount in pounds and pence" in _text(resp)
    resp = _add(client, "HRA", "", "")
    assert "Enter your reference" in _text(resp) and "Enter the amount you want to pay" in _text(resp)
    resp = _add(client, "HRA", online["open"], "5000.01")
    assert "The amount must be £5000.00 or less" in _text(resp)
    # the typed values come back escaped
    resp = _add(client, "HRA", '"><script>alert(1)</script>', "1")
    assert "<script>alert(1)</script>" not in _text(resp)


def test_basket_add_remove_empty(client, session, online):
    assert "Your basket is empty" in _text(client.get("/pay/basket"))
    resp = _add(client, "HRA", online["open"].lower(), "12.50")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/pay/basket")
    body = _text(client.get("/pay/basket"))
    assert online["open"] in body and "£12.50" in body and "Your basket (1)" in body
    resp = _add(client, "HRA", online["open"], "1.00")
    assert "already in your basket" in _text(resp)
    assert client.post("/pay/basket/remove/5").status_code == 302  # no such item: nothing happens
    assert "£12.50" in _text(client.get("/pay/basket"))
    client.post("/pay/basket/remove/1")
    assert "Your basket is empty" in _text(client.get("/pay/basket"))
    _add(client, "HRA", online["open"], "2.00")
    client.post("/pay/basket/empty")
    assert "Your basket is empty" in _text(client.get("/pay/basket"))
    # with an empty basket the next steps go back to the basket
    for url in ("/pay/basket/continue", "/pay/details", "/pay/check"):
        assert client.get(url).headers["Location"].endswith("/pay/basket")
    assert client.post("/pay/check").headers["Location"].endswith("/pay/basket")


def test_basket_full(client, app, online):
    app.config["IMS_BASKET_MAX_ITEMS"] = 1
    try:
        _add(client, "HRA", online["open"], "1.00")
        assert "Your basket is full" in _text(client.get("/pay/basket"))
        resp = _add(client, "HRA", online["missing"][:-1] + "0", "1.00")
        assert resp.status_code == 400
    finally:
        app.config["IMS_BASKET_MAX_ITEMS"] = 10


def test_amounts_come_from_the_server_side_basket(client, session, online):
    _add(client, "HRA", online["open"], "12.50")
    with client.session_transaction() as s:
        token = s["portal_basket"]
    basket = session.query(PortalBasket).filter_by(token=token).one()
    assert basket.items == [{"fund_code": "HRA", "reference": online["open"], "amount": 1250}]
    # the browser holds only the token
    with client.session_transaction() as s:
        assert set(s.keys()) & {"items", "amount"} == set()


def test_payer_details_when_a_fund_asks(client, online):
    _add(client, "HRA", online["open"], "12.50")
    assert client.get("/pay/basket/continue").headers["Location"].endswith("/pay/details")
    resp = client.post("/pay/details", data={"email": "nope"})
    assert resp.status_code == 400 and "correct format" in _text(resp)
    resp = client.post("/pay/details", data={"email": "payer@example.com"})
    assert resp.headers["Location"].endswith("/pay/check")
    body = _text(client.get("/pay/check"))
    assert "payer@example.com" in body and "Pay £12.50 by card" in body
    assert client.get("/pay/basket/continue").headers["Location"].endswith("/pay/check")


def test_check_page_refuses_a_basket_that_no_longer_passes(client, session, online):
    _add(client, "HRA", online["open"], "12.50")
    client.post("/pay/details", data={"email": "payer@example.com"})
    online["fund"].offered_online = False
    session.commit()
    try:
        resp = client.post("/pay/check")
        assert resp.status_code == 400 and "Item 1 cannot be paid" in _text(resp)
    finally:
        online["fund"].offered_online = True
        session.commit()


def test_csrf_on_every_form(client, app, online):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        for url in ("/pay/what", "/pay/item/HRA", "/pay/basket/remove/1", "/pay/basket/empty",
                    "/pay/details", "/pay/check", "/pay/request/" + "a" * 32):
            resp = client.post(url, data={"fund": "HRA"})
            assert resp.status_code == 400, url
        body = _text(client.get("/pay/item/HRA"))
        token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
        resp = client.post("/pay/item/HRA", data={"csrf_token": token, "reference": online["open"],
                                                  "amount": "1.00"})
        assert resp.status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_reference_checks_are_rate_limited_per_address(client, app, online):
    app.config["PORTAL_CHECK_RATE_LIMIT"] = "3 per minute"
    try:
        env = {"REMOTE_ADDR": "198.51.100.7"}
        codes = [client.post("/pay/item/HRA", data={"reference": online["missing"], "amount": "1"},
                             environ_base=env).status_code for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        resp = client.post("/pay/item/HRA", data={"reference": online["open"], "amount": "1"},
                           environ_base=env)
        assert resp.status_code == 429 and "tried too many times" in _text(resp)
        other = client.post("/pay/item/HRA", data={"reference": online["missing"], "amount": "1"},
                            environ_base={"REMOTE_ADDR": "198.51.100.8"})
        assert other.status_code == 400
    finally:
        app.config["PORTAL_CHECK_RATE_LIMIT"] = "30 per minute"


def test_unknown_return_and_request(client, online):
    for url in ("/pay/return/" + "x" * 32, "/pay/return/short"):
        resp = client.get(url)
        assert resp.status_code == 404 and "Payment not found" in _text(resp)
    resp = client.get("/pay/request/" + "y" * 32)
    assert resp.status_code == 404 and "Payment request not found" in _text(resp)
    assert client.get("/pay/request/\x00").status_code in (400, 404)


def test_security_headers(client, online):
    resp = client.get("/pay/")
    assert "script-src 'self' 'nonce-" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_staff_edit_a_funds_portal_settings(client, as_user, session, online):
    from sqlalchemy import select

    from app.models.reference import Fund

    admin = as_user("admin")
    fund = session.scalar(select(Fund).where(Fund.code == "LIB"))
    page = _text(admin.get(f"/fundview/edit/{fund.id}"))
    for label in ("Offered online", "Public name (Welsh)", "Reference help text (Welsh)",
                  "Public stop message", "email"):
        assert label in page, label
    form = {"name": fund.name, "gl_code": fund.gl_code or "", "vat": str(fund.vat.id) if fund.vat else "",
            "maximum_amount": "500.00", "validator": str(fund.validator_id or ""),
            "offered_online": "y", "public_name": "Library fines", "public_name_cy": "Dirwyon llyfrgell",
            "reference_label": "Library card number", "reference_label_cy": "Rhif cerdyn llyfrgell",
            "reference_help": "10 digits", "reference_help_cy": "10 digid",
            "public_stop_message": "", "public_stop_message_cy": "", "ask_payer_name": "y"}
    try:
        resp = admin.post(f"/fundview/edit/{fund.id}", data=form)
        problems = re.findall(r"help-block\">([^<]+)<|alert-danger[^>]*>([^<]+)", _text(resp))
        assert resp.status_code == 302, [m for m in problems if any(x.strip() for x in m)]
        session.expire_all()
        fund = session.scalar(select(Fund).where(Fund.code == "LIB"))
        assert fund.offered_online and fund.public_name_cy == "Dirwyon llyfrgell" and fund.ask_payer_name
        client.get("/logout/")
        assert "Library fines" in _text(client.get("/pay/"))
        bad = dict(form, public_name_cy="x" * 101)
        admin = as_user("admin")
        resp = admin.post(f"/fundview/edit/{fund.id}", data=bad)
        assert resp.status_code == 200 and "100 characters" in _text(resp)
    finally:
        fund = session.scalar(select(Fund).where(Fund.code == "LIB"))
        fund.offered_online, fund.ask_payer_name = False, False
        for k in ("public_name", "public_name_cy", "reference_label", "reference_label_cy",
                  "reference_help", "reference_help_cy"):
            setattr(fund, k, None)
        fund.maximum_amount = 50_000
        session.commit()


def test_staff_pages_show_the_welsh_fund_name(client, as_user, session, online):
    clerk = as_user("clerk")
    clerk.get("/lang/cy")
    body = _text(clerk.get("/receipts/new"))
    assert "HRA – Rhent" in body
    clerk.get("/lang/en")
    assert "HRA – Housing Rents" in _text(clerk.get("/receipts/new"))


def test_council_name_and_logo_from_config(client, app, online):
    app.config.update(PORTAL_COUNCIL_NAME="Cyngor Sir Llanwern", PORTAL_LOGO_URL="/static/logo.png")
    try:
        body = _text(client.get("/pay/"))
        assert "Cyngor Sir Llanwern" in body
        assert '<img class="ims-portal-logo" src="/static/logo.png" alt="">' in body
        assert "crown" not in body.lower()
    finally:
        app.config.update(PORTAL_COUNCIL_NAME="", PORTAL_LOGO_URL="")
