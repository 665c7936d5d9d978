"""In Chromium: each finance report opens with its chart drawn, has no serious WCAG violation
(axe-core), and downloads as XLSX; the month-end pack downloads as a workbook of four sheets."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from tests.browser.test_accessibility import _violations
from tests.conftest import browser_login
from tests.integration.test_reports import books  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name,sheet", [("cash-book", "Daily cash book"), ("vat", "VAT report"),
                                        ("income", "Income by fund and GL code"),
                                        ("approvals", "Approvals report")])
def test_report_opens_with_its_chart_and_downloads_xlsx(page, live_url, books, name,  # noqa: F811
                                                        sheet):
    day = books["today"].isoformat()
    browser_login(page, live_url, "auditor")
    page.goto(f"{live_url}/reports/")
    page.click(f"#report-list a[href='/reports/{name}']")
    page.fill("#f-from", day)
    page.fill("#f-to", day)
    if name == "cash-book":
        page.select_option("#f-office", books["office"])
    with page.expect_navigation():
        page.click("#report-show")
    page.wait_for_selector(f"#chart-{name}[data-rendered='true']")
    assert page.locator("table.report-table").count() >= 1
    assert _violations(page) == []
    with page.expect_download() as info:
        page.click("#download-xlsx")
    data = open(info.value.path(), "rb").read()
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [sheet]
    if name == "cash-book":
        rows = [[c.value for c in r] for r in wb[sheet].iter_rows()]
        cash = next(r for r in rows if r[3] == "CASH")
        assert cash[1:3] == [books["office"], books["user"]] and cash[-1] == 180


def test_month_end_pack_in_the_browser_and_in_welsh(page, live_url, books):  # noqa: F811
    browser_login(page, live_url, "head")
    page.goto(f"{live_url}/reports/month-end?month={books['today'].strftime('%Y-%m')}")
    page.wait_for_selector("#chart-vat[data-rendered='true']")
    assert page.locator("section.report").count() == 4
    assert _violations(page) == []
    with page.expect_download() as info:
        page.click("#download-xlsx")
    wb = load_workbook(io.BytesIO(open(info.value.path(), "rb").read()))
    assert len(wb.sheetnames) == 4
    page.goto(f"{live_url}/lang/cy")
    try:
        page.goto(f"{live_url}/reports/vat?from={books['today'].isoformat()}")
        page.wait_for_selector("#chart-vat[data-rendered='true']")
        assert page.locator("h1").inner_text() == "Adroddiad TAW"
        assert _violations(page) == []
    finally:
        page.goto(f"{live_url}/lang/en")


def test_print_layout_hides_the_navigation(page, live_url, books):  # noqa: F811
    browser_login(page, live_url, "manager")
    page.goto(f"{live_url}/reports/cash-book?from={books['today'].isoformat()}")
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert not page.locator("#report-filters").is_visible()
    assert page.locator(".print-only").is_visible()
    assert page.locator("#table-cash-book-cash_book").is_visible()
