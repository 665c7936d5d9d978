"""Workflow administration in the web UI: the Workflows page, the editor's check/deploy
endpoints (same validation as the API), roll back, and the approval-limits scheme page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.workflow import ApprovalLimit, WorkflowDefinition
from app.services import approval_limits as limits
from app.services import workflow as wf
from tests.workflows.helpers import demo_xml, start, variant, with_action


def _versions(session):
    return session.scalar(select(func.count(WorkflowDefinition.id)).where(
        WorkflowDefinition.process_id == "approval_demo"))


def test_workflows_page_lists_processes_versions_and_instance_counts(session, demo, as_user):
    start(session, 12_00)
    html = as_user("wfadmin").get("/workflows/").get_data(as_text=True)
    assert 'id="process-approval_demo"' in html
    section = html[html.index('id="process-approval_demo"'):]
    section = section[:section.index("</section>")]
    row = re.search(r'<tr class="ims-active-version" data-version="%d">(.*?)</tr>' % demo.version,
                    section, re.S)
    assert row, section
    cells = re.findall(r'<td class="text-right">(\d+)</td>', row.group(1))
    running, total = map(int, cells)
    assert running >= 1 and total >= running
    assert "/workflows/approval_demo/edit" in section
    clerk = as_user("clerk").get("/workflows/").get_data(as_text=True)
    assert "/workflows/approval_demo/edit" not in clerk and "Make active" not in clerk


def test_editor_page_is_for_workflow_administrators_and_administrators(demo, as_user):
    for user in ("wfadmin", "admin"):
        resp = as_user(user).get("/workflows/approval_demo/edit")
        assert resp.status_code == 200, user
        html = resp.get_data(as_text=True)
        assert "bpmn-modeler.production.min.js" in html and "bpmn-editor.js" in html
        assert '"base_version": %d' % demo.version in html
    for user in ("manager", "head", "clerk", "auditor"):
        resp = as_user(user).get("/workflows/approval_demo/edit")
        assert resp.status_code in (302, 403), user
    assert as_user("wfadmin").get("/workflows/nope/edit").status_code == 404


def test_check_reports_unsafe_condition_next_to_its_element_and_deploys_nothing(session, demo, as_user):
    before = _versions(session)
    xml = with_action(demo_xml(), 'decision == "reject"', "decision.__class__")
    resp = as_user("wfadmin").post("/workflows/approval_demo/check",
                                   json={"xml": xml.decode(), "base_version": demo.version})
    assert resp.status_code == 200
    body = resp.json
    assert body["valid"] is False
    assert any(p["element"] == "Flow_Reject" and "attribute" in p["message"].lower()
               or p["element"] == "Flow_Reject" for p in body["problems"]), body
    # deploying the same thing is refused with the same problems, and changes nothing
    resp = as_user("wfadmin").post("/workflows/approval_demo/deploy",
                                   json={"xml": xml.decode(), "base_version": demo.version})
    assert resp.status_code == 422
    assert [p["element"] for p in resp.json["problems"]] == [p["element"] for p in body["problems"]]
    session.expire_all()
    assert _versions(session) == before


def test_check_summarises_changes_then_deploy_makes_a_new_version_running_ones_stay(
        session, demo, as_user):
    running = start(session, 9_00)
    xml = with_action(demo_xml(), 'name="Finance Manager">', 'name="Head of Finance">')
    xml = with_action(xml, "escalate_after</bpmn:timeDuration>", '"PT4H"</bpmn:timeDuration>')
    client = as_user("wfadmin")
    body = client.post("/workflows/approval_demo/check",
                       json={"xml": xml.decode(), "base_version": demo.version}).json
    assert body["valid"] and not body["unchanged"] and body["active_version"] == demo.version
    changed = {c["id"]: {f["field"]: (f["old"], f["new"]) for f in c["fields"]}
               for c in body["changes"]["changed"]}
    assert changed["Lane_FinanceManager"]["role"] == ("Finance Manager", "Head of Finance")
    assert changed["Event_EscalateFM"]["timer"] == ("timeDuration: escalate_after",
                                                    'timeDuration: "PT4H"')
    assert body["changes"]["added"] == [] and body["changes"]["removed"] == []
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id  # check deploys nothing

    resp = client.post("/workflows/approval_demo/deploy",
                       json={"xml": xml.decode(), "base_version": demo.version})
    assert resp.status_code == 201, resp.json
    new_version = resp.json["version"]
    assert new_version > demo.version
    session.expire_all()
    active = wf.active_definition(session, "approval_demo")
    assert active.version == new_version and active.deployed_by == "wfadmin"
    assert session.get(type(running), running.id).definition_id == demo.id
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "workflow.deploy", AuditEvent.entity_id == str(active.id))).one()
    assert event.actor == "wfadmin"
    # a second save from the old version is refused (409), nothing overwritten
    again = client.post("/workflows/approval_demo/deploy",
                        json={"xml": variant(demo_xml()).decode(), "base_version": demo.version})
    assert again.status_code == 409 and str(new_version) in again.json["message"]
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == new_version


def test_roll_back_from_the_workflows_page(session, demo, as_user):
    client = as_user("wfadmin")
    resp = client.post("/workflows/approval_demo/deploy",
                       json={"xml": variant(demo_xml()).decode(), "base_version": demo.version})
    assert resp.status_code == 201
    new_version = resp.json["version"]
    # a manager cannot roll back
    resp = as_user("manager").post(f"/workflows/{demo.id}/activate",
                                   data={"base_version": new_version})
    assert resp.status_code in (302, 403)
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == new_version
    resp = as_user("wfadmin").post(f"/workflows/{demo.id}/activate",
                                   data={"base_version": new_version}, follow_redirects=True)
    assert resp.status_code == 200
    assert f"Version {demo.version} of approval_demo is active again" in resp.get_data(as_text=True)
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "workflow.activate")
                            .order_by(AuditEvent.id.desc())).first()
    assert event.actor == "wfadmin" and f'"version":{demo.version}' in event.after


def test_expression_check_endpoint(as_user):
    client = as_user("wfadmin")
    ok = client.post("/workflows/check-expression", json={"expression": 'amount_pence > 50000'})
    assert ok.json == {"valid": True, "error": None}
    bad = client.post("/workflows/check-expression",
                      json={"expression": "().__class__.__base__.__subclasses__()"})
    assert bad.json["valid"] is False and bad.json["error"]
    assert client.post("/workflows/check-expression", json={"expression": 3}).status_code == 422
    assert as_user("clerk").post("/workflows/check-expression",
                                 json={"expression": "a"}).status_code in (302, 403)


# ----------------------------------------------------------------------------- approval limits
def _scheme_form(session, action, bands, fingerprint=None):
    data = {"rows": str(len(bands)),
            "fingerprint": fingerprint or limits.fingerprint(limits.scheme(session, action))}
    for n, (lo, hi, roles) in enumerate(bands):
        data[f"min-{n}"] = lo
        data[f"max-{n}"] = hi
        for k, role in enumerate(roles):
            data[f"role-{n}-{k}"] = role
    return data


def _refund_rows(session):
    session.expire_all()
    return [(b.min_amount, b.max_amount, b.roles) for b in limits.scheme(session, "refund")]


DEMO_REFUNDS = [(0, 50_000, "Finance Manager"), (50_001, None, "Finance Manager,Head of Finance")]


def test_approval_limits_page_shows_the_scheme(session, as_user):
    html = as_user("wfadmin").get("/approval-limits/").get_data(as_text=True)
    assert 'id="scheme-refund"' in html and 'value="500.00"' in html and 'value="500.01"' in html
    assert 'name="fingerprint"' in html
    clerk = as_user("clerk").get("/approval-limits/").get_data(as_text=True)
    assert 'id="scheme-refund"' in clerk and 'name="fingerprint"' not in clerk
    assert "Finance Manager → Head of Finance" in clerk


@pytest.mark.parametrize("bands, message", [
    ([("0.00", "100.00", ["Finance Manager"]), ("200.00", "", ["Head of Finance"])],
     "Nothing covers 100.01 to 199.99"),
    ([("0.00", "300.00", ["Finance Manager"]), ("200.00", "", ["Head of Finance"])], "overlap"),
    ([("0.00", "300.00", ["Finance Manager"])], "Nothing covers amounts above 300.00"),
    ([("10.00", "", ["Finance Manager"])], "must start at 0.00"),
    ([("0.00", "", ["Finance Manager"]), ("1.234", "", [])], "pounds and pence"),
])
def test_scheme_with_a_gap_or_overlap_is_refused_and_nothing_changes(session, as_user, bands, message):
    before = _refund_rows(session)
    resp = as_user("wfadmin").post("/approval-limits/refund", data=_scheme_form(session, "refund", bands))
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _refund_rows(session) == before


def test_saving_a_scheme_is_used_at_once_audited_and_guarded(session, as_user):
    assert _refund_rows(session) == DEMO_REFUNDS
    new = [("0.00", "100.00", ["Finance Manager"]), ("100.01", "1000.00", ["Head of Finance"]),
           ("1000.01", "", ["Finance Manager", "Head of Finance"])]
    # not for approvers
    resp = as_user("manager").post("/approval-limits/refund", data=_scheme_form(session, "refund", new))
    assert resp.status_code in (302, 403)
    assert _refund_rows(session) == DEMO_REFUNDS
    stale = _scheme_form(session, "refund", new, fingerprint="0" * 16)
    resp = as_user("wfadmin").post("/approval-limits/refund", data=stale)
    assert resp.status_code == 409 and "changed these approval limits" in resp.get_data(as_text=True)
    assert _refund_rows(session) == DEMO_REFUNDS
    try:
        resp = as_user("wfadmin").post("/approval-limits/refund",
                                       data=_scheme_form(session, "refund", new))
        assert resp.status_code == 302
        assert _refund_rows(session) == [(0, 10_000, "Finance Manager"),
                                         (10_001, 100_000, "Head of Finance"),
                                         (100_001, None, "Finance Manager,Head of Finance")]
        assert limits.route_for(session, "refund", 200_00) == (1, ["Head of Finance"])
        events = session.scalars(select(AuditEvent).where(AuditEvent.entity == "ApprovalLimit")
                                 .order_by(AuditEvent.id.desc()).limit(3)).all()
        assert events and all(e.actor == "wfadmin" for e in events)
    finally:
        limits.replace_scheme(session, "refund", [
            {"min_amount": lo, "max_amount": hi, "roles": roles.split(",")}
            for lo, hi, roles in DEMO_REFUNDS])
    assert _refund_rows(session) == DEMO_REFUNDS
    assert session.scalar(select(func.count(ApprovalLimit.id)).where(
        ApprovalLimit.action == "refund")) == 2


def test_a_version_deployed_in_the_editor_survives_sync_workflows(session, demo, as_user, tmp_path):
    """`make run` (ims sync-workflows) must not roll back what an administrator deployed."""
    resp = as_user("wfadmin").post("/workflows/approval_demo/deploy",
                                   json={"xml": variant(demo_xml()).decode(),
                                         "base_version": demo.version})
    assert resp.status_code == 201
    (tmp_path / "approval_demo.bpmn").write_bytes(demo_xml())
    lines = wf.sync_workflows(session, str(tmp_path))
    assert "already deployed" in lines[0]
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == resp.json["version"]
    # a file with new content is still deployed
    (tmp_path / "approval_demo.bpmn").write_bytes(variant(demo_xml()))
    wf.sync_workflows(session, str(tmp_path))
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version > resp.json["version"]
