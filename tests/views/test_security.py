"""Security baseline: CSRF, login rate limits, headers, password policy, production config; roles
read-only, sessions that end at logout, own password changes, redirects that stay on this site."""

import pytest

from app.domain.errors import ConfigurationError
from tests.conftest import PASSWORD, login


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


def test_form_post_without_csrf_token_is_refused(app, client, csrf_on):
    resp = client.post("/login/", data={"username": "admin", "password": "Passw0rd!"})
    assert resp.status_code == 400
    assert b"CSRF" in resp.data


def test_form_post_with_csrf_token_is_accepted(app, client, csrf_on):
    import re

    page = client.get("/login/").data.decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
        re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token, "login form carries a CSRF token"
    resp = client.post("/login/", data={"username": "admin", "password": "Passw0rd!",
                                        "csrf_token": token.group(1)})
    assert resp.status_code == 302


def test_api_is_exempt_from_csrf_but_needs_a_token(app, client, csrf_on):
    resp = client.post("/api/v1/funds/", json={"code": "X", "name": "X"})
    assert resp.status_code == 401


def test_wrong_password_is_refused_with_a_message(client):
    resp = client.post("/login/", data={"username": "clerk", "password": "wrong"},
                       follow_redirects=True)
    assert b"Invalid login" in resp.data
    assert client.get("/").status_code == 302


def test_api_login_wrong_password_401(client):
    resp = client.post("/api/v1/security/login",
                       json={"username": "clerk", "password": "nope", "provider": "db"})
    assert resp.status_code == 401


@pytest.fixture
def strict_limit(app):
    old = app.config["AUTH_RATE_LIMIT"]
    app.config["AUTH_RATE_LIMIT"] = "3 per minute"
    app.appbuilder.sm.limiter.reset()
    yield
    app.config["AUTH_RATE_LIMIT"] = old
    app.appbuilder.sm.limiter.reset()


def test_login_form_is_rate_limited(client, strict_limit):
    codes = [client.post("/login/", data={"username": "clerk", "password": "bad"},
                         environ_base={"REMOTE_ADDR": "10.9.9.1"}).status_code for _ in range(5)]
    assert 429 in codes, codes


def test_api_login_is_rate_limited(client, strict_limit):
    codes = [client.post("/api/v1/security/login",
                         json={"username": "clerk", "password": "bad", "provider": "db"},
                         environ_base={"REMOTE_ADDR": "10.9.9.2"}).status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401]
    assert codes[-1] == 429


def test_security_headers(client):
    resp = client.get("/login/")
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


def test_password_policy():
    from flask_appbuilder.exceptions import PasswordComplexityValidationError

    from app.security.passwords import password_policy

    password_policy("Str0ng!Passw")
    for weak in ("short1!", "alllowercase1!", "NoDigits!!", "NoSymbols123", "password1"):
        with pytest.raises(PasswordComplexityValidationError):
            password_policy(weak)


def test_new_user_with_weak_password_is_refused(as_user):
    client = as_user("admin")
    resp = client.post("/users/add", data={
        "first_name": "Weak", "last_name": "Pass", "username": "weakpass",
        "email": "weak@example.invalid", "active": "y", "roles": ["1"],
        "password": "abc", "conf_password": "abc"}, follow_redirects=True)
    assert b"Password needs" in resp.data
    from flask_appbuilder.security.sqla.models import User

    from app.extensions import db

    assert db.session.query(User).filter_by(username="weakpass").first() is None


def test_production_refuses_default_secret_key(monkeypatch):
    from app import _check_production
    from config import DEFAULT_SECRET_KEY

    class FakeApp:
        config = {"IMS_ENV": "production", "SECRET_KEY": DEFAULT_SECRET_KEY}

    with pytest.raises(ConfigurationError):
        _check_production(FakeApp())
    FakeApp.config["SECRET_KEY"] = "short"
    with pytest.raises(ConfigurationError):
        _check_production(FakeApp())
    FakeApp.config["SECRET_KEY"] = "x" * 64
    FakeApp.config["IMS_AUDIT_KEY"] = "a" * 64  # production also needs its own audit key
    _check_production(FakeApp())


def test_production_cookies_are_secure():
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE is True
    assert ProductionConfig.SESSION_COOKIE_HTTPONLY is True
    assert ProductionConfig.SESSION_COOKIE_SAMESITE == "Lax"


def test_unknown_language_code_is_refused(client):
    login(client, "clerk")
    resp = client.get("/lang/xx")
    assert resp.status_code == 404
    assert b"Locale not supported" in resp.data


def test_production_refuses_memory_rate_limit_storage_unless_single_process():
    from app import _check_rate_limit_storage

    class FakeApp:
        config = {"IMS_ENV": "production", "RATELIMIT_STORAGE_URI": "memory://"}

    with pytest.raises(ConfigurationError, match="IMS_SINGLE_PROCESS"):
        _check_rate_limit_storage(FakeApp())
    FakeApp.config["RATELIMIT_STORAGE_URI"] = " MEMORY:// "
    with pytest.raises(ConfigurationError):
        _check_rate_limit_storage(FakeApp())
    FakeApp.config["IMS_SINGLE_PROCESS"] = True
    _check_rate_limit_storage(FakeApp())
    FakeApp.config.update(IMS_SINGLE_PROCESS=False, RATELIMIT_STORAGE_URI="redis://cache:6379/0")
    _check_rate_limit_storage(FakeApp())
    FakeApp.config.update(IMS_ENV="development", RATELIMIT_STORAGE_URI="memory://")
    _check_rate_limit_storage(FakeApp())


def test_production_app_does_not_start_with_memory_rate_limit_storage():
    import os
    import subprocess
    import sys

    from config import BASE_DIR

    env = {**os.environ, "IMS_ENV": "production", "SECRET_KEY": "p" * 64,
           "IMS_AUDIT_KEY": "a" * 64, "RATELIMIT_STORAGE_URI": "memory://"}
    env.pop("IMS_SINGLE_PROCESS", None)
    code = "from app import create_app; create_app()"
    run = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "RATELIMIT_STORAGE_URI is memory://" in run.stderr


# --------------------------------------------------------------------------- roles are code
def _security_state(session):
    from flask_appbuilder.security.sqla.models import PermissionView, Role, User, ViewMenu
    from sqlalchemy import func, select

    session.expire_all()
    roles = {r.name: sorted(p.id for p in r.permissions) for r in session.scalars(select(Role))}
    return (roles, session.scalar(select(func.count(ViewMenu.id))),
            session.scalar(select(func.count(PermissionView.id))),
            sorted((u.username, tuple(sorted(r.name for r in u.roles)))
                   for u in session.scalars(select(User))))


def test_role_and_permission_pages_are_read_only(as_user, session):
    from flask_appbuilder.security.sqla.models import Role
    from sqlalchemy import select

    client = as_user("admin")
    admin_role = session.scalar(select(Role.id).where(Role.name == "Administrator"))
    before = _security_state(session)
    refused = [
        ("GET", "/roles/add", None),
        ("POST", "/roles/add", {"name": "Shadow Admin"}),
        ("GET", f"/roles/edit/{admin_role}", None),
        ("POST", f"/roles/edit/{admin_role}", {"name": "Administrator", "permissions": []}),
        ("POST", "/roles/action_post", {"action": "copyrole", "rowid": [str(admin_role)]}),
        ("POST", f"/roles/action/copyrole/{admin_role}", None),
        ("POST", "/permissions/add", {"name": "can_everything"}),
        ("POST", "/permissions/edit/1", {"name": "can_everything"}),
        ("POST", "/viewmenus/add", {"name": "Backdoor"}),
        ("POST", "/viewmenus/edit/1", {"name": "Backdoor"}),
        ("POST", "/permissionviews/add", {"permission": "1", "view_menu": "1"}),
        ("POST", "/permissionviews/edit/1", {"permission": "1", "view_menu": "1"}),
        ("POST", "/permissionviews/action_post", {"action": "x", "rowid": ["1"]}),
    ]
    for method, url, data in refused:
        resp = client.open(url, method=method, data=data)
        # 403; an action name no view has is a 404 before that (app/guards.py)
        assert resp.status_code in ((403, 404) if "action" in url else (403,)), \
            (method, url, resp.status_code)
    assert _security_state(session) == before
    listed = client.get("/roles/list/")
    assert listed.status_code == 200
    html = listed.get_data(as_text=True)
    assert "Administrator" in html and "/roles/edit/" not in html and "/roles/add" not in html
    assert client.get(f"/roles/show/{admin_role}").status_code == 200
    assert client.get("/permissions/list/").status_code == 200


def test_administrators_still_manage_users_and_their_roles_in_the_ui(as_user, session):
    from flask_appbuilder.security.sqla.models import Role, User
    from sqlalchemy import select

    from tests.conftest import unique

    client = as_user("admin")
    clerk = session.scalar(select(Role.id).where(Role.name == "Income Clerk"))
    cashier = session.scalar(select(Role.id).where(Role.name == "Cashier"))
    name = unique("ui", 10).lower()
    resp = client.post("/users/add", data={
        "first_name": "New", "last_name": "Cashier", "username": name,
        "email": f"{name}@example.invalid", "active": "y", "roles": [str(clerk)],
        "password": "Str0ng!Passw0rd", "conf_password": "Str0ng!Passw0rd"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    user = session.scalar(select(User).where(User.username == name))
    assert [r.name for r in user.roles] == ["Income Clerk"]
    resp = client.post(f"/users/edit/{user.id}", data={
        "first_name": "New", "last_name": "Cashier", "username": name,
        "email": f"{name}@example.invalid", "active": "y", "roles": [str(cashier)]})
    assert resp.status_code == 302
    session.expire_all()
    assert [r.name for r in session.get(User, user.id).roles] == ["Cashier"]
    resp = client.post(f"/users/edit/{user.id}", data={
        "first_name": "New", "last_name": "Cashier", "username": name,
        "email": f"{name}@example.invalid", "roles": [str(cashier)]})  # active unticked
    assert resp.status_code == 302
    session.expire_all()
    assert session.get(User, user.id).active is False
    other = client.application.test_client()
    assert "/login/" in login(other, name, "Str0ng!Passw0rd").headers["Location"]  # refused


# --------------------------------------------------------------------------- sessions
def test_a_session_cookie_copied_before_logout_signs_nobody_in_after_it(app, client):
    login(client, "clerk")
    assert client.get("/notifications/").status_code == 200
    cookie = client.get_cookie("session").value
    copy = app.test_client()
    copy.set_cookie("session", cookie)
    assert copy.get("/notifications/").status_code == 200  # the copy works while the session lives
    assert client.get("/logout/").status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    resp = replay.get("/notifications/")
    assert resp.status_code == 302 and "/login/" in resp.headers["Location"]
    assert replay.get("/api/v1/refunds/").status_code == 401


def test_logout_ends_only_its_own_session(app, client):
    other = app.test_client()
    login(other, "clerk")
    login(client, "clerk")
    client.get("/logout/")
    assert other.get("/notifications/").status_code == 200
    assert client.get("/notifications/").status_code == 302


@pytest.fixture
def own_user(app, session):
    """A clerk of this test only, signed in with PASSWORD, whose password the test may change."""
    from tests.conftest import unique

    sm = app.appbuilder.sm
    name = unique("pw", 10).lower()
    user = sm.add_user(name, "Own", "User", f"{name}@example.invalid",
                       [sm.find_role("Income Clerk")], PASSWORD)
    assert user
    return user


def _password_is(session, user_id, password):
    from flask_appbuilder.security.sqla.models import User
    from werkzeug.security import check_password_hash

    session.expire_all()
    return check_password_hash(session.get(User, user_id).password, password)


NEW_PASSWORD = "N3w!Secret-Pass"


def test_changing_ones_own_password_needs_the_current_one(app, client, session, own_user):
    login(client, own_user.username)
    other = app.test_client()
    login(other, own_user.username)
    form = client.get("/resetmypassword/form").get_data(as_text=True)
    assert 'name="current_password"' in form
    tries = [
        ({"password": NEW_PASSWORD, "conf_password": NEW_PASSWORD}, "This field is required"),
        ({"current_password": "Wr0ng!Password", "password": NEW_PASSWORD,
          "conf_password": NEW_PASSWORD}, "The current password is not correct."),
        ({"current_password": PASSWORD, "password": PASSWORD, "conf_password": PASSWORD},
         "differs from the current one"),
    ]
    for data, message in tries:
        resp = client.post("/resetmypassword/form", data=data)
        assert resp.status_code == 200 and message in resp.get_data(as_text=True), data
        assert _password_is(session, own_user.id, PASSWORD)
    resp = client.post("/resetmypassword/form", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert resp.status_code == 302
    assert _password_is(session, own_user.id, NEW_PASSWORD)
    # this session stays signed in; the user's other sessions end
    assert client.get("/notifications/").status_code == 200
    assert other.get("/notifications/").status_code == 302


def test_guessing_the_current_password_is_rate_limited(app, client, own_user, strict_limit):
    login(client, own_user.username)
    codes = [client.post("/resetmypassword/form", data={
        "current_password": f"Wr0ng!Guess{i}", "password": NEW_PASSWORD,
        "conf_password": NEW_PASSWORD}, environ_base={"REMOTE_ADDR": "10.9.9.3"}).status_code
        for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429, codes


def test_an_administrator_resets_another_users_password_without_theirs(app, as_user, session,
                                                                         own_user):
    victim = app.test_client()
    login(victim, own_user.username)
    admin = as_user("admin")
    resp = admin.post(f"/resetpassword/form?pk={own_user.id}",
                      data={"password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert resp.status_code == 302
    assert _password_is(session, own_user.id, NEW_PASSWORD)
    assert victim.get("/notifications/").status_code == 302  # signed out everywhere


# --------------------------------------------------------------------------- redirects
EVIL_NEXT = ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "//evil.example",
             "/\\evil.example", "\\\\evil.example", " //evil.example", "\x00//evil.example",
             "https://evil.example/", "http:evil.example", "javascript:alert(1)",
             "evil.example", "/\u3000/evil.example", "http://localhost@evil.example/"]


def test_local_path_keeps_this_site_only(app):
    from app.security.redirects import local_path

    with app.test_request_context("/", base_url="http://ims.example:5000"):
        for target in EVIL_NEXT:
            assert local_path(target) is None, repr(target)
        assert local_path("/refunds/?page=2#x") == "/refunds/?page=2#x"
        assert local_path("http://ims.example:5000/suspense/?q=1") == "/suspense/?q=1"
        assert local_path("http://ims.example:5000//evil.example") is None
        assert local_path("") is None and local_path(None) is None


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_notifications_read_never_redirects_off_site(as_user, target):
    resp = as_user("clerk").post("/notifications/read", data={"next": target})
    if "\x00" in target:  # refused whole by the request guard (app/guards.py)
        assert resp.status_code == 400
        return
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/notifications/", repr(target)


def test_notifications_read_goes_back_to_a_page_of_this_site(as_user):
    resp = as_user("clerk").post("/notifications/read", data={"next": "/refunds/?page=2"})
    assert resp.headers["Location"] == "/refunds/?page=2"


def test_other_next_parameters_stay_on_this_site(as_user):
    client = as_user("clerk")
    resp = client.post("/journals/999999/undo", data={"next": "//evil.example", "reason": "x"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/transactions/"
    resp = client.post("/suspense/bulk", data={"action": "unassign", "next": "/\t/evil.example"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/suspense/"


@pytest.mark.parametrize("target", ["/\\evil.example", "/\t/evil.example", "//evil.example"])
def test_login_next_stays_on_this_site(client, target):
    from urllib.parse import quote

    client.get("/logout/")
    resp = client.post("/login/?next=" + quote(target, safe=""),
                       data={"username": "clerk", "password": PASSWORD})
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "evil" not in location
