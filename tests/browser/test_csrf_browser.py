"""In Chromium, with CSRF protection on as in production: the portal's own scripts (inline
receipt validation, the import upload) keep working, an API write signed in only by the session
cookie is refused without the page's CSRF token and accepted with it, and after logout a copy of
the session cookie opens nothing."""

import pytest

from tests.conftest import browser_login, unique

pytestmark = pytest.mark.browser

#: fetch() from the page, as a script of (or injected into) the portal would
FETCH = """async ([url, body, token]) => {
  const headers = {"Content-Type": "application/json", "Accept": "application/json"};
  if (token) { headers["X-CSRFToken"] = token; }
  const resp = await fetch(url, {method: "POST", credentials: "same-origin", headers,
                                 body: JSON.stringify(body)});
  return [resp.status, await resp.text()];
}"""


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


def test_portal_scripts_work_and_session_api_writes_need_the_token(csrf_on, page, live_url,
                                                                   tmp_path):
    browser_login(page, live_url, "clerk")
    # inline validation on the journal/receipt forms posts with the X-CSRFToken header
    page.goto(f"{live_url}/receipts/new")
    line = page.locator("tr.receipt-line").nth(0)
    line.locator("select[name=fund_code]").select_option("TWS")
    line.locator("input[name=account_reference]").fill("BRW1")
    with page.expect_response(lambda r: "/receipts/validate" in r.url) as validated:
        line.locator("input[name=amount]").focus()
    assert validated.value.status == 200

    # the import upload (fetch with the form's token) and its progress polling
    tag = unique("CS", 8)
    path = tmp_path / "statement.csv"
    path.write_text("transaction_date,account_reference,amount,narrative,fund_code\n"
                    f"2026-01-05,{tag},1.25,row,TWS\n", encoding="utf-8")
    page.goto(f"{live_url}/imports/")
    page.set_input_files("#import-file", str(path))
    page.select_option("#import-format", "ims_csv")
    page.click("#import-submit")
    page.wait_for_selector('#import-progress[data-finished="succeeded"]', timeout=30000)

    # an API write authenticated by the session cookie alone
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    body = {"transaction_id": 99999999, "amount": "1.00", "reason": "x", "method": "card"}
    status, text = page.evaluate(FETCH, [f"{live_url}/api/v1/refunds", body, None])
    assert status == 400 and "CSRF" in text
    status, text = page.evaluate(FETCH, [f"{live_url}/api/v1/refunds", body, token])
    assert status == 404, text  # past the CSRF check: no such transaction


def test_a_copied_session_cookie_is_dead_after_logout(csrf_on, browser, page, live_url):
    browser_login(page, live_url, "clerk")
    cookies = page.context.cookies()
    assert any(c["name"] == "session" for c in cookies)
    page.goto(f"{live_url}/logout/")
    thief = browser.new_context(locale="en-GB")
    try:
        thief.add_cookies(cookies)
        other = thief.new_page()
        other.goto(f"{live_url}/notifications/")
        assert "/login/" in other.url
    finally:
        thief.close()
