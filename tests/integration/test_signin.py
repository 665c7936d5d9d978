"""Sign-in and the user lifecycle (issue 20): two-factor sign-in with TOTP and recovery codes,
API tokens refused to two-factor users, an Administrator's reset, dormant accounts disabled by
`ims tick`, per-user default office and payment methods, the session inactivity timeout and a
user's recent sign-ins. Each test makes users of its own (the demo users stay as they are)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.signin import SigninEvent, UserSignin
from app.security.roles import CASHIER, MANAGER
from tests.conftest import PASSWORD, login, unique


@pytest.fixture
def make_user(app, session):
    def _make(*roles: str, password: str = PASSWORD) -> str:
        sm = app.appbuilder.sm
        name = unique("u", 12).lower()
        user = sm.add_user(name, "Test", "User", f"{name}@example.invalid",
                           [sm.find_role(r) for r in roles], password=password)
        assert user, "user not created"
        from app.services.fund_groups import grant_all_funds

        grant_all_funds(session, user.id)  # a new user has no funds until given them
        session.commit()
        return name

    return _make


@pytest.fixture
def totp_for_managers(app):
    app.config["IMS_TOTP_REQUIRED_ROLES"] = MANAGER
    yield
    app.config["IMS_TOTP_REQUIRED_ROLES"] = ""


def _user(app, session, username):
    session.rollback()
    return app.appbuilder.sm.find_user(username=username)


class _Event:
    def __init__(self, row):
        self.actor, self.after = row.actor, json.loads(row.after or "{}")


def _audits(session, action, username=None):
    session.rollback()
    rows = [_Event(r) for r in session.scalars(select(AuditEvent).where(
        AuditEvent.action == action).order_by(AuditEvent.id))]
    return [r for r in rows if username is None or r.after.get("username") == username]


def _code(secret, offset=0):
    return pyotp.TOTP(secret).at(time.time() + offset)


def _set_up_totp(client, username):
    """Sign in as a manager whose role requires two-factor sign-in: set it up on the way in.
    Returns (secret, recovery codes)."""
    r = login(client, username)
    assert r.status_code == 302 and r.location.endswith("/login/two-factor/"), r.location
    page = client.get("/login/two-factor/")
    assert page.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    wrong = client.post("/login/two-factor/", data={"code": "000000"})
    assert wrong.status_code == 401 and "not correct" in wrong.text
    first = _code(secret)
    ok = client.post("/login/two-factor/", data={"code": first})
    assert ok.status_code == 200 and 'id="recovery-codes"' in ok.text
    codes = re.findall(r"<code>([0-9a-f]{5}-[0-9a-f]{5})</code>", ok.text)
    assert len(codes) == 10
    assert client.get("/my-signin/").status_code == 200  # signed in now
    return secret, codes, first


def test_totp_set_up_at_sign_in_then_required_with_codes_used_once(
        app, client, session, make_user, totp_for_managers):
    name = make_user(MANAGER)
    secret, codes, first = _set_up_totp(client, name)
    assert _audits(session, "signin.totp_enabled", name)

    # next sign-in: the password alone does not sign in
    r = login(client, name)
    assert r.location.endswith("/login/two-factor/")
    assert client.get("/my-signin/").status_code != 200
    # the code of the step already used is refused (a code is accepted once)
    reused = client.post("/login/two-factor/", data={"code": first})
    assert reused.status_code == 401
    ok = client.post("/login/two-factor/", data={"code": _code(secret, 30)})
    assert ok.status_code == 302
    assert client.get("/my-signin/").status_code == 200

    # a recovery code signs in once; used again it is refused and audited
    login(client, name)
    assert client.post("/login/two-factor/", data={"code": codes[0]}).status_code == 302
    login(client, name)
    again = client.post("/login/two-factor/", data={"code": codes[0].upper()})
    assert again.status_code == 401 and "already been used" in again.text
    refused = _audits(session, "signin.refused", name)
    assert any(e.after.get("reason") == "recovery_code_reused" for e in refused)
    assert _audits(session, "signin.recovery_used", name)

    # the user's own page lists their recent sign-ins, refusals included
    login(client, name)
    client.post("/login/two-factor/", data={"code": codes[1]})
    page = client.get("/my-signin/")
    assert "Two-factor sign-in is on." in page.text and "Unused recovery codes: 8." in page.text
    assert page.text.count('class="signin-ok"') >= 3 and 'class="signin-refused"' in page.text


def test_wrong_codes_are_rate_limited_and_audited(app, client, session, make_user,
                                                  totp_for_managers):
    name = make_user(MANAGER)
    secret, _, _ = _set_up_totp(client, name)
    app.config["IMS_TOTP_MAX_FAILURES"] = 3
    try:
        login(client, name)
        for _ in range(3):
            assert client.post("/login/two-factor/", data={"code": "123456"}).status_code == 401
        locked = client.post("/login/two-factor/", data={"code": _code(secret, 30)})
        assert locked.status_code == 401 and "Too many wrong codes" in locked.text
    finally:
        app.config["IMS_TOTP_MAX_FAILURES"] = 5
    reasons = [e.after.get("reason") for e in _audits(session, "signin.refused", name)]
    assert reasons.count("wrong_code") == 2 and "wrong_code,locked" in reasons
    assert "locked" in reasons
    # an Administrator's reset clears the lock and the second factor (audited); the user sets
    # it up again at the next sign-in
    user = _user(app, session, name)
    login(client, "admin")
    assert client.post(f"/user-signin/{user.id}/reset-totp").status_code == 302
    assert _audits(session, "signin.totp_reset", name)
    session.rollback()
    p = session.get(UserSignin, user.id)
    assert p.totp_secret is None and p.totp_enabled_at is None and p.totp_locked_until is None
    r = login(client, name)
    assert r.location.endswith("/login/two-factor/")
    assert 'id="totp-secret"' in client.get("/login/two-factor/").text


def test_reset_is_for_administrators_only(app, client, session, make_user):
    name = make_user(MANAGER)
    user = _user(app, session, name)
    login(client, "clerk")
    r = client.post(f"/user-signin/{user.id}/reset-totp")
    assert r.status_code in (302, 403) and not _audits(session, "signin.totp_reset", name)
    if r.status_code == 302:
        assert "/user-signin/" not in r.location


def test_set_up_from_own_page_and_api_token_refused_then_service_account(
        app, client, session, make_user):
    name = make_user(CASHIER)
    token = client.post("/api/v1/security/login", json={
        "username": name, "password": PASSWORD, "provider": "db"})
    assert token.status_code == 200  # no second factor yet
    login(client, name)
    assert client.post("/my-signin/totp/start").status_code == 302
    page = client.get("/my-signin/")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    bad = client.post("/my-signin/totp/confirm", data={"code": "99999x"})
    assert bad.status_code == 400
    done = client.post("/my-signin/totp/confirm", data={"code": _code(secret)})
    assert done.status_code == 200 and 'id="recovery-codes"' in done.text

    client.get("/logout/")
    refused = client.post("/api/v1/security/login", json={
        "username": name, "password": PASSWORD, "provider": "db"})
    assert refused.status_code == 401 and "two-factor" in refused.json["message"]
    assert any(e.after.get("method") == "api" for e in _audits(session, "signin.refused", name))

    # an integration's service account gets tokens; it never signs in to the pages
    user = _user(app, session, name)
    login(client, "admin")
    r = client.post(f"/user-signin/{user.id}/settings", data={"service_account": "y"})
    assert r.status_code == 302
    client.get("/logout/")
    assert client.post("/api/v1/security/login", json={
        "username": name, "password": PASSWORD, "provider": "db"}).status_code == 200
    session.rollback()
    last = session.scalars(select(SigninEvent).where(SigninEvent.user_id == user.id)
                           .order_by(SigninEvent.id.desc())).first()
    assert (last.method, last.outcome) == ("api", "ok")
    form = login(client, name)
    assert client.get("/my-signin/").status_code != 200, form.location


def test_local_passwords_off(app, client, session, make_user):
    name = make_user(CASHIER)
    service = make_user(CASHIER)
    from app.services import signin

    with app.test_request_context():
        signin.set_user_settings(session, _user(app, session, service).id,
                                 default_office_code=None, payment_method_codes=[],
                                 service_account=True, actor="test")
    app.config["IMS_LOCAL_PASSWORDS"] = False
    try:
        r = login(client, name)
        assert r.status_code == 302 and "/login/" in r.location
        assert client.get("/my-signin/").status_code != 200
        assert client.post("/api/v1/security/login", json={
            "username": name, "password": PASSWORD, "provider": "db"}).status_code == 401
        assert client.post("/api/v1/security/login", json={
            "username": service, "password": PASSWORD, "provider": "db"}).status_code == 200
        assert "name=\"password\"" not in client.get("/login/").text
    finally:
        app.config["IMS_LOCAL_PASSWORDS"] = True


def test_dormant_accounts_disabled_by_tick(app, session, make_user):
    dormant, recent = make_user(CASHIER), make_user(CASHIER)
    User = app.appbuilder.sm.user_model
    session.rollback()
    old = datetime.now() - timedelta(days=91)
    u = session.scalar(select(User).where(User.username == dormant))
    u.last_login, u.created_on = old, old - timedelta(days=400)
    session.commit()
    result = app.test_cli_runner().invoke(args=["ims", "tick"])
    assert "dormant-accounts: " in result.output and "dormant account(s) disabled" in result.output
    session.rollback()
    assert session.scalar(select(User.active).where(User.username == dormant)) is False
    assert session.scalar(select(User.active).where(User.username == recent)) is True
    events = _audits(session, "user.dormant_disabled", dormant)
    assert len(events) == 1 and events[0].actor == "worker" and events[0].after["days"] == 90
    # a disabled user cannot sign in
    with app.test_client() as c:
        r = login(c, dormant)
        assert r.status_code == 302 and "/login/" in r.location
        assert c.get("/my-signin/").status_code == 302


def test_default_office_and_payment_methods_per_user(app, client, session, make_user, api):
    name = make_user(CASHIER)
    user = _user(app, session, name)
    login(client, "admin")
    bad = client.post(f"/user-signin/{user.id}/settings",
                      data={"default_office_code": "NOPE", "payment_method_codes": ["CASH"]})
    assert bad.status_code == 400 and "Unknown office" in bad.text
    r = client.post(f"/user-signin/{user.id}/settings",
                    data={"default_office_code": "LIB", "payment_method_codes": ["CASH", "CHQ"]})
    assert r.status_code == 302
    changed = _audits(session, "user.settings", name)
    assert changed and changed[-1].after["payment_method_codes"] == ["CASH", "CHQ"]

    login(client, name)
    page = client.get("/receipts/new")
    assert page.status_code == 200
    assert 'value="CASH"' in page.text and 'value="CARD"' not in page.text
    assert re.search(r'<option value="LIB"\s+selected', page.text) or \
        re.search(r'value="LIB"[^>]*selected', page.text)

    line = [{"fund_code": "TWS", "account_reference": "TW1", "amount": "5.00"}]
    refused = api(name).post("/api/v1/receipts", json={"payment_method_code": "CARD",
                                                        "lines": line})
    assert refused.status_code == 422 and "payment_method_code" in refused.json["errors"]
    taken = api(name).post("/api/v1/receipts", json={"payment_method_code": "CASH",
                                                      "lines": line})
    assert taken.status_code == 201, taken.json
    from app.models.ledger import Transaction

    session.rollback()
    t = session.get(Transaction, taken.json["transactions"][0]["id"])
    assert t.office_code == "LIB"


def test_session_ends_after_inactivity(app, client, make_user):
    name = make_user(CASHIER)
    login(client, name)
    assert client.get("/my-signin/").status_code == 200
    with client.session_transaction() as s:
        s["_ims_seen"] = int(time.time()) - 31 * 60
    r = client.get("/my-signin/")
    assert r.status_code == 302 and "/login/" in r.location
    assert "a time without activity" in client.get(r.location).text
    # and the session is over for good, not just for that request
    assert client.get("/my-signin/").status_code == 302


def test_auditor_reads_user_settings_admin_page_lists_users(client, app, session):
    login(client, "auditor")
    user = _user(app, session, "cashier")
    page = client.get(f"/user-signin/{user.id}")
    assert page.status_code == 200 and 'id="save-user-signin"' not in page.text
    assert client.post(f"/user-signin/{user.id}/settings", data={}).status_code in (302, 403)
    login(client, "admin")
    assert "cashier" in client.get("/user-signin/").text
    assert session.scalar(select(func.count(SigninEvent.id))) > 0


def test_bad_sign_in_input_is_refused_not_a_server_error(client, session):
    long_name = "x" * 500
    r = client.post("/login/", data={"username": long_name, "password": "nope"})
    assert r.status_code == 302 and "/login/" in r.location
    r = client.post("/api/v1/security/login", json={"username": long_name, "password": "nope",
                                                     "provider": "db"})
    assert r.status_code == 401
    assert client.post("/login/two-factor/", data={"code": "1" * 5000}).status_code == 302
    assert client.get("/login/sso/callback?state=x&code=y").status_code == 404  # not configured
    refused = _audits(session, "signin.refused")
    assert refused[-1].actor == "anonymous" and len(refused[-1].after["username"]) == 200


def test_one_code_used_at_once_twice_signs_in_once(app, session, make_user):
    """The same TOTP code and the same recovery code sent twice at the same moment: one
    sign-in each, the other refused (the user's row is locked while a code is checked)."""
    import threading

    from app.extensions import db
    from app.services import signin

    name = make_user(CASHIER)
    with app.test_request_context():
        user = _user(app, session, name)
        secret = signin.start_totp_setup(session, user)
        codes = signin.confirm_totp_setup(session, user, _code(secret, -30))
    user_id = user.id
    session.remove()

    def race(code):
        results = [None, None]
        barrier = threading.Barrier(2)

        def run(i):
            with app.app_context():
                barrier.wait()
                try:
                    u = db.session.get(app.appbuilder.sm.user_model, user_id)
                    results[i] = signin.check_second_factor(db.session, u, code)
                except signin.SigninRefused as exc:
                    results[i] = exc.reason
                except Exception as exc:  # noqa: BLE001 - a crash fails the test
                    results[i] = f"crash: {exc!r}"
                finally:
                    db.session.remove()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return sorted(results)

    assert race(_code(secret)) == ["code_reused", "totp"]
    assert race(codes[3]) == ["recovery", "recovery_code_reused"]
