"""Each role lands where its work is and sees in the menus only what it may use (issue 21 items
6 and 7); the Roles page is the role matrix of app/security/roles.py in words (item 8)."""

from __future__ import annotations

import re

import pytest

from app.security.matrix import RESOURCE_WORDS
from app.security.roles import RESOURCES, ROLES
from tests.conftest import login

LANDING = {"admin": "/", "wfadmin": "/workflows/", "head": "/tasks/", "manager": "/tasks/",
           "auditor": "/audit/", "cashier": "/receipts/new", "clerk": "/"}


def _menu_labels(html: str) -> set[str]:
    nav = html[html.index('class="navbar'):html.index('id="main-content"')]
    return {re.sub(r"\s+", " ", m.replace("&nbsp;", " ")).strip()
            for m in re.findall(r"<a[^>]*>(?:\s*<[^>]+>\s*)*([^<]+)</a>", nav)}


@pytest.mark.parametrize("user, landing", sorted(LANDING.items()))
def test_each_role_lands_where_its_work_is(client, user, landing):
    resp = login(client, user)
    assert resp.status_code == 302
    home = client.get("/")
    if landing == "/":
        assert home.status_code == 200
    else:
        assert home.status_code == 302 and home.headers["Location"].endswith(landing), \
            (user, home.status_code, home.headers.get("Location"))
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200


def test_approvers_land_on_their_tasks_with_a_count(client):
    login(client, "manager")
    html = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "<h1>My tasks</h1>" in html
    assert 'id="task-summary"' in html or 'id="no-tasks"' in html


def test_administrators_land_on_reference_data_and_users(client):
    login(client, "admin")
    html = client.get("/").get_data(as_text=True)
    assert "<h1>Administration</h1>" in html
    for text in ("/fundview/list/", "/vatcodeview/list/", "/users/list/", "/role-matrix/"):
        assert text in html, text


@pytest.mark.parametrize("user", ["admin", "wfadmin", "head", "manager", "clerk", "cashier",
                                  "auditor"])
def test_dashboard_stays_in_the_menu(client, user):
    login(client, user)
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'id="dashboard"' in html
    assert 'href="/dashboard/"' in html


def test_cashier_menus_show_only_what_a_cashier_uses(client):
    login(client, "cashier")
    html = client.get("/receipts/new").get_data(as_text=True)
    menus = _menu_labels(html)
    for hidden in ("Reference data", "Funds", "Imports", "Approval limits", "Workflows",
                   "Fund reference patterns"):
        assert hidden not in menus, (hidden, menus)
    assert "Take a payment" in menus
    # the receipt form still lists the funds a cashier takes money for (read permission kept)
    assert 'value="CTAX"' in html or "CTAX" in html
    assert client.get("/api/v1/funds/").status_code == 200  # the session may read funds


def test_auditor_sees_audit_and_registers_not_payments(client):
    login(client, "auditor")
    html = client.get("/audit/").get_data(as_text=True)
    menus = _menu_labels(html)
    assert "Audit trail" in menus and "Take a payment" not in menus and "My tasks" not in menus


def test_roles_page_is_the_matrix_in_words(client):
    login(client, "admin")
    html = client.get("/role-matrix/").get_data(as_text=True)
    assert "<h1>Roles and what they may do</h1>" in html
    assert "can_read" not in html and "can_write" not in html
    row = re.search(r'<tr data-resource="Receipt">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r'data-role="Cashier">see, change<', row)
    assert re.search(r'data-role="Workflow Administrator"><span class="text-muted">no access<', row)
    assert len(html) < 60000
    menus = _menu_labels(html)
    assert "Roles" in menus and "List Roles" not in menus and "Base Permissions" not in menus
    login(client, "auditor")
    assert client.get("/role-matrix/").status_code == 200
    login(client, "cashier")
    assert client.get("/role-matrix/").status_code == 403


def test_every_resource_has_words():
    assert set(RESOURCES) <= set(RESOURCE_WORDS), set(RESOURCES) - set(RESOURCE_WORDS)
    assert len(ROLES) == 8  # with Payment Integration (calling systems)


def test_the_menu_kept_per_roles_follows_a_change_to_their_permissions(app, client, session):
    """The menu is rendered once per set of roles and language (app/web.py navigation_menu) and
    kept while the cache version stands: a permission given to a role shows in its menu on the
    next page, and goes when taken away; each language has its own."""
    sm = app.appbuilder.sm
    login(client, "cashier")
    assert "Workflows" not in _menu_labels(client.get("/receipts/new").get_data(as_text=True))
    role = sm.find_role("Cashier")
    entry = sm.find_permission_view_menu("menu_access", "Workflow definitions")
    assert entry is not None and entry not in role.permissions
    given = [entry]  # (the Workflows category the cashier has already: its My tasks)
    try:
        for pv in given:
            sm.add_permission_role(role, pv)
        menus = _menu_labels(client.get("/receipts/new").get_data(as_text=True))
        assert "Workflows" in menus and "Take a payment" in menus
        client.get("/lang/cy")
        welsh = _menu_labels(client.get("/receipts/new").get_data(as_text=True))
        assert "Take a payment" not in welsh and len(welsh) >= len(menus) - 2
        client.get("/lang/en")
    finally:
        for pv in given:
            sm.del_permission_role(role, pv)
    assert "Workflows" not in _menu_labels(client.get("/receipts/new").get_data(as_text=True))
