"""In Chromium: a cashier takes a two-line payment (inline validation of a bad reference), posts and
sees the printable receipt; a clerk journals part of it and undoes the journal."""

import random
import re

import pytest
from sqlalchemy import select

from app.models.reference import Fund
from app.services.seed import make_reference
from tests.conftest import browser_login, once_on_sqlite

pytestmark = pytest.mark.browser


def test_cashier_receipt_then_clerk_journal_and_undo(app, page, live_url):
    from app.extensions import db

    with app.app_context():
        fund = db.session.scalar(select(Fund).where(Fund.code == "CTAX"))
        good = make_reference(fund.validator, random.Random(4242))
        db.session.remove()
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")

    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    page.select_option("#payment_method_code", "CASH")
    rows = page.locator("tr.receipt-line")
    first, second = rows.nth(0), rows.nth(1)
    first.locator("select[name=fund_code]").select_option("CTAX")
    first.locator("input[name=account_reference]").fill(bad)
    first.locator("input[name=amount]").focus()  # leave the reference field
    msg = first.locator(".line-msg-account_reference")
    msg.filter(has_text="Check digit").wait_for()
    assert "Check digit is wrong" in msg.inner_text()
    first.locator("input[name=account_reference]").fill(good)
    first.locator("input[name=amount]").fill("100.00")
    first.locator("input[name=narrative]").click()
    page.wait_for_function(
        "() => !document.querySelector('tr.receipt-line .line-msg-account_reference').textContent.includes('Check digit')")
    second.locator("select[name=fund_code]").select_option("TWS")
    second.locator("input[name=account_reference]").fill("BRW1")
    second.locator("input[name=amount]").fill("12.00")
    second.locator("input[name=narrative]").fill("Trade waste sacks")
    assert page.locator("#receipt-total").inner_text() == "£112.00"
    with page.expect_navigation():
        page.click("#post-receipt")
    assert re.search(r"/receipts/R\d+/print$", page.url)
    number = page.url.rsplit("/", 2)[-2]
    body = page.locator("body").inner_text()
    assert app.config["COUNCIL_NAME"] in body and app.config["COUNCIL_VAT_NUMBER"] in body
    assert number in page.locator("#receipt-number").inner_text()
    assert "£112.00" in page.locator("#receipt-total").inner_text()
    assert page.locator("#vat-summary tbody tr").count() == 2  # O (council tax) and S (trade waste)

    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/transactions/?receipt_number={number}&fund=TWS")
    page.locator("#results tbody a").first.click()
    page.wait_for_load_state()
    assert "£12.00" in page.locator("#available").inner_text()
    page.click("#journal-link")
    page.wait_for_load_state()
    page.select_option("#target-lines select[name=fund_code]", "TWS")
    page.fill("#target-lines input[name=account_reference]", "BRW2")
    page.fill("#target-lines input[name=amount]", "5.00")
    page.fill("#reason", "Part paid to the wrong account")
    with page.expect_navigation():
        page.click("#post-journal")
    assert "£7.00" in page.locator("#available").inner_text()
    assert page.locator("#related-journals").count() == 1
    page.fill(".undo-form input[name=reason]", "Journalled in error")
    with page.expect_navigation():
        page.click(".undo-form button[type=submit]")
    assert "£12.00" in page.locator("#available").inner_text()
    assert "Undone by" in page.locator("#related-journals").inner_text()


def test_a_late_answer_to_an_earlier_check_does_not_wipe_the_reference_message(app, page, live_url):
    """Choosing the fund checks the line (no reference yet); leaving the reference checks it again.
    The answers can come back in either order (the server runs them at once): the first one's,
    arriving last, wiped the check-digit message (CI saw it). Here the first is held back."""
    from app.extensions import db

    with app.app_context():
        fund = db.session.scalar(select(Fund).where(Fund.code == "CTAX"))
        good = make_reference(fund.validator, random.Random(4243))
        db.session.remove()
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    held = []

    def hold_the_fund_check(route):
        if route.request.post_data_json.get("account_reference") == "":
            held.append(route)
        else:
            route.continue_()

    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    page.route("**/receipts/validate", hold_the_fund_check)
    first = page.locator("tr.receipt-line").nth(0)
    first.locator("select[name=fund_code]").select_option("CTAX")
    first.locator("input[name=account_reference]").fill(bad)
    first.locator("input[name=amount]").focus()
    msg = first.locator(".line-msg-account_reference")
    msg.filter(has_text="Check digit").wait_for()
    assert len(held) == 1
    with page.expect_response("**/receipts/validate") as late:
        held[0].continue_()
    assert late.value.ok
    page.wait_for_timeout(300)  # the late answer's handler has run
    assert "Check digit is wrong" in msg.inner_text()
    page.unroute("**/receipts/validate")


@once_on_sqlite
def test_ledger_pages_have_no_serious_wcag_violations(page, live_url):
    from tests.browser.test_accessibility import _violations

    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    page.select_option("#payment_method_code", "CASH")
    row = page.locator("tr.receipt-line").nth(0)
    row.locator("select[name=fund_code]").select_option("TWS")
    row.locator("input[name=account_reference]").fill("AXE1")
    row.locator("input[name=amount]").fill("1.50")
    with page.expect_navigation():
        page.click("#post-receipt")
    assert _violations(page) == [], "print view"
    number = page.url.rsplit("/", 2)[-2]
    browser_login(page, live_url, "clerk")
    for path in ("/receipts/new", f"/transactions/?receipt_number={number}", "/ledger/trial-balance",
                 "/transfers/new"):
        page.goto(live_url + path)
        page.wait_for_load_state("networkidle")
        assert _violations(page) == [], path
    page.goto(f"{live_url}/transactions/?receipt_number={number}")
    page.locator("#results tbody a").first.click()
    page.wait_for_load_state("networkidle")
    assert _violations(page) == [], "transaction details"
    page.click("#journal-link")
    page.wait_for_load_state("networkidle")
    assert _violations(page) == [], "journal form"
