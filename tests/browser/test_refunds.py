"""In Chromium: a clerk requests a card refund above £500, a Finance Manager then the Head of
Finance approve it, it is paid to the card; a BACS refund is paid in a payment run; both are
checked in the register, on the refund page and in the ledger lines of the transaction."""

import re

import pytest

from tests.conftest import browser_login, once_on_sqlite
from tests.integration.test_refunds import deploy_refund_workflow, make_txn

pytestmark = pytest.mark.browser


def _approve(page, live_url, who, refund_id, comment):
    browser_login(page, live_url, who)
    page.click("#ims-my-tasks")
    page.wait_for_load_state("networkidle")
    row = page.locator("#task-list tr", has_text=f"refund {refund_id}")
    assert row.count() == 1
    row.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert f"Refund {refund_id}" in page.inner_text("body")
    page.fill("#comment", comment)
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")
    assert "Approved:" in page.inner_text("body")


def _request(page, live_url, txn_id, amount, method, payee=None):
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/transactions/{txn_id}")
    page.click("#request-refund-link")
    page.wait_for_load_state("networkidle")
    page.fill("#amount", amount)
    page.fill("#reason", "Paid twice by mistake")
    page.check(f"#method-{method}")
    if payee:
        page.fill("#payee_name", payee[0])
        page.fill("#sort_code", payee[1])
        page.fill("#account_number", payee[2])
    with page.expect_navigation():
        page.click("#request-refund")
    page.wait_for_load_state("networkidle")
    m = re.search(r"/refunds/(\d+)$", page.url)
    assert m, page.url
    assert "awaiting approval" in page.inner_text("h1")
    return int(m.group(1))


def test_card_refund_above_the_limit_then_bacs_refund_in_a_payment_run(session, page, live_url):
    deploy_refund_workflow(session)
    card = make_txn(session, 80_000)
    cheque_paid = make_txn(session, 5_000, method="CHQ")

    # card refund of £550.00: Finance Manager then Head of Finance
    rid = _request(page, live_url, card.id, "550.00", "card")
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/transactions/{card.id}")
    assert page.inner_text("#available") == "£250.00"
    _approve(page, live_url, "manager", rid, "Evidence checked")
    _approve(page, live_url, "head", rid, "Agreed")

    browser_login(page, live_url, "auditor")
    page.goto(f"{live_url}/refunds/?status=paid&requester=clerk")
    assert page.locator(f"#refund-register tr[data-refund-id='{rid}']").count() == 1
    page.click(f"#refund-register tr[data-refund-id='{rid}'] a")
    page.wait_for_load_state("networkidle")
    assert "paid" in page.inner_text("h1")
    postings = page.inner_text("#refund-postings")
    assert "REFUNDS_PAYABLE" in postings and "CARD_CLEARING" in postings and "£550.00" in postings
    history = page.inner_text("#workflow-history")
    assert "Evidence checked" in history and "Agreed" in history
    page.click("#refund-transaction-link")
    page.wait_for_load_state("networkidle")
    ledger = page.inner_text("#postings")
    assert "REFUNDS_PAYABLE" in ledger and "£550.00" in ledger
    assert page.locator(f"#transaction-refunds a[href='/refunds/{rid}']").count() == 1

    # BACS refund: approved by one Finance Manager, paid in a refund payment run
    bid = _request(page, live_url, cheque_paid.id, "20.00", "bacs",
                   ("Jane Payer", "40-11-62", "31926819"))
    _approve(page, live_url, "manager2", bid, "OK")
    browser_login(page, live_url, "manager")
    page.goto(f"{live_url}/refund-payment-runs/")
    for box in page.locator("#waiting-refunds input[name=refund_id]").all():
        if box.get_attribute("value") != str(bid):
            box.uncheck()
    with page.expect_navigation():
        page.click("#create-run")
    page.wait_for_load_state("networkidle")
    assert "Payment run RR" in page.inner_text("h1")
    assert page.locator("#download-std18").count() == 1
    assert "paid" in page.inner_text("#run-refunds")
    page.goto(f"{live_url}/refunds/{bid}")
    assert "paid" in page.inner_text("h1")

    # the clerk was told
    browser_login(page, live_url, "clerk")
    page.click("#ims-notifications")
    page.wait_for_load_state("networkidle")
    notes = page.inner_text("#notification-list")
    assert f"Refund {rid}" in notes and f"Refund {bid}" in notes


@once_on_sqlite
def test_refund_pages_have_no_serious_wcag_violations(session, page, live_url):
    from tests.browser.test_accessibility import _violations
    from tests.integration.test_refunds import approve_all, request

    deploy_refund_workflow(session)
    txn = make_txn(session, 9_000, method="CHQ")
    refund = request(session, txn, "12.00", method="bacs", payee=(
        {"name": "Someone Else", "sort_code": "40-11-62", "account_number": "31926819"}))
    approve_all(session, refund, approvers=("manager",))
    pages = [("clerk", f"/refunds/new/{txn.id}"), ("clerk", f"/refunds/{refund.id}"),
             ("auditor", "/refunds/"), ("manager", "/refund-payment-runs/"),
             ("clerk", "/notifications/")]
    found = {}
    for user, path in pages:
        browser_login(page, live_url, user)
        page.goto(live_url + path)
        page.wait_for_load_state("networkidle")
        problems = _violations(page)
        if problems:
            found[path] = problems
    assert found == {}, "\n".join(f"{k}: {v}" for k, v in found.items())
