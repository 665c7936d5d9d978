"""Security baseline: CSRF, login rate limits, headers, password policy, production config."""

import pytest

from app.domain.errors import ConfigurationError
from tests.conftest import login


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
