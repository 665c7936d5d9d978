"""In Chromium: each demo user sees exactly the menus of their role; Welsh switches the UI."""

import pytest

from app.security.roles import in_menu, roles_for
from app.security.sync import menu_permission
from tests.conftest import browser_login
from tests.views.test_permission_matrix import DEMO_USER

pytestmark = pytest.mark.browser


def _expected_menu(app, role):
    """Menu entries (and their categories) whose view the role may use and has a use for
    (roles.MENU_ROLES), per roles.py."""
    shown = set()
    for category in app.appbuilder.menu.get_list():
        for item in category.childs or [category]:
            view = getattr(item, "baseview", None)
            if item.name == "-" or view is None:
                continue
            perm = menu_permission(view)
            if perm in (view.base_permissions or []) and role in (
                    roles_for(perm, view.class_permission_name) or ()) and in_menu(
                    role, view.class_permission_name):
                shown.add(str(item.label or item.name))
                if category.childs:
                    shown.add(str(category.label or category.name))
    return shown


def _visible_menu(page):
    labels = page.eval_on_selector_all(
        "ul.nav.navbar-nav:not(.navbar-right) > li > a, "
        "ul.nav.navbar-nav:not(.navbar-right) ul.dropdown-menu > li > a",
        "els => els.map(e => e.textContent.trim()).filter(t => t)")
    return set(labels)


@pytest.mark.parametrize("role", list(DEMO_USER))
def test_each_role_sees_its_menus_and_nothing_else(app, page, live_url, role):
    browser_login(page, live_url, DEMO_USER[role])
    assert "/login" not in page.url
    with app.test_request_context():
        expected = _expected_menu(app, role)
    assert _visible_menu(page) == expected


def test_admin_and_clerk_differ_as_roles_say(page, live_url):
    browser_login(page, live_url, "admin")
    admin = _visible_menu(page)
    assert {"Security", "List Users", "Funds", "Audit trail"} <= admin
    browser_login(page, live_url, "clerk")
    clerk = _visible_menu(page)
    assert "Security" not in clerk and "Audit trail" not in clerk
    assert "Funds" in clerk  # everyone reads reference data


def test_switch_to_welsh_and_back(page, live_url):
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/lang/cy")
    # Council Tax by its code: the list is paged by code, and other tests add funds before it.
    page.goto(f"{live_url}/fundview/list/?_flt_0_code=CTAX")
    assert page.locator("html").get_attribute("lang") == "cy"
    body = page.inner_text("body")
    assert "Cronfeydd" in body  # "Funds"
    assert "Data cyfeirio" in body  # "Reference data"
    assert "£10,000.00" in body  # Council Tax's limit, in pounds with the Welsh locale's separators
    page.goto(f"{live_url}/lang/en")
    page.goto(f"{live_url}/fundview/list/")
    assert "Funds" in page.inner_text("body")


def test_welsh_login_page(page, live_url):
    page.goto(f"{live_url}/lang/cy")
    page.goto(f"{live_url}/login/")
    body = page.inner_text("body")
    assert "Mewngofnodi" in body
    assert "Enw defnyddiwr" in body


def test_navigation_bar_stays_on_one_line_for_the_administrator(page, live_url):
    page.set_viewport_size({"width": 1280, "height": 800})
    browser_login(page, live_url, "admin")
    page.goto(f"{live_url}/")
    height = page.evaluate("document.querySelector('.navbar').getBoundingClientRect().height")
    assert height < 70, f"the navigation bar wraps ({height}px high)"
