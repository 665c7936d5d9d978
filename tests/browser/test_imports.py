"""In Chromium: a clerk uploads a CSV on the Imports page, watches the progress bar complete,
reads the result and follows the link to the suspense items it created."""

import pytest

from tests.conftest import browser_login, screenshot, unique

pytestmark = pytest.mark.browser


def test_clerk_uploads_csv_sees_progress_and_suspense(page, live_url, tmp_path):
    tag = unique("BR", 8)
    rows = "".join(f"2026-01-{5 + i % 3:02d},{tag}{i},1.25,row {i},TWS\n" for i in range(40))
    path = tmp_path / "statement.csv"
    path.write_text("transaction_date,account_reference,amount,narrative,fund_code\n" + rows
                    + f'2026-01-05,{tag}-WHO,7.50,"Unknown, payer",\n', encoding="utf-8")
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/imports/")
    page.set_input_files("#import-file", str(path))
    page.select_option("#import-format", "ims_csv")
    page.click("#import-submit")
    box = page.locator("#import-progress")
    box.wait_for(state="visible")
    page.wait_for_selector('#import-progress[data-finished="succeeded"]', timeout=30000)
    assert page.locator("#import-bar").get_attribute("aria-valuenow") == "100"
    assert page.locator("#r-posted").inner_text().startswith("40 ")
    assert page.locator("#r-suspense").inner_text().startswith("1 ")
    assert page.locator("#r-total").inner_text() == "£57.50"
    assert page.locator("#r-dates").inner_text() == "5 January 2026 – 7 January 2026"
    # the new upload is in the list of batches without a reload, with its figures in words
    row = page.locator("#import-list tbody tr").first
    assert "statement.csv" in row.inner_text() and "£57.50" in row.inner_text()
    assert "succeeded" in row.inner_text()
    screenshot(page, "imports-after-upload")
    page.click("#link-suspense")
    page.wait_for_selector("#suspense-queue")
    table = page.locator("#suspense-queue").inner_text()
    assert f"{tag}-WHO" in table and "Unknown, payer" in table
