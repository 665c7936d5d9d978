"""app/services/portal.py: public checks tell the public only what it may know."""

from __future__ import annotations

from sqlalchemy import select

from app.models.reference import Fund
from app.services import portal


def _msg(check, fld):
    return str(check.errors.get(fld)) if check.errors.get(fld) is not None else None


def test_a_good_item_passes(session, online):
    check = portal.public_check(session, online["fund"], online["open"].lower(), 1234)
    assert check.ok, check.errors
    assert check.reference == online["open"]


def test_every_reference_failure_gives_the_same_message(session, online):
    fund = online["fund"]
    messages = {}
    for name in ("stopped", "missing", "bad_digit"):
        check = portal.public_check(session, fund, online[name], 1000)
        assert set(check.errors) == {"reference"}, (name, check.errors)
        messages[name] = _msg(check, "reference")
    for bad in ("HR12", "XX1234567", "HR12345678901", "HR 12/345"):
        check = portal.public_check(session, fund, bad, 1000)
        messages[bad] = _msg(check, "reference")
    assert len(set(messages.values())) == 1, messages
    message = messages["stopped"]
    assert message == ("Check your rent account number – 9 characters starting HR, on your "
                       "rent card")
    # never the holder's name, the staff stop reason or which rule failed
    for secret in (online["holder"], online["stop_reason"], "stop", "exist", "digit", "short"):
        assert secret.lower() not in message.lower()


def test_characters_the_public_may_not_type_are_refused_with_the_same_message(session, online):
    good = portal.public_check(session, online["fund"], online["missing"], 1000)
    for bad in ("HR<script>", "HR12345;6", "HR\u00a0123456", "x" * 31):
        check = portal.public_check(session, online["fund"], bad, 1000)
        assert _msg(check, "reference") == _msg(good, "reference")


def test_public_stop_message_is_shown_for_every_reference_failure(session, online):
    fund = online["fund"]
    fund.public_stop_message = "If your account is right, phone 01234 567890 to pay."
    fund.public_stop_message_cy = "Os yw eich cyfrif yn gywir, ffoniwch 01234 567890 i dalu."
    session.commit()
    stopped = _msg(portal.public_check(session, fund, online["stopped"], 1000), "reference")
    missing = _msg(portal.public_check(session, fund, online["missing"], 1000), "reference")
    assert stopped == missing
    assert "phone 01234 567890" in stopped
    assert online["stop_reason"] not in stopped


def test_welsh_texts_on_a_welsh_page(app, session, online):
    with app.test_request_context("/pay/"):
        from flask import session as web_session
        from flask_babel import refresh

        web_session["locale"] = "cy"
        refresh()
        message = _msg(portal.public_check(session, online["fund"], online["missing"], 1), "reference")
        assert "rhif cyfrif rhent" in message and "ar eich cerdyn rhent" in message
        assert online["fund"].public_title() == "Rhent"
        assert repr(online["fund"]) == "HRA – Rhent"  # the staff portal's Welsh name
    assert online["fund"].public_title("en") == "Rent"


def test_amounts(session, online):
    fund = online["fund"]
    assert portal.parse_amount("12.50") == (1250, None)
    assert portal.parse_amount("£1,234.50") == (123450, None)
    for bad in ("", "  ", "abc", "1.234", "-5", "1e3", "12,34"):
        pence, message = portal.parse_amount(bad)
        assert pence is None and message is not None, bad
    assert portal.parse_amount("0")[1] == portal.AMOUNT_ZERO
    too_much = portal.public_check(session, fund, online["open"], fund.maximum_amount + 1)
    assert _msg(too_much, "amount") == "The amount must be £5000.00 or less"
    assert "reference" not in too_much.errors


def test_funds_not_online(session, online):
    tws = session.scalar(select(Fund).where(Fund.code == "TWS"))
    assert portal.online_fund(session, "TWS") is None  # not offered online
    assert portal.online_fund(session, "NOPE") is None
    assert portal.online_fund(session, "HRA\x00") is None
    assert portal.online_fund(session, "hra") is online["fund"]
    check = portal.public_check(session, tws, "123", 100)
    assert check.errors == {"fund": portal.NOT_AVAILABLE}
    online["fund"].disabled = True
    session.commit()
    try:
        assert portal.online_fund(session, "HRA") is None
        assert online["fund"] not in portal.online_funds(session)
    finally:
        online["fund"].disabled = False
        session.commit()
    assert online["fund"] in portal.online_funds(session)


def test_basket(session, online, app):
    basket = portal.new_basket(session)
    fund = online["fund"]
    assert [str(p) for p in portal.recheck_basket(session, basket)] == [
        "Your basket is empty. Add something to pay for first."]
    assert portal.add_item(basket, fund, online["open"], 500) is None
    dup = portal.public_check(session, fund, online["open"], 100, basket=basket.items)
    assert dup.errors == {"reference": portal.IN_BASKET}
    assert portal.recheck_basket(session, basket) == []
    assert portal.payer_fields(session, basket) == ["email"]
    app.config["IMS_BASKET_MAX_ITEMS"] = 2
    try:
        assert portal.add_item(basket, fund, online["missing"], 1) is None
        full = portal.add_item(basket, fund, "HR0000000", 1)
        assert str(full) == "Your basket is full: you can pay for up to 2 items at a time"
        problems = portal.recheck_basket(session, basket)  # item 2 no longer passes
        assert len(problems) == 1 and str(problems[0]).startswith("Item 2 cannot be paid")
    finally:
        app.config["IMS_BASKET_MAX_ITEMS"] = 10
    assert portal.remove_item(basket, 1) and not portal.remove_item(basket, 5)
    assert len(basket.items) == 1
    assert portal.find_basket(session, basket.token) is basket
    assert portal.find_basket(session, "short") is None
    session.rollback()


def test_payer_details():
    payer, errors = portal.validate_payer(["name", "email", "address"], {})
    assert set(errors) == {"name", "email", "address"}
    payer, errors = portal.validate_payer(["email"], {"email": "not-an-email"})
    assert set(errors) == {"email"}
    payer, errors = portal.validate_payer(["email"], {"email": " a@b.cy ", "name": "A\x07"})
    assert payer["email"] == "a@b.cy" and set(errors) == {"name"}
