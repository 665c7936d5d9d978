"""One money style, rates as percentages and UK dates through Babel, in English and Welsh
(issue 21 item 1): every page and message goes through app.formatting / app.domain.money."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.domain.money import Money, gbp, percent
from tests.conftest import login, unique

RAW_MONEY = re.compile(r"£\d{4,}(?:\.\d\d)?\b")  # "£2940.24": no thousands separator


@pytest.mark.parametrize("pence, text", [(294024, "£2,940.24"), (5000, "£50.00"), (5, "£0.05"),
                                         (-5000, "-£50.00"), (123456789, "£1,234,567.89"),
                                         (0, "£0.00")])
def test_gbp(pence, text):
    assert gbp(pence) == text
    assert Money(pence).display() == text
    assert str(Money(pence)) != text or pence in (5, 0, 5000)  # the API keeps "2940.24"


@pytest.mark.parametrize("rate, text", [(Decimal("0.2"), "20%"), (Decimal("0.2000"), "20%"),
                                        (Decimal("0.175"), "17.5%"), (Decimal("0"), "0%"),
                                        (Decimal("0.05"), "5%")])
def test_percent(rate, text):
    assert percent(rate) == text


def test_vat_code_shows_twenty_percent_not_exponent(app):
    from app.models.reference import VatCode

    assert repr(VatCode(code="S", name="Standard", rate=Decimal("0.2000"))) == "S (20%)"


def test_dates_days_and_money_in_english_and_welsh(app):
    from app.formatting import age_days, days, money, when

    moment = dt.datetime(2026, 12, 6, 7, 23, 32, 564100, tzinfo=dt.timezone.utc)
    with app.test_request_context("/"):
        from flask import session as web_session

        web_session["locale"] = "en"
        assert when(moment.date()) == "6 December 2026"
        assert when(moment) == "6 Dec 2026 07:23"  # December: GMT
        assert when(dt.datetime(2026, 7, 1, 7, 23)) == "1 Jul 2026 08:23"  # naive = UTC, shown BST
        assert when("2026-12-06") == "6 December 2026"
        assert days(1) == "1 day" and days(2) == "2 days" and days(0) == "0 days"
        assert age_days(dt.date.today() - dt.timedelta(days=1)) == "1 day"
        assert money(294024) == "£2,940.24"
    from flask_babel import force_locale

    with app.test_request_context("/"), force_locale("cy"):
        assert when(moment.date()) == "6 Rhagfyr 2026"
        assert when(moment) == "6 Rhag 2026 07:23"
        assert days(1) == "1 diwrnod" and days(2) == "2 ddiwrnod" and days(5) == "5 diwrnod"
        assert money(294024) == "£2,940.24"


def test_vat_list_shows_rate_as_percent(as_user):
    client = as_user("admin")
    for lang in ("en", "cy"):
        client.get(f"/lang/{lang}")
        # The standard rate by its code (equal to): the list is paged, other tests add codes.
        page = client.get("/vatcodeview/list/?_flt_3_code=S").data.decode()
        assert "20%" in page and "E+" not in page and "0.2000" not in page
    client.get("/lang/en")
    page = client.get("/fundview/list/").data.decode()
    assert "E+" not in page


def test_refund_flash_has_pound_sign_and_separator(app, client, session):
    from app.models.ledger import Transaction
    from app.services.receipts import take_receipt

    receipt = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": "FMT-1",
                                            "amount": "2940.24"}],
                           payment_method_code="CARD", actor="cashier",
                           external_reference=unique("pay-fmt-"))
    session.commit()
    txn = session.scalar(select(Transaction).where(
        Transaction.receipt_number == receipt.receipt_number))
    login(client, "clerk")
    page = client.get(f"/transactions/{txn.id}").data.decode()
    assert "£2,940.24" in page and not RAW_MONEY.search(page)
    form = client.get(f"/refunds/new/{txn.id}").data.decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
    data = {"amount": "50.00", "reason": "Paid twice", "method": "card",
            "payee_name": "", "sort_code": "", "account_number": ""}
    if token:
        data["csrf_token"] = token.group(1)
    resp = client.post(f"/refunds/new/{txn.id}", data=data, follow_redirects=True)
    body = resp.data.decode()
    assert re.search(r"Refund \d+ of £50\.00 requested", body), body[:3000]
    assert not RAW_MONEY.search(body)


def test_suspense_age_is_pluralised_and_dated(session, as_user):
    from tests.integration.test_suspense_service import make_item

    item = make_item(session, 1_533_07, reference=unique("AGE"), days_old=1)
    client = as_user("clerk")
    page = client.get(f"/suspense/{item.id}").data.decode()
    assert "(1 day)" in page and "1 days" not in page
    assert when_text(item.transaction_date) in page
    assert "£1,533.07" in page and not RAW_MONEY.search(page)
    queue = client.get(f"/suspense/?q={item.reference_text}").data.decode()
    assert "1 day" in queue and "1 days" not in queue


def when_text(d: dt.date) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"
