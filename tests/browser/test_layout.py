"""Layout at the sizes staff use (issue 21 item 9): the top bar fits one row at 1366 px for every
role in English and Welsh; the receipt lines are usable at phone width; the BPMN editor is centred
like the rest and its diagram is not clipped. Screenshots go to test-results/."""

from __future__ import annotations

import pytest

from tests.conftest import ON_POSTGRES, browser_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    ON_POSTGRES,
    reason="whole-site sweeps run once, on SQLite (the pages do not depend on the database)")]

USERS = ("admin", "wfadmin", "head", "manager", "clerk", "cashier", "auditor")


@pytest.mark.parametrize("lang", ["en", "cy"])
def test_top_bar_is_one_row_at_1366(page, live_url, lang):
    page.set_viewport_size({"width": 1366, "height": 768})
    wrapped = []
    for user in USERS:
        browser_login(page, live_url, user)
        page.goto(f"{live_url}/lang/{lang}")
        page.goto(f"{live_url}/dashboard/")
        if lang == "cy":  # the labels really are Welsh (without compiled catalogues they are not)
            assert "Dangosfwrdd" in page.inner_text(".navbar"), "Welsh catalogue not compiled?"
        height = page.evaluate("document.querySelector('.navbar').getBoundingClientRect().height")
        items = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.navbar-nav > li')).map(li => Math.round(li.getBoundingClientRect().top))""")
        if height > 60 or len(set(items)) > 1:
            wrapped.append(f"{user}: {height}px, rows at {sorted(set(items))}")
            screenshot(page, f"topbar-{lang}-{user}")
    screenshot(page, f"topbar-{lang}-auditor")
    page.goto(f"{live_url}/lang/en")
    assert not wrapped, wrapped


def test_receipt_lines_usable_at_phone_width(page, live_url):
    page.set_viewport_size({"width": 375, "height": 740})
    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/receipts/new")
    screenshot(page, "receipt-phone")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px"
    for selector in ("select[name=fund_code]", "input[name=account_reference]", "input[name=amount]"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["width"] >= 120, (selector, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (selector, box)


def test_bpmn_editor_is_centred_and_not_clipped(page, live_url, session):
    from app.services import refunds as RF

    RF.ensure_deployed(session)
    session.commit()
    page.set_viewport_size({"width": 1920, "height": 1000})
    browser_login(page, live_url, "wfadmin")
    page.goto(f"{live_url}/workflows/{RF.PROCESS_ID}/edit")
    page.wait_for_selector("#bpmn-editor[data-ready='true']")
    main = page.locator("main").bounding_box()
    page.wait_for_timeout(500)
    editor = page.locator("#bpmn-editor").bounding_box()
    screenshot(page, "bpmn-editor")
    assert main["x"] > 50 and abs((1920 - main["x"] - main["width"]) - main["x"]) < 4, main
    # the whole diagram is inside the editor's box (fitted to the viewport on load)
    diagram = page.evaluate("""() => {
        const r = document.querySelector('#bpmn-editor .djs-container .viewport').getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height}; }""")
    palette = page.locator("#bpmn-editor .djs-palette").bounding_box()
    assert diagram["x"] >= palette["x"] + palette["width"] - 2, (diagram, palette)
    assert diagram["x"] >= editor["x"] - 1, (diagram, editor)
    assert diagram["x"] + diagram["width"] <= editor["x"] + editor["width"] + 1, (diagram, editor)
    page.goto(f"{live_url}/workflows/")
    other = page.locator("main").bounding_box()
    assert abs(other["width"] - main["width"]) < 4, (other, main)
