"""Walk every registered view and API endpoint for every role: allowed exactly as roles.py says.

A new view or endpoint without a rule in app/security/roles.py fails here (and in sync-roles).
"""

from __future__ import annotations

import re

import pytest
from flask_appbuilder.api import BaseApi

from app.security.roles import ROLES, roles_for
from tests.conftest import api_token, login

DEMO_USER = {
    "Administrator": "admin", "Workflow Administrator": "wfadmin", "Head of Finance": "head",
    "Finance Manager": "manager", "Income Clerk": "clerk", "Cashier": "cashier", "Auditor": "auditor",
    "Payment Integration": "payint",
}
#: Endpoints that are public by design (login, logout, language switch, static files, health).
PUBLIC = re.compile(r"^(static|appbuilder\.static|AuthDBView\.(login|logout)|LocaleView\.index|"
                    r"(Ims)?SecurityApi\.(login|refresh)|UtilView\.back|HomeView\.index|"
                    r"OpenApi\.get|SwaggerView\.show|MenuApi\.get_menu_data|health.*|"
                    # operators' endpoints: no login (/metrics: token or network, test_operations)
                    r"ops\.(healthz|readyz|metrics)|"
                    # the payment-provider simulator (its API checks its own key) and provider
                    # webhooks (signed by the provider: tests/integration/test_card_payments.py)
                    r"simulator\..*|card_payment_webhooks\..*|"
                    # the citizen payment portal: no login (tests/portal)
                    r"portal\..+)$")
#: State-destroying endpoints we do not call in a loop (still role-checked by the same decorator).
#: FAB action routes check the permission of the named action inside; an unknown action
#: name just redirects back, so they are not walked here.
SKIP_CALL = re.compile(r"(logout|AuthDBView|\.action(_post)?$)")


def _endpoints(app):
    """(endpoint, url, http method, view, permission, view_menu) for every FAB-protected route."""
    out = []
    for rule in app.url_map.iter_rules():
        ep = rule.endpoint
        if PUBLIC.match(ep) or SKIP_CALL.search(ep):
            continue
        func = app.view_functions[ep]
        view = getattr(func, "__self__", None)
        assert view is not None, f"{ep} is not a FAB view method: give it a view and a rule"
        name = func.__name__
        mapped = (view.method_permission_name or {}).get(name)
        perm = "can_" + (mapped or getattr(func, "_permission_name", name)).removeprefix("can_")
        url = rule.rule
        # ids that do not exist: an allowed call must not change real records
        for arg in rule.arguments:
            url = re.sub(r"<(?:[a-z]+:)?%s>" % arg, "locale" == arg and "en" or "999999", url)
        methods = sorted(m for m in rule.methods if m not in ("HEAD", "OPTIONS"))
        method = "GET" if "GET" in methods else methods[0]
        out.append((ep, url, method, view, perm, view.class_permission_name))
    return out


def _call(client, method, url, headers=None):
    kwargs = {"headers": headers or {}}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.open(url, method=method, **kwargs)


def _denied(resp, is_api):
    if is_api:
        return resp.status_code in (401, 403)
    return resp.status_code == 403 or (resp.status_code == 302 and "/login" in resp.headers.get("Location", ""))


def test_every_endpoint_has_a_rule(app):
    missing = [f"{ep} ({perm} on {vm})" for ep, _, _, _, perm, vm in _endpoints(app)
               if roles_for(perm, vm) is None]
    assert not missing, "no rule in app/security/roles.py for: " + ", ".join(missing)


def test_anonymous_is_refused_everywhere(app):
    client = app.test_client()
    for ep, url, method, view, _, _ in _endpoints(app):
        resp = _call(client, method, url)
        assert _denied(resp, isinstance(view, BaseApi)), f"anonymous reached {ep} {method} {url}: {resp.status_code}"


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(app, role):
    username = DEMO_USER[role]
    web = app.test_client()
    assert login(web, username).status_code == 302
    token_client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token(token_client, username)}"}
    wrong = []
    for ep, url, method, view, perm, vm in _endpoints(app):
        is_api = isinstance(view, BaseApi)
        expected = perm in (view.base_permissions or ()) and role in (roles_for(perm, vm) or frozenset())
        client = token_client if is_api else web
        resp = _call(client, method, url, headers if is_api else None)
        denied = _denied(resp, is_api)
        if expected == denied:
            wrong.append(f"{ep} {method} {url}: expected {'allowed' if expected else 'denied'}, got {resp.status_code}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_sync_roles_gives_each_role_only_its_rules(app):
    from app.extensions import db

    sm = app.appbuilder.sm
    for role_name in ROLES:
        role = sm.find_role(role_name)
        for pvm in role.permissions:
            if pvm.permission.name == "menu_access":
                continue
            assert role_name in (roles_for(pvm.permission.name, pvm.view_menu.name) or ()), \
                f"{role_name} holds {pvm.permission.name} on {pvm.view_menu.name} without a rule"
    db.session.rollback()
