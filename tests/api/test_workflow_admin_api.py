"""Workflow administration through the API: validate, deploy with a version check, versions,
roll back, the whole approval scheme at once; and two administrators saving at once."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.workflow import WorkflowDefinition
from app.services import approval_limits as limits
from app.services import workflow as wf
from tests.conftest import api_token
from tests.workflows.helpers import demo_xml, start, variant, with_action

XML = {"Content-Type": "application/xml"}
on_postgres = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                                 reason="concurrency tests need PostgreSQL")



def test_validate_names_elements_and_summarises_changes_without_deploying(session, demo, api):
    bad = with_action(demo_xml(), 'current_role == "Finance Manager"', "lambda: 1")
    resp = api("wfadmin").post("/api/v1/workflows/approval_demo/validate", data=bad, headers=XML)
    assert resp.status_code == 200
    assert resp.json["valid"] is False
    assert resp.json["problems"][0]["element"] == "Flow_ToFM"
    good = variant(demo_xml())
    resp = api("wfadmin").post("/api/v1/workflows/approval_demo/validate", data=good, headers=XML)
    assert resp.json["valid"] is True and not resp.json["unchanged"]
    [change] = resp.json["changes"]["changed"]
    assert change["id"] == "approval_demo" and change["fields"][0]["field"] == "name"
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    assert api("manager").post("/api/v1/workflows/approval_demo/validate", data=good,
                               headers=XML).status_code == 403


def test_put_with_if_match_refuses_a_stale_version(session, demo, api):
    stale = {**XML, "If-Match": str(demo.version - 1 if demo.version > 1 else demo.version + 5)}
    resp = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers=stale)
    assert resp.status_code == 409
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    resp = api("admin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                            headers={**XML, "If-Match": f'"{demo.version}"'})
    assert resp.status_code == 201, resp.json  # Administrators may deploy too
    assert resp.json["version"] > demo.version
    assert api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=demo_xml(),
                              headers={**XML, "If-Match": "three"}).status_code == 422


def test_versions_and_roll_back(session, demo, api):
    start(session, 5_00)
    resp = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers=XML)
    new_version = resp.json["version"]
    rows = api("auditor").get("/api/v1/workflows/approval_demo/versions").json
    by_version = {r["version"]: r for r in rows}
    assert by_version[new_version]["active"] and not by_version[demo.version]["active"]
    assert by_version[demo.version]["running"] >= 1 and by_version[new_version]["instances"] == 0
    assert by_version[new_version]["deployed_by"] == "wfadmin"
    assert api("auditor").get("/api/v1/workflows/nope/versions").status_code == 404
    url = f"/api/v1/workflows/approval_demo/versions/{demo.version}/activate"
    assert api("head").post(url).status_code == 403
    assert api("wfadmin").post(url, headers={"If-Match": str(demo.version)}).status_code == 409
    resp = api("wfadmin").post(url, headers={"If-Match": str(new_version)})
    assert resp.status_code == 200 and resp.json["version"] == demo.version
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    assert api("wfadmin").post(url).status_code == 422  # already active
    assert api("wfadmin").post("/api/v1/workflows/approval_demo/versions/999/activate").status_code == 404
    # a new request follows the rolled-back version
    assert start(session, 6_00).definition_id == demo.id


# ----------------------------------------------------------------------------- scheme
DEMO = [{"min_amount": "0.00", "max_amount": "100.00", "roles": ["Finance Manager"]},
        {"min_amount": "100.01", "max_amount": "10000.00", "roles": ["Finance Manager"]},
        {"min_amount": "10000.01", "max_amount": None, "roles": ["Head of Finance"]}]


def test_scheme_get_and_put(session, api):
    got = api("clerk").get("/api/v1/approval-limits/scheme/suspense_allocation")
    assert got.status_code == 200 and got.json["problems"] == []
    original = got.json
    assert [b["min_amount"] for b in original["bands"]] == ["0.00", "10000.01"]
    url = "/api/v1/approval-limits/scheme/suspense_allocation"
    assert api("manager").put(url, json={"bands": DEMO}).status_code == 403
    gap = [dict(DEMO[0]), dict(DEMO[2])]
    resp = api("wfadmin").put(url, json={"bands": gap})
    assert resp.status_code == 422 and "Nothing covers 100.01 to 10000.00" in str(resp.json)
    resp = api("wfadmin").put(url, json={"bands": [{**DEMO[0], "min_amount": 5.0}]})
    assert resp.status_code == 422
    resp = api("wfadmin").put(url, json={"bands": DEMO, "fingerprint": "stale"})
    assert resp.status_code == 409
    assert api("clerk").get(url).json["fingerprint"] == original["fingerprint"]
    try:
        resp = api("wfadmin").put(url, json={"bands": DEMO},
                                  headers={"If-Match": original["fingerprint"]})
        assert resp.status_code == 200, resp.json
        assert [(b["min_amount"], b["approvals_required"]) for b in resp.json["bands"]] == [
            ("0.00", 1), ("100.01", 1), ("10000.01", 1)]
        session.expire_all()
        assert limits.route_for(session, "suspense_allocation", 50) == (1, ["Finance Manager"])
        events = session.scalars(select(AuditEvent).where(AuditEvent.entity == "ApprovalLimit")
                                 .order_by(AuditEvent.id.desc()).limit(2)).all()
        assert all(e.actor == "wfadmin" for e in events)
    finally:
        resp = api("wfadmin").put(url, json={"bands": [
            {"min_amount": b["min_amount"], "max_amount": b["max_amount"], "roles": b["roles"]}
            for b in original["bands"]]})
        assert resp.status_code == 200
    assert api("clerk").get(url).json["fingerprint"] == original["fingerprint"]
    assert api("clerk").get("/api/v1/approval-limits/scheme/nothing").status_code == 404


# ----------------------------------------------------------------------------- concurrency
@on_postgres
def test_two_administrators_saving_at_once_cannot_overwrite_each_other(app, session, demo, client):
    def newest():
        session.expire_all()
        return session.scalar(select(func.max(WorkflowDefinition.version)).where(
            WorkflowDefinition.process_id == "approval_demo"))

    before, base = newest(), demo.version
    tokens = {u: api_token(client, u) for u in ("wfadmin", "admin")}
    bodies = {"wfadmin": variant(demo_xml()), "admin": variant(demo_xml())}
    barrier = threading.Barrier(2)
    statuses = {}

    def go(user):
        c = app.test_client()
        barrier.wait()
        resp = c.put("/api/v1/workflows/approval_demo/bpmn", data=bodies[user],
                     headers={**XML, "If-Match": str(base),
                              "Authorization": f"Bearer {tokens[user]}"})
        statuses[user] = resp.status_code

    threads = [threading.Thread(target=go, args=(u,)) for u in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses.values()) == [201, 409], statuses
    assert newest() == before + 1  # one new version, the other save refused
    assert wf.active_definition(session, "approval_demo").version == before + 1
