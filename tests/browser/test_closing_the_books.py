"""In Chromium: a Finance Manager exports a month's income in the Oracle layout and the file's
debits equal the batch's control total; the Finance Manager asks for the month to be closed,
the Head of Finance approves it in the task list; a receipt taken afterwards dated in that
month is posted on the first day of the next open period and the receipt page says so."""

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from app.domain.money import Money
from app.models.gl import PeriodRequest
from tests.conftest import browser_login, unique
from tests.integration.test_gl_export import _fund_outside_vat, flush_all, receipt  # noqa: F401

pytestmark = pytest.mark.browser


def test_export_a_month_then_close_it(session, page, live_url):
    flush_all(session)
    receipt(session, "2015-02-03", "120.00")               # Trade Waste, VAT 20.00
    receipt(session, "2015-02-17", "45.50", fund="GLO")
    receipt(session, "2015-03-02", "9.00")                 # after the cut-off: not exported

    browser_login(page, live_url, "manager")
    page.goto(f"{live_url}/gl-exports/")
    page.fill("#gl-cut-off", "2015-02-28")
    page.select_option("#gl-layout", "oracle_fusion_gl_interface")
    with page.expect_navigation():
        page.click("#gl-run")
    page.wait_for_load_state("networkidle")
    assert "control total £165.50" in page.inner_text("body")
    row = page.locator("#gl-batches tbody tr").first
    assert row.locator(".control-total").inner_text() == "£165.50"
    with page.expect_download() as info:
        row.locator("a.gl-download").click()
    data = open(info.value.path(), encoding="utf-8").read()
    rows = list(csv.reader(io.StringIO(data)))
    debits = sum(Money.parse(r[10]).pence for r in rows if r[10])
    credits = sum(Money.parse(r[11]).pence for r in rows if r[11])
    assert debits == credits == 165_50
    assert {r[8] for r in rows} == {"7002-CH", "4002-TW", "8101-VAT", "6001-GL"}

    # the close page, then the request
    page.goto(f"{live_url}/periods/2015-02")
    assert page.locator("#close-checks tr[data-check=unreconciled]").count() == 1
    page.fill("#period-reason", "February closed")
    with page.expect_navigation():
        page.click("#period-request")
    assert "waiting for the Head of Finance" in page.inner_text("body")

    browser_login(page, live_url, "head")
    page.click("#ims-my-tasks")
    page.wait_for_load_state("networkidle")
    session.expire_all()
    req = session.scalar(select(PeriodRequest).where(
        PeriodRequest.period_start == dt.date(2015, 2, 1), PeriodRequest.status == "pending"))
    task = page.locator("#task-list tr", has_text=f"Period close {req.id}")
    assert task.count() == 1
    task.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert "Close the accounting period 2015-02" in page.inner_text("body")
    page.fill("#comment", "Checked the close page")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")
    assert "Approved:" in page.inner_text("body")
    page.goto(f"{live_url}/periods/2015-02")
    assert page.inner_text("#period-status") == "Closed"

    # a later receipt dated in February goes into March, and says so
    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    page.select_option("#payment_method_code", "CASH")
    page.fill("#transaction_date", "2015-02-20")
    line = page.locator("tr.receipt-line").nth(0)
    line.locator("select[name=fund_code]").select_option("TWS")
    line.locator("input[name=account_reference]").fill(unique("BR", 6))
    line.locator("input[name=amount]").fill("6.00")
    with page.expect_navigation():
        page.click("#post-receipt")
    page.wait_for_load_state("networkidle")
    message = page.inner_text("#period-message")
    assert "closed period 2015-02" in message and "2015-03-01" in message
