"""Two-factor set-up shows a QR code (an SVG drawn on the server, with alt text, the secret also
as text), and TOTP secrets are kept encrypted at rest (Fernet, app/security/secret_box.py),
with the upgrade that seals the secrets stored before and the downgrade that opens them."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import time
from urllib.parse import unquote

import pyotp
import pytest
from sqlalchemy import select

from app.models.signin import UserSignin
from app.security import secret_box
from app.security.roles import CLERK
from tests.conftest import PASSWORD, login, unique


@pytest.fixture
def user(app, session):
    from app.services.fund_groups import grant_all_funds

    sm = app.appbuilder.sm
    name = unique("q", 12).lower()
    u = sm.add_user(name, "Qr", "User", f"{name}@example.invalid", [sm.find_role(CLERK)],
                    password=PASSWORD)
    grant_all_funds(session, u.id)
    session.commit()
    return u


def test_set_up_page_shows_a_qr_code_and_the_secret_as_text(app, client, session, user):
    from app.services import signin

    login(client, user.username)
    assert client.post("/my-signin/totp/start").status_code == 302
    page = client.get("/my-signin/")
    assert page.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    img = re.search(r'<img id="totp-qr" src="([^"]+)"[^>]* alt="([^"]+)"', page.text)
    assert img is not None, "the QR code image with its alt text"
    src, alt = img.group(1).replace("&amp;", "&"), img.group(2)
    assert "authenticator" in alt and "secret key" in alt
    assert src.startswith("data:image/svg+xml")
    svg = unquote(src.split(",", 1)[1])
    assert "<svg" in svg and "<path" in svg and "viewBox" in svg
    assert "otpauth" not in svg and user.username not in svg  # drawn, never written as text
    # the code draws this user's own address (the same secret as the text shows)
    uri = signin.provisioning_uri(user, secret)
    assert src == signin.qr_code_data_uri(uri)
    assert src != signin.qr_code_data_uri(signin.provisioning_uri(user, pyotp.random_base32()))


def test_secrets_are_sealed_at_rest_and_open_with_the_key(app, session, user):
    from app.services import signin

    secret = signin.start_totp_setup(session, user)
    session.expire_all()
    stored = session.get(UserSignin, user.id).totp_secret
    assert stored != secret and secret not in stored and stored.startswith("gAAAAA")
    assert signin.totp_secret(session.get(UserSignin, user.id)) == secret
    codes = signin.confirm_totp_setup(session, user, pyotp.TOTP(secret).now())
    assert len(codes) == 10
    # another key does not open it; with the old key among the previous ones it does
    old = dict(app.config)
    try:
        app.config["IMS_TOTP_KEY"] = "a-new-key-for-totp-secrets"
        assert secret_box.unseal(stored) is None
        app.config["IMS_TOTP_PREVIOUS_KEYS"] = old["SECRET_KEY"]
        assert secret_box.unseal(stored) == secret
        assert secret_box.unseal(secret_box.seal("ABC")) == "ABC"
    finally:
        app.config["IMS_TOTP_KEY"] = old.get("IMS_TOTP_KEY", "")
        app.config["IMS_TOTP_PREVIOUS_KEYS"] = old.get("IMS_TOTP_PREVIOUS_KEYS", "")
    # a secret stored in plain text before encryption still works
    assert secret_box.unseal("JBSWY3DPEHPK3PXP") == "JBSWY3DPEHPK3PXP"


def test_upgrade_seals_stored_secrets_and_downgrade_opens_them(app, tmp_path):
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import create_engine

    path = (pathlib.Path(__file__).parents[2] / "migrations" / "versions"
            / "0024_totp_secrets_sealed.py")
    spec = importlib.util.spec_from_file_location("m0022", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    engine = create_engine(f"sqlite:///{tmp_path}/totp.db")
    plain = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    with app.app_context(), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE user_signin (user_id INTEGER PRIMARY KEY, "
                             "totp_secret VARCHAR(64))")
        conn.exec_driver_sql(f"INSERT INTO user_signin VALUES (1, '{plain}'), (2, NULL)")
        with Operations.context(MigrationContext.configure(conn)):
            migration.upgrade()
        sealed = dict(conn.exec_driver_sql("SELECT user_id, totp_secret FROM user_signin").all())
        assert sealed[2] is None and sealed[1].startswith("gAAAAA")
        assert secret_box.unseal(sealed[1]) == plain
        with Operations.context(MigrationContext.configure(conn)):
            migration.downgrade()
        rows = dict(conn.exec_driver_sql("SELECT user_id, totp_secret FROM user_signin").all())
        assert rows == {1: plain, 2: None}
    engine.dispose()


def test_sign_in_with_a_sealed_secret(app, client, session, user):
    from app.services import signin

    secret = signin.start_totp_setup(session, user)
    signin.confirm_totp_setup(session, user, pyotp.TOTP(secret).at(time.time() - 30))
    r = login(client, user.username)
    assert r.status_code == 302 and r.location.endswith("/login/two-factor/")
    assert client.post("/login/two-factor/",
                       data={"code": pyotp.TOTP(secret).now()}).status_code == 302
    session.expire_all()
    assert session.scalar(select(UserSignin.totp_secret).where(
        UserSignin.user_id == user.id)).startswith("gAAAAA")
