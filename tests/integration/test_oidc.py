"""Single sign-on by OpenID Connect against a real provider running locally (Authlib's server
components over HTTP, tests/oidc_provider.py): users created and mapped from group claims
(again at each sign-in), their claimed groups kept for the fund-group scoping; a forged or
expired ID token and a replayed state are refused and audited; single sign-on users get no API
token with a password."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.models.audit import AuditEvent
from app.models.signin import UserSignin
from tests.conftest import api_token
from tests.oidc_provider import Person, Provider, authorize_url_answer

ROLE_MAP = {"ims-parking": "Income Clerk", "ims-cash": ["Cashier"], "ims-bosses": "Head of Finance"}
FUND_MAP = {"ims-parking": "Parking", "ims-cash": ["Housing", "Libraries"], "ims-bosses": "*"}


@pytest.fixture(scope="module")
def provider(app):
    p = Provider()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def sso(app, provider):
    saved = {k: app.config.get(k) for k in ("IMS_OIDC_ISSUER", "IMS_OIDC_METADATA_URL",
                                            "IMS_OIDC_CLIENT_ID", "IMS_OIDC_CLIENT_SECRET",
                                            "IMS_OIDC_ROLE_MAP", "IMS_OIDC_FUND_GROUP_MAP")}
    provider.configure(app, IMS_OIDC_ROLE_MAP=json.dumps(ROLE_MAP),
                       IMS_OIDC_FUND_GROUP_MAP=json.dumps(FUND_MAP))
    provider.forge = provider.expired = False
    yield provider
    provider.forge = provider.expired = False
    app.config.update(saved)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _start(client):
    client.get("/logout/")
    r = client.get("/login/sso/")
    assert r.status_code == 302 and r.location.startswith("http://127.0.0.1"), r.location
    return authorize_url_answer(r.location)  # the provider sends the browser back with a code


def _sso_login(client):
    back = _start(client)
    return back, client.get(_path(back))


def _refusals(session, reason_part):
    session.rollback()
    rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "signin.refused")).all()
    return [r for r in rows if reason_part in (json.loads(r.after or "{}").get("reason") or "")]


def test_sso_creates_the_user_and_maps_roles_and_groups_at_each_sign_in(app, client, session,
                                                                          sso):
    from app.services import fund_groups, signin

    sso.user = Person(sub="p-001", username="parking.pat", email="pat@example.invalid",
                      groups=["ims-parking", "unrelated"])
    _, r = _sso_login(client)
    assert r.status_code == 302, r.text[:300]
    page = client.get("/my-signin/")
    assert page.status_code == 200 and "single sign-on" in page.text
    session.rollback()
    user = app.appbuilder.sm.find_user(username="parking.pat")
    assert [x.name for x in user.roles] == ["Income Clerk"] and user.password is None
    assert session.get(UserSignin, user.id).sso_subject == f"{sso.url}|p-001"
    assert signin.idp_groups(session, user.id) == ["ims-parking", "unrelated"]
    with app.app_context():
        assert signin.idp_fund_groups(session, user.id) == ["Parking"]
    # the mapped fund groups are the user's funds (a new user otherwise has none)
    assert fund_groups.user_access(session, user.id)["groups"] == ["Parking"]
    assert not fund_groups.user_access(session, user.id)["all_funds"]

    # the provider's groups change: roles and groups follow at the next sign-in, and the
    # fund-group scoping's hook is told the mapped fund groups
    told = []
    hook = lambda s, u, groups, fund_groups: told.append((u.username, groups, fund_groups))  # noqa: E731
    signin.register_sso_hook(hook)
    sso.user.groups = ["ims-cash"]
    try:
        _, r = _sso_login(client)
    finally:
        signin._SSO_HOOKS.remove(hook)
    assert told == [("parking.pat", ["ims-cash"], ["Housing", "Libraries"])]
    assert r.status_code == 302
    session.rollback()
    user = app.appbuilder.sm.find_user(username="parking.pat")
    assert [x.name for x in user.roles] == ["Cashier"]
    assert signin.idp_groups(session, user.id) == ["ims-cash"]
    assert signin.idp_fund_groups(session, user.id) == ["Housing", "Libraries"]
    # re-applied: Parking is gone, Housing given, Libraries (no such fund group) ignored
    assert fund_groups.user_access(session, user.id)["groups"] == ["Housing"]
    sso.user.groups = ["ims-bosses"]
    _, r = _sso_login(client)
    session.rollback()
    assert fund_groups.user_access(session, user.id) | {"group_ids": []} == {
        "user_id": user.id, "username": "parking.pat", "all_funds": True, "groups": [],
        "group_ids": []}
    sso.user.groups = ["ims-cash"]
    _, r = _sso_login(client)
    session.rollback()
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "signin.sso",
                                                      AuditEvent.entity_id == str(user.id))).all()
    assert len(events) == 4  # one per sign-in

    # an SSO user gets no API token with a password, even if one was set
    app.appbuilder.sm.reset_password(user.id, "An0ther-Passw0rd!")
    client.get("/logout/")
    r = client.post("/api/v1/security/login", json={"username": "parking.pat",
                                                      "password": "An0ther-Passw0rd!",
                                                      "provider": "db"})
    assert r.status_code == 401 and "single sign-on" in r.json["message"]
    assert client.post("/login/", data={"username": "parking.pat",
                                        "password": "An0ther-Passw0rd!"}).status_code == 302
    assert client.get("/my-signin/").status_code != 200


def test_signing_out_also_signs_out_at_the_provider(client, session, sso):
    """A user who signed in through the provider is sent on to its end_session_endpoint with our
    client id and the login page to come back to; the provider signs them out and sends them
    back. A user who signed in with a password signs out of the IMS only."""
    import requests

    from tests.conftest import login

    sso.user = Person(sub="p-out", username="logout.lou", email="lou@example.invalid",
                      groups=["ims-parking"])
    _, r = _sso_login(client)
    assert r.status_code == 302 and client.get("/my-signin/").status_code == 200
    out = client.get("/logout/")
    assert out.status_code == 302 and out.location.startswith(f"{sso.url}/logout?"), out.location
    asked = parse_qs(urlsplit(out.location).query)
    assert asked["client_id"] == ["ims"]
    back = asked["post_logout_redirect_uri"][0]
    assert urlsplit(back).path == "/login/"
    answer = requests.get(out.location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["Location"] == back
    assert sso.logouts[-1]["client_id"] == "ims" and sso.user is None
    assert client.get("/my-signin/").status_code == 302  # signed out of the IMS too

    before = len(sso.logouts)
    login(client, "clerk")
    out = client.get("/logout/")
    assert out.status_code == 302 and not out.location.startswith(sso.url)
    assert len(sso.logouts) == before


def test_no_mapped_role_is_refused(client, session, sso):
    sso.user = Person(sub="p-002", username="nobody.here", email="n@example.invalid",
                      groups=["elsewhere"])
    _, r = _sso_login(client)
    assert r.status_code == 302 and "/login/" in r.location
    assert client.get("/my-signin/").status_code != 200
    assert _refusals(session, "no_mapped_role")


def test_new_user_with_another_users_email_is_refused(client, session, sso):
    sso.user = Person(sub="p-006", username="cash.clone", email="cashier@llanwern.gov.uk.invalid",
                      groups=["ims-cash"])
    _, r = _sso_login(client)
    assert r.status_code == 302 and "/login/" in r.location
    assert client.get("/my-signin/").status_code != 200
    assert _refusals(session, "email_of_another_user")


def test_forged_id_token_is_refused_and_audited(client, session, sso):
    sso.user = Person(sub="p-003", username="forged.fred", email="f@example.invalid",
                      groups=["ims-bosses"])
    sso.forge = True  # signed with a key the provider does not publish
    before = len(_refusals(session, "Error"))
    _, r = _sso_login(client)
    assert r.status_code == 302 and "/login/" in r.location
    assert client.get("/my-signin/").status_code != 200
    assert len(_refusals(session, "Error")) == before + 1
    assert _refusals(session, "Signature") or _refusals(session, "KeyId")


def test_expired_id_token_is_refused_and_audited(client, session, sso):
    sso.user = Person(sub="p-004", username="late.lowri", email="l@example.invalid",
                      groups=["ims-bosses"])
    sso.expired = True
    _, r = _sso_login(client)
    assert r.status_code == 302 and "/login/" in r.location
    assert client.get("/my-signin/").status_code != 200
    assert _refusals(session, "Expired")


def test_replayed_state_is_refused_and_audited(client, session, sso):
    sso.user = Person(sub="p-005", username="replay.rhys", email="r@example.invalid",
                      groups=["ims-parking"])
    back, r = _sso_login(client)
    assert r.status_code == 302 and client.get("/my-signin/").status_code == 200
    client.get("/logout/")
    before = len(_refusals(session, "State"))
    again = client.get(_path(back))  # the same answer from the provider, sent again
    assert again.status_code == 302 and "/login/" in again.location
    assert client.get("/my-signin/").status_code != 200
    assert len(_refusals(session, "State")) == before + 1
    # a state the IMS never issued is refused the same way
    bad = client.get("/login/sso/callback?code=abc&state=made-up")
    assert bad.status_code == 302 and "/login/" in bad.location
    assert len(_refusals(session, "State")) == before + 2


def test_sso_off_without_configuration(client):
    assert client.get("/login/sso/").status_code == 404
    assert 'id="sso-login"' not in client.get("/login/").text


@pytest.mark.parametrize("settings", [
    {"IMS_LOCAL_PASSWORDS": False},
    {"IMS_OIDC_ROLE_MAP": "not json"},
    {"IMS_OIDC_ROLE_MAP": '["Income Clerk"]'},
    {"IMS_OIDC_FUND_GROUP_MAP": '{"g": 3}'},
])
def test_configuration_nobody_could_use_is_refused_at_start_up(settings):
    from app.domain.errors import ConfigurationError
    from app.security.oidc import check_configuration

    with pytest.raises(ConfigurationError):
        check_configuration(settings)
    ok = {"IMS_LOCAL_PASSWORDS": False, "IMS_OIDC_CLIENT_ID": "ims",
          "IMS_OIDC_ISSUER": "https://login.example", "IMS_OIDC_ROLE_MAP": '{"g": ["Cashier"]}'}
    check_configuration(ok)


def test_a_parking_user_signed_in_through_the_provider_sees_only_parking_income(
        app, client, session, sso):
    """Issue 20's journey: the provider's group makes the user an Income Clerk of the Parking
    fund group; the transaction search (page session on the API) then holds Parking funds only."""
    from app.models.fund_group import FundGroup
    from app.models.reference import Fund
    from app.services import fund_groups
    from app.services.receipts import take_receipt
    from tests.conftest import unique

    # income in a Parking fund and in another fund
    parking = session.scalar(select(FundGroup).where(FundGroup.name == "Parking"))
    car_park = Fund(code=unique("CP", 8), name="Car park test fund", gl_code="3999-CP")
    session.add(car_park)
    parking.funds.append(car_park)
    session.commit()
    code = car_park.code
    refs = {}
    for fund in (car_park.code, "TWS"):
        refs[fund] = unique("R", 10)
        take_receipt(session, lines=[{"fund_code": fund, "account_reference": refs[fund],
                                      "amount": "5.00"}],
                     payment_method_code="CASH", actor="cashier")
    try:
        sso.user = Person(sub="p-park-2", username="parking.sam", email="sam@example.invalid",
                          groups=["ims-parking"])
        _, r = _sso_login(client)
        assert r.status_code == 302, r.text[:300]
        session.rollback()
        parking = session.scalar(select(FundGroup).where(FundGroup.name == "Parking"))
        allowed = {f.code for f in parking.funds}
        car_park = session.scalar(select(Fund).where(Fund.code == car_park.code))
        user = app.appbuilder.sm.find_user(username="parking.sam")
        assert fund_groups.user_access(session, user.id)["groups"] == ["Parking"]
        seen = client.get("/api/v1/transactions/?page_size=500&date_from=2000-01-01")
        assert seen.status_code == 200, seen.text[:300]
        codes = {t["fund_code"] for t in seen.json["result"]}
        assert car_park.code in codes and codes <= allowed, codes
        assert refs["TWS"] not in seen.text
        everything = client.get("/api/v1/transactions/?page_size=500&fund=CTAX")
        assert everything.status_code in (200, 404)
        if everything.status_code == 200:
            assert everything.json["result"] == []
        client.get("/logout/")
        token = api_token(client, "clerk")
        wider = client.get("/api/v1/transactions/?page_size=500&date_from=2000-01-01",
                           headers={"Authorization": f"Bearer {token}"})
        assert {t["fund_code"] for t in wider.json["result"]} - allowed, (wider.status_code,
                                                                          wider.json)
    finally:  # the demo Parking group keeps its own funds for the tests that follow
        session.rollback()
        group = session.scalar(select(FundGroup).where(FundGroup.name == "Parking"))
        group.funds = [f for f in group.funds if f.code != code]
        session.commit()
