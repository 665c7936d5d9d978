"""API security: roles and permissions are read-only (users stay manageable), refused tokens are
401, a session cookie needs the CSRF token on unsafe requests, and an Idempotency-Key cannot be
reused for a different request."""

from __future__ import annotations

import io
import re
import time
import uuid

import jwt
import pytest
from flask_appbuilder.security.sqla.models import PermissionView, Role, User, ViewMenu
from sqlalchemy import func, select

from app.models.imports import ImportBatch
from app.models.ledger import IdempotencyKey, PostingGroup
from app.models.refund import Refund
from app.models.suspense_work import SuspenseAllocation, WriteOff
from app.security.roles import ADMIN, CASHIER, CLERK
from tests.conftest import PASSWORD, api_token, login, unique
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.integration.test_suspense_service import make_item


# --------------------------------------------------------------------------- roles are code
def _security_state(session):
    """Everything a role or permission write could change."""
    session.expire_all()
    roles = {r.name: sorted(p.id for p in r.permissions) for r in session.scalars(select(Role))}
    return (roles, session.scalar(select(func.count(ViewMenu.id))),
            session.scalar(select(func.count(PermissionView.id))),
            sorted((u.username, tuple(sorted(r.name for r in u.roles)))
                   for u in session.scalars(select(User))))


def _role_id(session, name):
    return session.scalar(select(Role.id).where(Role.name == name))


def test_the_lock_out_request_and_every_role_or_permission_write_is_refused(client, session):
    admin_role = _role_id(session, ADMIN)
    pv_id = session.scalar(select(PermissionView.id))
    vm_id = session.scalar(select(ViewMenu.id))
    before = _security_state(session)
    writes = [
        ("POST", f"/api/v1/security/roles/{admin_role}/permissions",
         {"permission_view_menu_ids": []}),
        ("POST", f"/api/v1/security/roles/{admin_role}/permissions",
         {"permission_view_menu_ids": [pv_id]}),
        ("POST", "/api/v1/security/roles/", {"name": "Shadow Admin"}),
        ("PUT", f"/api/v1/security/roles/{admin_role}", {"name": "Renamed"}),
        ("DELETE", f"/api/v1/security/roles/{admin_role}", None),
        ("PUT", f"/api/v1/security/roles/{admin_role}/users", {"user_ids": []}),
        ("PUT", f"/api/v1/security/roles/{admin_role}/groups", {"group_ids": []}),
        ("POST", "/api/v1/security/permissions-resources/", {"permission_id": 1, "view_menu_id": 1}),
        ("PUT", f"/api/v1/security/permissions-resources/{pv_id}", {"view_menu_id": vm_id}),
        ("DELETE", f"/api/v1/security/permissions-resources/{pv_id}", None),
        ("POST", "/api/v1/security/resources/", {"name": "Backdoor"}),
        ("PUT", f"/api/v1/security/resources/{vm_id}", {"name": "Renamed"}),
        ("DELETE", f"/api/v1/security/resources/{vm_id}", None),
        ("POST", "/api/v1/security/permissions/", {"name": "can_everything"}),
        ("PUT", "/api/v1/security/permissions/1", {"name": "can_everything"}),
        ("DELETE", "/api/v1/security/permissions/1", None),
    ]
    headers = {"Authorization": f"Bearer {api_token(client, 'admin')}"}
    client.get("/logout/")
    for method, url, body in writes:
        resp = client.open(url, method=method, json=body, headers=headers)
        assert resp.status_code == 403, (method, url, resp.status_code, resp.get_data(as_text=True))
        assert "ims sync-roles" in resp.json["message"], (method, url)
    assert _security_state(session) == before
    # reading stays possible
    assert client.get("/api/v1/security/roles/", headers=headers).status_code == 200
    listed = client.get(f"/api/v1/security/roles/{admin_role}/permissions/", headers=headers)
    assert listed.status_code == 200 and listed.json["result"]


def test_role_writes_are_refused_with_the_session_cookie_too(app, as_user, session):
    client = as_user("admin")
    admin_role = _role_id(session, ADMIN)
    before = _security_state(session)
    resp = client.post(f"/api/v1/security/roles/{admin_role}/permissions",
                       json={"permission_view_menu_ids": []})
    assert resp.status_code == 403
    assert client.put(f"/api/v1/security/roles/{admin_role}/users",
                      json={"user_ids": []}).status_code == 403
    assert _security_state(session) == before
    assert client.get("/users/list/").status_code == 200  # the administrator is still one


def test_administrators_still_manage_users_and_their_roles_through_the_api(api, session):
    client = api("admin")
    clerk, cashier = _role_id(session, CLERK), _role_id(session, CASHIER)
    name = unique("u", 10).lower()
    created = client.post("/api/v1/security/users/", json={
        "first_name": "New", "last_name": "Clerk", "username": name,
        "email": f"{name}@example.invalid", "active": True, "roles": [clerk],
        "password": "Str0ng!Passw0rd"})
    assert created.status_code == 201, created.json
    user_id = created.json["id"]
    assert client.put(f"/api/v1/security/users/{user_id}",
                      json={"roles": [cashier]}).status_code == 200
    session.expire_all()
    user = session.get(User, user_id)
    assert [r.name for r in user.roles] == [CASHIER]
    assert client.put(f"/api/v1/security/users/{user_id}", json={"active": False}).status_code == 200
    session.expire_all()
    assert session.get(User, user_id).active is False
    assert client.get("/api/v1/security/users/?q=(page_size:100)").status_code == 200


# --------------------------------------------------------------------------- refused tokens
def _claims(**kw):
    now = int(time.time())
    return {"sub": "1", "type": "access", "fresh": False, "jti": uuid.uuid4().hex,
            "iat": now, "nbf": now, "exp": now + 600, **kw}


@pytest.mark.parametrize("kind", ["forged", "garbage", "empty", "expired", "unknown_user", "none_alg"])
def test_a_refused_token_is_401_with_the_api_error_shape(app, client, kind):
    key = app.config.get("JWT_SECRET_KEY") or app.config["SECRET_KEY"]
    token = {
        "forged": lambda: jwt.encode(_claims(), "not-the-servers-key-0123456789abcdef", "HS256"),
        "garbage": lambda: "not.a.token",
        "empty": lambda: "",
        "expired": lambda: jwt.encode(_claims(exp=int(time.time()) - 60), key, "HS256"),
        "unknown_user": lambda: jwt.encode(_claims(sub="99999999"), key, "HS256"),
        "none_alg": lambda: jwt.encode(_claims(), None, "none"),
    }[kind]()
    client.get("/logout/")
    resp = client.get("/api/v1/refunds/", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, (kind, resp.status_code, resp.get_data(as_text=True))
    assert isinstance(resp.json.get("message"), str) and resp.json["message"]
    assert "msg" not in resp.json


def test_no_token_is_401_and_a_good_one_works(client, api):
    client.get("/logout/")
    resp = client.get("/api/v1/refunds/")
    assert resp.status_code == 401 and resp.json["message"]
    assert api("auditor").get("/api/v1/refunds/").status_code == 200


# --------------------------------------------------------------------------- CSRF on the API
@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def _import_file(tag):
    return (f"transaction_date,account_reference,amount,narrative,fund_code\n"
            f"2026-01-05,{tag},1.00,x,TWS\n").encode()


def _upload(client, content, **kw):
    return client.post("/api/v1/imports/", data={"file": (io.BytesIO(content), "f.csv"),
                                                  "format": "ims_csv"},
                       content_type="multipart/form-data", **kw)


def _page_csrf_token(client, url="/imports/"):
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries a CSRF token"
    return match.group(1)


def _imports(session):
    session.expire_all()
    return session.scalar(select(func.count(ImportBatch.id)))


def test_session_cookie_api_post_without_csrf_token_is_refused(app, client, session, inline,
                                                               csrf_on):
    app.config["WTF_CSRF_ENABLED"] = False
    login(client, "clerk")
    app.config["WTF_CSRF_ENABLED"] = True
    before = _imports(session)
    resp = _upload(client, _import_file(unique("C", 8)))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "CSRF" in resp.json["message"]
    assert _imports(session) == before
    txn = make_txn(session, 50_00)
    deploy_refund_workflow(session)
    refused = client.post("/api/v1/refunds", json={"transaction_id": txn.id, "amount": "1.00",
                                                   "reason": "x", "method": "card"})
    assert refused.status_code == 400
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == txn.id)) == 0
    # reading needs no token
    assert client.get("/api/v1/refunds/").status_code == 200


def test_session_cookie_api_post_with_the_csrf_header_is_accepted(app, client, session, inline,
                                                                  csrf_on):
    app.config["WTF_CSRF_ENABLED"] = False
    login(client, "clerk")
    app.config["WTF_CSRF_ENABLED"] = True
    token = _page_csrf_token(client)
    resp = _upload(client, _import_file(unique("C", 8)), headers={"X-CSRFToken": token})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert _upload(client, _import_file(unique("C", 8)),
                   headers={"X-CSRFToken": "forged"}).status_code == 400


def test_bearer_token_api_post_needs_no_csrf_token(app, client, inline, csrf_on):
    token = api_token(client, "clerk")
    client.get("/logout/")
    resp = _upload(client, _import_file(unique("C", 8)),
                   headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_api_login_needs_no_csrf_token(client, csrf_on):
    client.get("/logout/")
    resp = client.post("/api/v1/security/login", json={"username": "clerk", "password": PASSWORD,
                                                        "provider": "db"})
    assert resp.status_code == 200 and resp.json["access_token"]


# --------------------------------------------------------------------------- Idempotency-Key
def _receipt(ref, amount="5.00"):
    return {"payment_method_code": "CASH",
            "lines": [{"fund_code": "TWS", "account_reference": ref, "amount": amount}]}


def _groups(session, kind):
    session.expire_all()
    return session.scalar(select(func.count(PostingGroup.id)).where(PostingGroup.kind == kind))


def test_receipt_key_reused_with_another_body_is_422(api, session):
    key = str(uuid.uuid4())
    ref = unique("IK", 10)
    first = api("cashier").post("/api/v1/receipts", json=_receipt(ref),
                                headers={"Idempotency-Key": key})
    assert first.status_code == 201
    before = _groups(session, "receipt")
    other = api("cashier").post("/api/v1/receipts", json=_receipt(ref, "500.00"),
                                headers={"Idempotency-Key": key})
    assert other.status_code == 422, other.json
    assert "Idempotency-Key" in other.json["errors"]
    assert _groups(session, "receipt") == before
    # the same body, keys in another order, is the same request: the first result again
    same = {"lines": [{"amount": "5.00", "account_reference": ref, "fund_code": "TWS"}],
            "payment_method_code": "CASH"}
    again = api("cashier").post("/api/v1/receipts", json=same, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json == first.json
    assert _groups(session, "receipt") == before
    stored = session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
    assert stored.request_fingerprint and len(stored.request_fingerprint) == 64


def test_refund_key_reused_with_another_body_is_422(api, session):
    deploy_refund_workflow(session)
    txn = make_txn(session, 100_00)
    key = unique("idem-", 20)
    body = {"transaction_id": txn.id, "amount": "10.00", "reason": "Overpaid", "method": "card"}
    first = api("clerk").post("/api/v1/refunds", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.json
    other = api("clerk").post("/api/v1/refunds", json={**body, "amount": "90.00"},
                              headers={"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    again = api("clerk").post("/api/v1/refunds", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json["id"] == first.json["id"]
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == txn.id)) == 1


def test_write_off_key_reused_with_another_body_is_422(api, session):
    item = make_item(session, 30_00)
    key = uuid.uuid4().hex
    body = {"suspense_item_id": item.id, "amount": "10.00", "reason": "Unclaimed"}
    first = api("clerk").post("/api/v1/write-offs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.json
    other = api("clerk").post("/api/v1/write-offs", json={**body, "amount": "20.00"},
                              headers={"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    again = api("clerk").post("/api/v1/write-offs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json["id"] == first.json["id"]
    session.expire_all()
    assert session.scalar(select(func.count(WriteOff.id)).where(
        WriteOff.suspense_item_id == item.id)) == 1


def test_allocation_key_reused_with_another_body_is_422(api, session):
    item = make_item(session, 9_00)
    key = uuid.uuid4().hex
    ref = unique("I")
    url = f"/api/v1/suspense/{item.id}/allocations"
    body = {"lines": [{"fund_code": "TWS", "account_reference": ref, "amount": "4.00"}]}
    first = api("clerk").post(url, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.json
    other = api("clerk").post(url, json={"lines": [{"fund_code": "TWS", "account_reference": ref,
                                                    "amount": "5.00"}]},
                              headers={"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    again = api("clerk").post(url, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json["id"] == first.json["id"]
    session.expire_all()
    assert session.scalar(select(func.count(SuspenseAllocation.id)).where(
        SuspenseAllocation.suspense_item_id == item.id)) == 1
