"""WCAG 2.2 AA checks with axe-core (vendored from npm) on the main pages, in English and Welsh."""

import os

import pytest

from tests.conftest import browser_login, once_on_sqlite

pytestmark = [pytest.mark.browser, once_on_sqlite]

AXE = os.path.join(os.path.dirname(__file__), "vendor", "axe.min.js")
PAGES = [
    ("admin", "/fundview/list/"),
    ("admin", "/fundview/add"),
    ("admin", "/accountholderview/list/"),
    ("admin", "/referencevalidatorview/add"),
    ("auditor", "/auditeventview/list/"),
    ("clerk", "/"),
    ("wfadmin", "/workflows/"),
    ("wfadmin", "/approval-limits/"),
    ("clerk", "/approval-limits/"),
    ("cashier", "/cash-ups/new?office_code=CIVIC"),
    ("cashier", "/cash-ups/"),

    ("admin", "/account-sync/"),
    ("admin", "/account-search/?q=Jones&by=sounds_like"),
    ("admin", "/configuration-bundle/"),
]


def test_workflow_editor_is_accessible(session, page, live_url):
    from tests.workflows.helpers import deploy_demo

    deploy_demo(session)
    session.commit()
    browser_login(page, live_url, "wfadmin")
    page.goto(f"{live_url}/workflows/approval_demo/edit")
    page.wait_for_selector("#bpmn-editor[data-ready='true']")
    page.select_option("#element-picker", "Flow_ToFM")  # the panel with a condition field
    page.wait_for_selector("#prop-condition-status.expr-ok")
    page.screenshot(path=os.environ.get("IMS_SCREENSHOT", "/tmp/ims-editor.png"), full_page=True)
    assert _violations(page) == []


def _violations(page):
    # not add_script_tag: the CSP refuses an inline <script> without the page's nonce; the
    # DevTools protocol's evaluate is not page script, so it runs axe-core whatever the CSP
    with open(AXE, encoding="utf-8") as fh:
        page.evaluate(fh.read() + "\n;0")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}});
        return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => v.id + ': ' + v.help + ' @ ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return result


@pytest.mark.parametrize("user,path", PAGES)
def test_no_serious_wcag_violations(page, live_url, user, path):
    browser_login(page, live_url, user)
    page.goto(live_url + path)
    page.wait_for_load_state("networkidle")
    assert _violations(page) == []


def test_login_page_in_welsh_is_accessible(page, live_url):
    page.goto(f"{live_url}/lang/cy")
    page.goto(f"{live_url}/login/")
    assert page.locator("html").get_attribute("lang") == "cy"
    assert _violations(page) == []
