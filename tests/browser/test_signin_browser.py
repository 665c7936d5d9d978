"""In Chromium: a council user signs in through the local OpenID Connect provider (a real one,
tests/oidc_provider.py) and lands on their pages; then a Finance Manager whose role requires
two-factor sign-in sets it up at sign-in (secret shown, code confirmed, recovery codes) and signs
in again with a code. The sign-in pages pass axe on the way."""

from __future__ import annotations

import json
import time

import pyotp
import pytest

from app.security.roles import MANAGER
from tests.conftest import PASSWORD, browser_login, unique
from tests.oidc_provider import Person, Provider

pytestmark = pytest.mark.browser


@pytest.fixture
def provider(app):
    p = Provider()
    p.start()
    saved = {k: app.config.get(k) for k in ("IMS_OIDC_ISSUER", "IMS_OIDC_METADATA_URL",
                                            "IMS_OIDC_CLIENT_ID", "IMS_OIDC_CLIENT_SECRET",
                                            "IMS_OIDC_ROLE_MAP", "IMS_TOTP_REQUIRED_ROLES")}
    p.configure(app, IMS_OIDC_ROLE_MAP=json.dumps({"ims-parking": "Income Clerk"}),
                IMS_TOTP_REQUIRED_ROLES=MANAGER)
    yield p
    app.config.update(saved)
    p.stop()


def test_sso_then_two_factor_set_up_and_sign_in(app, page, live_url, provider):
    from tests.browser.test_accessibility import _violations

    provider.user = Person(sub="b-001", username="pat.parking", email="pp@example.invalid",
                           groups=["ims-parking"])
    page.goto(f"{live_url}/logout/")
    page.goto(f"{live_url}/login/")
    assert _violations(page) == []
    with page.expect_navigation(url=f"{live_url}/**"):
        page.click("#sso-login")  # to the provider and straight back (it asks nothing)
    page.wait_for_load_state("networkidle")
    page.goto(f"{live_url}/my-signin/")
    assert "single sign-on" in page.inner_text("#my-signin")
    assert _violations(page) == []

    # a Finance Manager with a password: two-factor sign-in is set up on the way in
    sm = app.appbuilder.sm
    name = unique("m", 10).lower()
    with app.app_context():
        sm.add_user(name, "Mair", "Manager", f"{name}@example.invalid", [sm.find_role(MANAGER)],
                    password=PASSWORD)
    page.goto(f"{live_url}/logout/")
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    secret = page.inner_text("#totp-secret").strip()
    assert _violations(page) == []
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.click("#two-factor-submit")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    with page.expect_navigation():
        page.click("#recovery-continue")

    # next sign-in: password, then the code of the next time step
    page.goto(f"{live_url}/logout/")
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.locator("#totp-secret").count() == 0
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
    with page.expect_navigation():
        page.click("#two-factor-submit")
    page.goto(f"{live_url}/my-signin/")
    assert "Two-factor sign-in is on." in page.inner_text("#totp-status")
    assert page.locator("#signin-events tr.signin-ok").count() >= 2
    assert _violations(page) == []

    # the Administrators' pages of users' sign-in and till settings
    browser_login(page, live_url, "admin")
    page.goto(f"{live_url}/user-signin/")
    assert _violations(page) == []
    page.click(f"text={name}")
    page.wait_for_load_state("networkidle")
    assert page.inner_text("#user-totp").strip() == "On"
    assert _violations(page) == []
