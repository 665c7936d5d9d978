"""In Chromium: a cashier takes a card payment by phone (MOTO) from the receipt page, on the
payment-provider simulator's MOTO card page, and prints the receipt; the ledger balances."""

import re

import pytest

from app.services import ledger as L
from tests.conftest import browser_login

pytestmark = pytest.mark.browser


def test_cashier_takes_a_moto_payment_and_prints_the_receipt(app, page, live_url):
    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    first = page.locator("tr.receipt-line").nth(0)
    first.locator("select[name=fund_code]").select_option("TWS")
    first.locator("input[name=account_reference]").fill("MOTO1")
    first.locator("input[name=amount]").fill("36.00")
    with page.expect_navigation():
        page.click("#card-phone")
    assert "/simulator/secure/" in page.url
    assert page.locator("#moto").count() == 1  # the provider's MOTO page
    assert page.locator("#amount").inner_text() == "£36.00"
    page.fill("#card_number", "4444 3333 2222 1111")
    with page.expect_navigation():
        page.click("#pay")
    page.wait_for_load_state()
    assert re.search(r"/receipts/R\d+/print$", page.url), page.url
    assert "£36.00" in page.locator("#receipt-total").inner_text()
    assert "MOTO1" in page.locator("body").inner_text()
    with app.app_context():
        from app.extensions import db

        assert not L.unbalanced_groups(db.session)
        db.session.remove()
