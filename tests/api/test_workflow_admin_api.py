"""Workflow administration through the API: validate; deploy, roll back and approval-limit
changes as proposals (202) a Head of Finance approves through the tasks API; the four-eyes floor
against the attacks found (a scheme with no approval, a Workflow Administrator lane, a workflow
that approves by itself); bad input; two administrators proposing at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.refund import Refund
from app.models.workflow import ApprovalLimit, ConfigProposal, WorkflowDefinition
from app.security import roles as R
from app.services import approval_limits as limits
from app.services import config_proposals as CP
from app.services import refunds as RF
from app.services import workflow as wf
from app.services import workflow_admin as admin
from tests.conftest import api_token
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.workflows.helpers import demo_xml, start, variant, with_action
from tests.workflows.test_four_eyes import _start_approved_end, _xml, approves_at_once

XML = {"Content-Type": "application/xml"}


def _task(api, proposal_id, user="head"):
    tasks = api(user).get("/api/v1/tasks/").json
    return next((t for t in tasks if t["subject_type"] == "configuration_change"
                 and t["subject_id"] == str(proposal_id)), None)


def _decide(api, proposal_id, user="head", decision="approve", comment="", task_id=None):
    task_id = task_id or _task(api, proposal_id, user)["id"]
    return api(user).post(f"/api/v1/tasks/{task_id}/complete",
                          json={"decision": decision, "comment": comment})


def _active(session, process_id="approval_demo"):
    session.expire_all()
    return wf.active_definition(session, process_id)


def _proposals(session):
    session.expire_all()
    return session.scalar(select(func.count(ConfigProposal.id)))


@pytest.fixture
def scheme_restored(session):
    """Every action's bands as they were, back after the test."""
    before = {a: limits.band_dicts(limits.scheme(session, a)) for a in
              ("refund", "write_off", "suspense_allocation")}
    yield before
    session.rollback()
    for action, bands in before.items():
        if limits.band_dicts(limits.scheme(session, action)) != bands:
            limits.replace_scheme(session, action, bands, complete=False)


@pytest.fixture
def refund_workflow(session):
    deploy_refund_workflow(session)
    session.commit()
    original = wf.active_definition(session, RF.PROCESS_ID)
    yield original
    session.rollback()
    if wf.active_definition(session, RF.PROCESS_ID).id != original.id:
        admin.activate_version(session, RF.PROCESS_ID, original.version, "test-cleanup")


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


# ----------------------------------------------------------------------------- proposals
def test_a_new_version_is_proposed_and_takes_effect_when_a_head_of_finance_approves(
        session, demo, api):
    resp = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers={**XML, "If-Match": str(demo.version)})
    assert resp.status_code == 202, resp.json
    body = resp.json
    assert body["status"] == "pending_approval" and body["version"] > demo.version
    pid = body["proposal_id"]
    # nothing changes yet
    listed = api("clerk").get("/api/v1/workflows/").json
    assert next(r for r in listed if r["process_id"] == "approval_demo")["version"] == demo.version
    versions = {v["version"]: v for v in
                api("auditor").get("/api/v1/workflows/approval_demo/versions").json}
    assert not versions[body["version"]]["active"]
    assert versions[body["version"]]["proposal"] == {"id": pid, "status": "pending"}
    shown = api("auditor").get(f"/api/v1/configuration-proposals/{pid}").json
    assert shown["status"] == "pending" and shown["proposed_by"] == "wfadmin"
    assert shown["changes"]["changed"][0]["id"] == "approval_demo" and shown["task_id"]
    assert pid in [p["id"] for p in
                   api("clerk").get("/api/v1/configuration-proposals/?status=pending").json]
    # the task is in the Head of Finance's list only
    task = _task(api, pid)
    assert task["role"] == R.HEAD and task["process_id"] == "configuration_approval"
    for user in ("wfadmin", "manager", "admin"):
        assert _task(api, pid, user) is None
        assert _decide(api, pid, user, task_id=task["id"]).status_code == 403
    assert _decide(api, pid, "head", "reject", "").status_code == 422  # a reason is needed
    done = _decide(api, pid, "head")
    assert done.status_code == 200 and done.json["outcome"] == "approved"
    assert _active(session).version == body["version"]
    versions = {v["version"]: v for v in
                api("auditor").get("/api/v1/workflows/approval_demo/versions").json}
    assert versions[body["version"]]["active"] and versions[body["version"]]["deployed_by"] == "wfadmin"
    assert api("auditor").get(f"/api/v1/configuration-proposals/{pid}").json["status"] == "approved"
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "workflow.deploy", AuditEvent.entity_id == str(_active(session).id))).one()
    assert event.actor == "head" and '"proposed_by":"wfadmin"' in event.after


def test_a_rejected_proposal_changes_nothing(session, demo, api):
    resp = api("admin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                            headers=XML)  # Administrators may propose too
    assert resp.status_code == 202
    pid = resp.json["proposal_id"]
    assert _decide(api, pid, "head", "reject", "Not needed").status_code == 200
    assert _active(session).id == demo.id
    shown = api("admin").get(f"/api/v1/configuration-proposals/{pid}").json
    assert shown["status"] == "rejected" and shown["decision_comment"] == "Not needed"
    assert shown["task_id"] is None


def test_a_proposer_holding_head_of_finance_cannot_approve_their_own(app, session, demo, api,
                                                                     client):
    sm = app.appbuilder.sm
    name = "wf_head_both"
    user = sm.find_user(username=name) or sm.add_user(
        name, "Both", "Roles", f"{name}@example.invalid",
        [sm.find_role(R.WFADMIN), sm.find_role(R.HEAD)], password="Passw0rd!")
    user.active = True
    session.commit()
    try:
        resp = api(name).put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                             headers=XML)
        assert resp.status_code == 202
        pid = resp.json["proposal_id"]
        assert _task(api, pid, name) is None  # not in their own list
        task = _task(api, pid, "head")
        resp = _decide(api, pid, name, task_id=task["id"])
        assert resp.status_code == 403 and "four-eyes" in resp.json["message"]
        assert _active(session).id == demo.id
        assert _decide(api, pid, "head", "reject", "Cleaning up").status_code == 200
    finally:
        session.rollback()
        user = sm.find_user(username=name)
        user.active = False  # no notifications or inboxes for later tests
        session.commit()


def test_put_with_if_match_refuses_a_stale_version_at_once(session, demo, api):
    count = _proposals(session)
    stale = {**XML, "If-Match": str(demo.version + 5)}
    resp = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers=stale)
    assert resp.status_code == 409
    assert api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=demo_xml(),
                              headers={**XML, "If-Match": "three"}).status_code == 422
    assert api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=demo_xml(),
                              headers=XML).status_code == 422  # the active version already
    assert _proposals(session) == count
    assert _active(session).id == demo.id


def test_a_stale_proposal_is_refused_with_409_when_approved(session, demo, api):
    first = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                               headers={**XML, "If-Match": str(demo.version)}).json
    second = api("admin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers={**XML, "If-Match": str(demo.version)}).json
    assert _decide(api, first["proposal_id"]).status_code == 200
    shown = api("head").get(f"/api/v1/configuration-proposals/{second['proposal_id']}").json
    assert shown["stale"]
    resp = _decide(api, second["proposal_id"])
    assert resp.status_code == 409 and "out of date" in resp.json["message"]
    assert _active(session).version == first["version"]
    assert _decide(api, second["proposal_id"], "head", "reject", "Stale").status_code == 200


def test_versions_and_roll_back(session, demo, api):
    start(session, 5_00)
    resp = api("wfadmin").put("/api/v1/workflows/approval_demo/bpmn", data=variant(demo_xml()),
                              headers=XML)
    new_version = resp.json["version"]
    assert _decide(api, resp.json["proposal_id"]).status_code == 200
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
    assert resp.status_code == 202 and resp.json["version"] == demo.version
    assert _active(session).version == new_version  # not yet
    assert _decide(api, resp.json["proposal_id"]).status_code == 200
    assert _active(session).id == demo.id
    assert api("wfadmin").post(url).status_code == 422  # already active
    assert api("wfadmin").post("/api/v1/workflows/approval_demo/versions/999/activate").status_code == 404
    # a new request follows the rolled-back version
    assert start(session, 6_00).definition_id == demo.id


def test_the_configuration_approval_workflow_cannot_be_changed_through_the_api(session, api):
    CP.ensure_deployed(session)
    session.commit()
    active = wf.active_definition(session, CP.PROCESS_ID)
    xml = _xml(CP.PROCESS_ID).replace(b'name="Configuration change approval" isExecutable',
                                      b'name="Anything" isExecutable')
    resp = api("wfadmin").put(f"/api/v1/workflows/{CP.PROCESS_ID}/bpmn", data=xml, headers=XML)
    assert resp.status_code == 403 and "part of the code" in resp.json["message"]
    resp = api("admin").post(f"/api/v1/workflows/{CP.PROCESS_ID}/versions/{active.version}"
                             f"/activate")
    assert resp.status_code in (403, 422)
    assert _active(session, CP.PROCESS_ID).id == active.id


# ----------------------------------------------------------------------------- attacks, as found
def test_a_scheme_with_no_approval_is_refused_and_refunds_still_wait(session, api, refund_workflow,
                                                                     scheme_restored):
    url = "/api/v1/approval-limits/scheme/refund"
    count = _proposals(session)
    for roles in ([], [None], [None, None], ["Workflow Administrator"], [1, 2]):
        resp = api("wfadmin").put(url, json={"bands": [
            {"min_amount": "0.00", "max_amount": None, "roles": roles}]})
        assert resp.status_code == 422, (roles, resp.json)
        assert resp.json["errors"]["roles"], resp.json
    band = session.scalars(select(ApprovalLimit).where(
        ApprovalLimit.action == "refund", ApprovalLimit.min_amount == 0)).one()
    resp = api("wfadmin").put(f"/api/v1/approval-limits/{band.id}",
                              json={"approvals_required": 0, "roles": ""})
    assert resp.status_code == 422 and "four-eyes" in str(resp.json["errors"])
    assert _proposals(session) == count
    txn = make_txn(session, 1_000_000)
    resp = api("clerk").post("/api/v1/refunds", json={
        "transaction_id": txn.id, "amount": "8999.00", "reason": "Overpaid", "method": "card"})
    assert resp.status_code == 201 and resp.json["status"] == "awaiting_approval"


def test_a_workflow_administrator_lane_in_a_money_workflow_is_refused(session, api,
                                                                      refund_workflow):
    xml = with_action(_xml("refund_approval"), 'name="Head of Finance"',
                      'name="Workflow Administrator"')
    resp = api("wfadmin").put("/api/v1/workflows/refund_approval/bpmn", data=xml, headers=XML)
    assert resp.status_code == 422
    assert [p["element"] for p in resp.json["problems"]] == ["Lane_HeadOfFinance"]
    assert "may not approve" in resp.json["errors"][0]
    check = api("wfadmin").post("/api/v1/workflows/refund_approval/validate", data=xml,
                                headers=XML).json
    assert check["valid"] is False and check["problems"][0]["element"] == "Lane_HeadOfFinance"
    assert _active(session, RF.PROCESS_ID).id == refund_workflow.id


def test_a_workflow_that_approves_by_itself_is_refused_and_would_pay_nothing(
        session, api, refund_workflow):
    resp = api("wfadmin").put("/api/v1/workflows/refund_approval/bpmn",
                              data=_start_approved_end("refund_approval"), headers=XML)
    assert resp.status_code == 422
    assert resp.json["problems"][0]["element"] == "refund_approval"
    # one that hides its approval tasks behind conditions gets through the checks, and a Head of
    # Finance approves it by mistake: the service still pays nothing without an approval
    resp = api("wfadmin").put("/api/v1/workflows/refund_approval/bpmn",
                              data=approves_at_once(_xml("refund_approval")), headers=XML)
    assert resp.status_code == 202
    assert _decide(api, resp.json["proposal_id"]).status_code == 200
    txn = make_txn(session, 1_000_000)
    before = session.scalar(select(func.count(Refund.id)))
    resp = api("clerk").post("/api/v1/refunds", json={
        "transaction_id": txn.id, "amount": "8999.00", "reason": "Overpaid", "method": "card"})
    assert resp.status_code == 422 and "four-eyes" in resp.json["message"]
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id))) == before


# ----------------------------------------------------------------------------- approval limits
DEMO = [{"min_amount": "0.00", "max_amount": "100.00", "roles": ["Finance Manager"]},
        {"min_amount": "100.01", "max_amount": "10000.00", "roles": ["Finance Manager"]},
        {"min_amount": "10000.01", "max_amount": None, "roles": ["Head of Finance"]}]


def test_scheme_get_and_put_as_a_proposal(session, api, scheme_restored):
    got = api("clerk").get("/api/v1/approval-limits/scheme/suspense_allocation")
    assert got.status_code == 200 and got.json["problems"] == []
    original = got.json
    assert [b["min_amount"] for b in original["bands"]] == ["0.00", "10000.01"]
    url = "/api/v1/approval-limits/scheme/suspense_allocation"
    assert api("manager").put(url, json={"bands": DEMO}).status_code == 403
    gap = [dict(DEMO[0]), dict(DEMO[2])]
    resp = api("wfadmin").put(url, json={"bands": gap})
    assert resp.status_code == 422 and "Nothing covers £100.01 to £10,000.00" in str(resp.json)
    resp = api("wfadmin").put(url, json={"bands": [{**DEMO[0], "min_amount": 5.0}]})
    assert resp.status_code == 422
    resp = api("wfadmin").put(url, json={"bands": DEMO, "fingerprint": "stale"})
    assert resp.status_code == 409
    resp = api("wfadmin").put(url, json={"bands": DEMO},
                              headers={"If-Match": original["fingerprint"]})
    assert resp.status_code == 202, resp.json
    pid = resp.json["proposal_id"]
    now = api("clerk").get(url).json
    assert now["fingerprint"] == original["fingerprint"] and now["pending_proposals"] == [pid]
    shown = api("clerk").get(f"/api/v1/configuration-proposals/{pid}").json
    assert shown["schemes"][0]["after"][1] == {"min_amount": "100.01", "max_amount": "10000.00",
                                               "approvals_required": 1,
                                               "roles": ["Finance Manager"]}
    assert _decide(api, pid).status_code == 200
    resp = api("clerk").get(url)
    assert [(b["min_amount"], b["approvals_required"]) for b in resp.json["bands"]] == [
        ("0.00", 1), ("100.01", 1), ("10000.01", 1)]
    session.expire_all()
    assert limits.route_for(session, "suspense_allocation", 50) == (1, ["Finance Manager"])
    events = session.scalars(select(AuditEvent).where(AuditEvent.entity == "ApprovalLimit")
                             .order_by(AuditEvent.id.desc()).limit(2)).all()
    assert all(e.actor == "head" and "by wfadmin" in e.reason for e in events)
    assert api("clerk").get("/api/v1/approval-limits/scheme/nothing").status_code == 404


@pytest.mark.parametrize("body", [
    [None, None], 5, "x", None, [],
    {"min_amount": "1e20"}, {"min_amount": "100000000000000000000.00"}, {"min_amount": "-5.00"},
    {"max_amount": 1e20}, {"max_amount": "99999999999999999999"},
    {"approvals_required": 2**63}, {"approvals_required": -1}, {"approvals_required": "1"},
    {"roles": [1, 2]}, {"roles": [None]}, {"roles": None}, {"action": "pay_everyone"},
    {"approvals_required": 0, "roles": ""}, {"roles": "Workflow Administrator"},
    {"unknown_field": 1},
])
def test_bad_band_changes_are_4xx_and_nothing_is_proposed(session, api, body):
    band = session.scalars(select(ApprovalLimit).where(ApprovalLimit.action == "write_off")
                           .order_by(ApprovalLimit.min_amount)).first()
    count = _proposals(session)
    resp = api("wfadmin").put(f"/api/v1/approval-limits/{band.id}", json=body)
    assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.data[:300])
    resp = api("wfadmin").post("/api/v1/approval-limits/", json=body)
    assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.data[:300])
    for bands in ([body], body, [{"min_amount": "0.00", "max_amount": None, "roles": body}]):
        resp = api("wfadmin").put("/api/v1/approval-limits/scheme/write_off",
                                  json={"bands": bands})
        assert 400 <= resp.status_code < 500, (bands, resp.status_code, resp.data[:300])
    assert _proposals(session) == count


def test_bad_ids_and_bodies_of_band_changes_are_4xx(session, api):
    assert api("wfadmin").put("/api/v1/approval-limits/99999999999999999999",
                              json={"roles": "Head of Finance"}).status_code == 404
    assert api("wfadmin").put("/api/v1/approval-limits/abc",
                              json={"roles": "Head of Finance"}).status_code == 404
    assert api("wfadmin").put("/api/v1/approval-limits/scheme/refund", data="{",
                              headers={"Content-Type": "application/json"}).status_code == 400  # unparsable JSON
    resp = api("wfadmin").put("/api/v1/approval-limits/scheme/refund", json={
        "bands": [{"min_amount": "0.00", "max_amount": "100000000000000000000.00",
                   "roles": ["Finance Manager"]}]})
    assert resp.status_code == 422


# ----------------------------------------------------------------------------- concurrency
def test_two_administrators_proposing_at_once_cannot_overwrite_each_other(app, session, demo,
                                                                          client, api):
    base = demo.version
    tokens = {u: api_token(client, u) for u in ("wfadmin", "admin")}
    bodies = {"wfadmin": variant(demo_xml()), "admin": variant(demo_xml())}
    barrier = threading.Barrier(2)
    results = {}

    def go(user):
        c = app.test_client()
        barrier.wait()
        resp = c.put("/api/v1/workflows/approval_demo/bpmn", data=bodies[user],
                     headers={**XML, "If-Match": str(base),
                              "Authorization": f"Bearer {tokens[user]}"})
        results[user] = (resp.status_code, resp.json)

    threads = [threading.Thread(target=go, args=(u,)) for u in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(status for status, _ in results.values())
    assert statuses in ([202, 202], [202, 409]), results
    proposed = [body["proposal_id"] for status, body in results.values() if status == 202]
    decided = sorted(_decide(api, pid).status_code for pid in proposed)
    assert decided[0] == 200 and decided[1:] in ([], [409])  # one takes effect, never both
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version > base
    assert session.scalar(select(func.count(WorkflowDefinition.id)).where(
        WorkflowDefinition.process_id == "approval_demo", WorkflowDefinition.active.is_(True))) == 1
