"""API: POST /api/v1/suspense/<id>/allocations, suggestions, notes, report; /api/v1/write-offs."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models.workflow import WorkflowTask
from app.services import ledger as L
from app.services import suspense as S
from tests.conftest import unique
from tests.integration.test_suspense_service import assert_books_balance, make_item


def _alloc(api, user, item_id, lines, **kw):
    return api(user).post(f"/api/v1/suspense/{item_id}/allocations", json={"lines": lines, **kw})


def test_allocate_split_then_rest_to_zero(session, api):
    item = make_item(session, 80_00)
    r1, r2 = unique("A"), unique("B")
    resp = _alloc(api, "clerk", item.id, [
        {"fund_code": "TWS", "account_reference": r1, "amount": "30.00"},
        {"fund_code": "TWS", "account_reference": r2, "amount": "20.00"}], note="split")
    assert resp.status_code == 201, resp.json
    assert resp.json["status"] == "posted"
    assert resp.json["remaining_amount"] == "30.00"
    assert len(resp.json["lines"]) == 2 and all(ln["transaction_id"] for ln in resp.json["lines"])
    listed = api("clerk").get(f"/api/v1/suspense/{item.id}")
    assert listed.status_code == 200
    assert listed.json["result"]["remaining_amount"] == "30.00"
    assert listed.json["result"]["status"] == "part_allocated"
    resp = _alloc(api, "clerk", item.id, [{"fund_code": "TWS", "account_reference": r1, "amount": "30.00"}])
    assert resp.status_code == 201 and resp.json["remaining_amount"] == "0.00"
    assert resp.json["item_status"] == "allocated"
    assert_books_balance(session)


def test_bad_input_is_422_and_posts_nothing(session, api):
    item = make_item(session, 10_00)
    cases = [
        [{"fund_code": "TWS", "account_reference": "X", "amount": "10.01"}],
        [{"fund_code": "TWS", "account_reference": "X", "amount": "0.00"}],
        [{"fund_code": "TWS", "account_reference": "X", "amount": "1.005"}],
        [{"fund_code": "TWS", "account_reference": "X", "amount": 1.5}],
        [{"fund_code": "SUSP", "account_reference": "X", "amount": "1.00"}],
        [{"fund_code": "CTAX", "account_reference": "NOTVALID", "amount": "1.00"}],
        "not a list",
    ]
    for lines in cases:
        resp = _alloc(api, "clerk", item.id, lines)
        assert resp.status_code == 422, (lines, resp.json)
        assert resp.json["message"] and isinstance(resp.json["errors"], dict)
    assert api("clerk").post(f"/api/v1/suspense/{item.id}/allocations", data="x",
                             content_type="text/plain").status_code == 422
    assert _alloc(api, "clerk", 99_999_999, cases[0]).status_code == 404
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 10_00


def test_roles(session, api):
    item = make_item(session, 5_00)
    lines = [{"fund_code": "TWS", "account_reference": "R", "amount": "1.00"}]
    assert _alloc(api, "auditor", item.id, lines).status_code == 403
    assert _alloc(api, "cashier", item.id, lines).status_code == 403
    assert api("auditor").get(f"/api/v1/suspense/{item.id}/allocations").status_code == 200
    assert api("auditor").post("/api/v1/write-offs", json={
        "suspense_item_id": item.id, "amount": "1.00", "reason": "x"}).status_code == 403


def test_large_allocation_awaits_approval_via_tasks_api(session, api):
    item = make_item(session, 12_500_00)
    ref = unique("L")
    resp = _alloc(api, "clerk", item.id, [{"fund_code": "TWS", "account_reference": ref,
                                            "amount": "12500.00"}], note="big")
    assert resp.status_code == 201 and resp.json["status"] == "awaiting_approval"
    alloc_id = resp.json["id"]
    tasks = api("manager").get("/api/v1/tasks/").json
    mine = [t for t in tasks if t["subject_type"] == "suspense_allocation" and str(t["subject_id"]) == str(alloc_id)]
    assert len(mine) == 1
    assert api("clerk").post(f"/api/v1/tasks/{mine[0]['id']}/complete",
                             json={"decision": "approve", "comment": ""}).status_code == 403
    done = api("manager").post(f"/api/v1/tasks/{mine[0]['id']}/complete",
                               json={"decision": "approve", "comment": "ok"})
    assert done.status_code == 200, done.json
    got = api("clerk").get(f"/api/v1/suspense/allocations/{alloc_id}").json
    assert got["status"] == "posted"
    assert L.balance_of(session, L.FUND, "TWS", ref) == -12_500_00
    assert_books_balance(session)


def test_idempotency_key_replays(session, api):
    item = make_item(session, 9_00)
    key = uuid.uuid4().hex
    lines = [{"fund_code": "TWS", "account_reference": unique("I"), "amount": "4.00"}]
    a = api("clerk").post(f"/api/v1/suspense/{item.id}/allocations", json={"lines": lines},
                          headers={"Idempotency-Key": key})
    b = api("clerk").post(f"/api/v1/suspense/{item.id}/allocations", json={"lines": lines},
                          headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 201 and a.json["id"] == b.json["id"]
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 5_00


def test_suggestions_notes_report(session, api):
    item = make_item(session, 6_00, narrative="Payment")
    resp = api("clerk").get(f"/api/v1/suspense/{item.id}/suggestions")
    assert resp.status_code == 200 and resp.json["remaining_amount"] == "6.00"
    note = api("clerk").post(f"/api/v1/suspense/{item.id}/notes", json={"text": "called"})
    assert note.status_code == 201 and note.json["author"] == "clerk"
    assert api("clerk").post(f"/api/v1/suspense/{item.id}/notes", json={"text": ""}).status_code == 422
    rep = api("auditor").get("/api/v1/suspense/report")
    assert rep.status_code == 200 and rep.json["reconciliation"]["agrees"] is True
    assert len(rep.json["bands"]) == len(S.BANDS)


def test_write_off_api_climbs_and_posts(session, api):
    item = make_item(session, 40_00)
    resp = api("clerk").post("/api/v1/write-offs", json={"suspense_item_id": item.id,
                                                          "amount": "40.00", "reason": "Unclaimed"})
    assert resp.status_code == 201, resp.json
    wid = resp.json["id"]
    assert resp.json["status"] == "awaiting_approval"
    session.expire_all()
    [task] = session.scalars(select(WorkflowTask).join(WorkflowTask.instance).where(
        WorkflowTask.status == "ready", WorkflowTask.instance.has(subject_type="write_off",
                                                                  subject_id=str(wid)))).all()
    assert task.role == "Finance Manager"
    assert api("manager").post(f"/api/v1/tasks/{task.id}/complete",
                               json={"decision": "approve", "comment": "fine"}).status_code == 200
    got = api("auditor").get(f"/api/v1/write-offs/{wid}")
    assert got.status_code == 200 and got.json["status"] == "posted" and got.json["posting_number"]
    listed = api("auditor").get("/api/v1/write-offs/?status=posted&page_size=500")
    assert wid in [w["id"] for w in listed.json["result"]]
    assert_books_balance(session)


def test_write_off_bad_input(session, api):
    item = make_item(session, 3_00)
    bad = [
        {"suspense_item_id": item.id, "amount": "3.01", "reason": "too much"},
        {"suspense_item_id": item.id, "amount": "1.00", "reason": ""},
        {"suspense_item_id": item.id, "amount": "1.001", "reason": "x"},
        {"suspense_item_id": item.id, "amount": 1, "reason": "x"},
        {"amount": "1.00", "reason": "no source"},
        {"suspense_item_id": item.id, "transaction_id": 1, "amount": "1.00", "reason": "both"},
    ]
    for body in bad:
        resp = api("clerk").post("/api/v1/write-offs", json=body)
        assert resp.status_code == 422, (body, resp.json)
    assert api("clerk").post("/api/v1/write-offs", json={
        "suspense_item_id": 99_999_999, "amount": "1.00", "reason": "x"}).status_code == 404
    assert api("clerk").get("/api/v1/write-offs/99999999").status_code == 404
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 3_00


def test_expected_remaining_mismatch_is_409(session, api):
    item = make_item(session, 20_00)
    lines = [{"fund_code": "TWS", "account_reference": unique("E"), "amount": "5.00"}]
    ok = _alloc(api, "clerk", item.id, lines, expected_remaining="20.00")
    assert ok.status_code == 201
    stale = _alloc(api, "clerk2", item.id, lines, expected_remaining="20.00")
    assert stale.status_code == 409 and "expected_remaining" in stale.json["errors"]
    assert _alloc(api, "clerk2", item.id, lines, expected_remaining=15).status_code == 422
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 15_00
