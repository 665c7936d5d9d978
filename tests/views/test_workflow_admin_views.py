"""Workflow administration in the web UI: the Workflows page, the editor's check/submit
endpoints (same validation as the API), roll back, and the approval-limits scheme page. Changes
are proposals: a Head of Finance approves them on their task page before they take effect."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.workflow import ApprovalLimit, ConfigProposal, WorkflowDefinition
from app.services import approval_limits as limits
from app.services import config_proposals as CP
from app.services import workflow as wf
from tests.workflows.helpers import demo_xml, proposal_task, start, variant, with_action
from tests.workflows.test_four_eyes import _xml


def _decide_on_the_task_page(as_user, session, proposal_id, user="head", decision="approve",
                             comment=""):
    """What a Head of Finance does: open the task from their list, then approve or reject."""
    task = proposal_task(session, proposal_id)
    client = as_user(user)
    inbox = client.get("/tasks/").get_data(as_text=True)
    assert (f"/tasks/{task.id}" in inbox) == (user == "head"), user
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    return client.post(f"/tasks/{task.id}/complete",
                       data={"decision": decision, "comment": comment}), page


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


def test_check_summarises_changes_then_submit_proposes_a_version_a_head_of_finance_approves(
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
    assert resp.status_code == 202, resp.json
    assert resp.json["status"] == "pending_approval" and "Head of Finance" in resp.json["message"]
    new_version, pid = resp.json["version"], resp.json["proposal_id"]
    assert new_version > demo.version
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id  # not yet
    html = client.get("/workflows/").get_data(as_text=True)
    assert f'id="proposal-{pid}"' in html and 'data-status="pending"' in html
    # the proposer cannot decide it; the Head of Finance sees what changes, and approves
    resp, _ = _decide_on_the_task_page(as_user, session, pid, "wfadmin")
    assert resp.status_code == 403
    resp, page = _decide_on_the_task_page(as_user, session, pid, "head")
    assert resp.status_code == 302
    assert "Lane_FinanceManager" in page and "“Finance Manager” → “Head of Finance”" in page
    assert "approval_demo" in page and "wfadmin" in page
    session.expire_all()
    active = wf.active_definition(session, "approval_demo")
    assert active.version == new_version and active.deployed_by == "wfadmin"
    assert session.get(type(running), running.id).definition_id == demo.id
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "workflow.deploy", AuditEvent.entity_id == str(active.id))).one()
    assert event.actor == "head" and '"proposed_by":"wfadmin"' in event.after
    # a second submission from the old version is refused (409), nothing proposed
    count = session.scalar(select(func.count(ConfigProposal.id)))
    again = as_user("wfadmin").post("/workflows/approval_demo/deploy",
                        json={"xml": variant(demo_xml()).decode(), "base_version": demo.version})
    assert again.status_code == 409 and str(new_version) in again.json["message"]
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == new_version
    assert session.scalar(select(func.count(ConfigProposal.id))) == count


def test_a_rejected_or_stale_proposal_changes_nothing(session, demo, as_user):
    client = as_user("wfadmin")
    first = client.post("/workflows/approval_demo/deploy", json={
        "xml": variant(demo_xml()).decode(), "base_version": demo.version}).json
    second = as_user("wfadmin").post("/workflows/approval_demo/deploy", json={
        "xml": variant(demo_xml()).decode(), "base_version": demo.version}).json
    resp, _ = _decide_on_the_task_page(as_user, session, first["proposal_id"], "head", "reject")
    assert resp.status_code == 422 and "reason" in resp.get_data(as_text=True).lower()
    resp, _ = _decide_on_the_task_page(as_user, session, first["proposal_id"], "head", "reject",
                                       "Timer too short")
    assert resp.status_code == 302
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    html = as_user("wfadmin").get("/workflows/").get_data(as_text=True)
    assert "Timer too short" in html
    # someone else's change takes effect first: the other proposal is refused when approved
    third = as_user("admin").post("/workflows/approval_demo/deploy", json={
        "xml": variant(demo_xml()).decode(), "base_version": demo.version}).json
    resp, _ = _decide_on_the_task_page(as_user, session, third["proposal_id"], "head")
    assert resp.status_code == 302
    resp, page = _decide_on_the_task_page(as_user, session, second["proposal_id"], "head")
    assert "proposal-stale" in page
    assert resp.status_code == 409 and "out of date" in resp.get_data(as_text=True)
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == third["version"]
    assert session.get(ConfigProposal, second["proposal_id"]).status == "pending"
    _decide_on_the_task_page(as_user, session, second["proposal_id"], "head", "reject", "Stale")


def test_roll_back_from_the_workflows_page(session, demo, as_user):
    client = as_user("wfadmin")
    resp = client.post("/workflows/approval_demo/deploy",
                       json={"xml": variant(demo_xml()).decode(), "base_version": demo.version})
    assert resp.status_code == 202
    new_version = resp.json["version"]
    _decide_on_the_task_page(as_user, session, resp.json["proposal_id"], "head")
    # a manager cannot roll back
    resp = as_user("manager").post(f"/workflows/{demo.id}/activate",
                                   data={"base_version": new_version})
    assert resp.status_code in (302, 403)
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == new_version
    resp = as_user("wfadmin").post(f"/workflows/{demo.id}/activate",
                                   data={"base_version": new_version}, follow_redirects=True)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "Submitted for approval as proposal" in html
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == new_version
    proposal = session.scalars(select(ConfigProposal).order_by(ConfigProposal.id.desc())).first()
    assert proposal.kind == "workflow_activate" and f'id="proposal-{proposal.id}"' in html
    _decide_on_the_task_page(as_user, session, proposal.id, "head")
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "workflow.activate")
                            .order_by(AuditEvent.id.desc())).first()
    assert event.actor == "head" and f'"version":{demo.version}' in event.after


def test_the_configuration_approval_workflow_is_not_editable_here(session, as_user):
    CP.ensure_deployed(session)
    session.commit()
    html = as_user("wfadmin").get("/workflows/").get_data(as_text=True)
    section = html[html.index('id="process-configuration_approval"'):]
    section = section[:section.index("</section>")]
    assert "/workflows/configuration_approval/edit" not in section and "Part of the code" in section
    resp = as_user("wfadmin").get("/workflows/configuration_approval/edit")
    assert resp.status_code == 302
    resp = as_user("wfadmin").post("/workflows/configuration_approval/deploy", json={
        "xml": _xml("configuration_approval").decode()})
    assert resp.status_code == 403


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


def test_approval_limits_page_shows_the_scheme_and_the_floor(session, as_user):
    html = as_user("wfadmin").get("/approval-limits/").get_data(as_text=True)
    assert 'id="scheme-refund"' in html and 'value="500.00"' in html and 'value="500.01"' in html
    assert 'name="fingerprint"' in html and 'id="four-eyes-floor"' in html
    assert "£10,000.00" in html[html.index('id="four-eyes-floor"'):][:600]
    clerk = as_user("clerk").get("/approval-limits/").get_data(as_text=True)
    assert 'id="scheme-refund"' in clerk and 'name="fingerprint"' not in clerk
    assert "Finance Manager → Head of Finance" in clerk


@pytest.mark.parametrize("bands, message", [
    ([("0.00", "100.00", ["Finance Manager"]), ("200.00", "", ["Head of Finance"])],
     "Nothing covers £100.01 to £199.99"),
    ([("0.00", "300.00", ["Finance Manager"]), ("200.00", "", ["Head of Finance"])], "overlap"),
    ([("0.00", "300.00", ["Finance Manager"])], "Nothing covers amounts above £300.00"),
    ([("10.00", "", ["Finance Manager"])], "must start at £0.00"),
    ([("0.00", "", ["Finance Manager"]), ("1.234", "", [])], "pounds and pence"),
    ([("0.00", "", [])], "need at least 1 approval"),
    ([("0.00", "", ["Workflow Administrator"])], "may not approve refunds"),
])
def test_scheme_with_a_gap_overlap_or_below_the_floor_is_refused_and_nothing_changes(
        session, as_user, bands, message):
    before = _refund_rows(session)
    count = session.scalar(select(func.count(ConfigProposal.id)))
    resp = as_user("wfadmin").post("/approval-limits/refund", data=_scheme_form(session, "refund", bands))
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _refund_rows(session) == before
    assert session.scalar(select(func.count(ConfigProposal.id))) == count


def test_a_scheme_is_proposed_then_used_once_a_head_of_finance_approves(session, as_user):
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
                                       data=_scheme_form(session, "refund", new),
                                       follow_redirects=True)
        assert resp.status_code == 200
        html = resp.get_data(as_text=True)
        assert "Submitted for approval as proposal" in html
        assert _refund_rows(session) == DEMO_REFUNDS  # not yet
        proposal = session.scalars(select(ConfigProposal).order_by(ConfigProposal.id.desc())).first()
        section = html[html.index(f'id="proposal-{proposal.id}"'):]
        assert "bands-after" in section and "£1,000.01" in section
        resp, page = _decide_on_the_task_page(as_user, session, proposal.id, "wfadmin")
        assert resp.status_code == 403
        resp, page = _decide_on_the_task_page(as_user, session, proposal.id, "head")
        assert resp.status_code == 302
        assert "bands-before" in page and "£500.01" in page and "£1,000.01" in page
        assert _refund_rows(session) == [(0, 10_000, "Finance Manager"),
                                         (10_001, 100_000, "Head of Finance"),
                                         (100_001, None, "Finance Manager,Head of Finance")]
        assert limits.route_for(session, "refund", 200_00) == (1, ["Head of Finance"])
        events = session.scalars(select(AuditEvent).where(AuditEvent.entity == "ApprovalLimit")
                                 .order_by(AuditEvent.id.desc()).limit(3)).all()
        assert events and all(e.actor == "head" and "by wfadmin" in e.reason for e in events)
    finally:
        limits.replace_scheme(session, "refund", [
            {"min_amount": lo, "max_amount": hi, "roles": roles.split(",")}
            for lo, hi, roles in DEMO_REFUNDS])
    assert _refund_rows(session) == DEMO_REFUNDS
    assert session.scalar(select(func.count(ApprovalLimit.id)).where(
        ApprovalLimit.action == "refund")) == 2


def test_a_rejected_scheme_proposal_leaves_the_scheme(session, as_user):
    new = [("0.00", "", ["Head of Finance"])]
    as_user("wfadmin").post("/approval-limits/refund", data=_scheme_form(session, "refund", new))
    proposal = session.scalars(select(ConfigProposal).order_by(ConfigProposal.id.desc())).first()
    assert proposal.kind == "approval_limits" and proposal.status == "pending"
    resp, _ = _decide_on_the_task_page(as_user, session, proposal.id, "head", "reject",
                                       "Finance Managers must approve small refunds")
    assert resp.status_code == 302
    assert _refund_rows(session) == DEMO_REFUNDS
    html = as_user("clerk").get("/approval-limits/").get_data(as_text=True)
    assert "Finance Managers must approve small refunds" in html


def test_a_version_approved_in_the_portal_survives_sync_workflows(session, demo, as_user, tmp_path):
    """`make run` (ims sync-workflows) must not roll back what a Head of Finance approved."""
    resp = as_user("wfadmin").post("/workflows/approval_demo/deploy",
                                   json={"xml": variant(demo_xml()).decode(),
                                         "base_version": demo.version})
    assert resp.status_code == 202
    _decide_on_the_task_page(as_user, session, resp.json["proposal_id"], "head")
    (tmp_path / "approval_demo.bpmn").write_bytes(demo_xml())
    lines = wf.sync_workflows(session, str(tmp_path))
    assert "already deployed" in lines[0]
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version == resp.json["version"]
    # a file with new content is still deployed, at once, by the operator
    (tmp_path / "approval_demo.bpmn").write_bytes(variant(demo_xml()))
    wf.sync_workflows(session, str(tmp_path))
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").version > resp.json["version"]


def test_an_uploaded_file_is_proposed_not_deployed(session, demo, as_user):
    client = as_user("wfadmin")
    resp = client.post("/workflows/upload", data={"file": (io.BytesIO(variant(demo_xml())),
                                                           "approval_demo.bpmn")},
                       content_type="multipart/form-data", follow_redirects=True)
    assert resp.status_code == 200 and "Submitted for approval as proposal" in resp.get_data(
        as_text=True)
    session.expire_all()
    assert wf.active_definition(session, "approval_demo").id == demo.id
    proposal = session.scalars(select(ConfigProposal).order_by(ConfigProposal.id.desc())).first()
    assert (proposal.kind, proposal.status, proposal.proposed_by) == (
        "workflow_deploy", "pending", "wfadmin")
    _decide_on_the_task_page(as_user, session, proposal.id, "head", "reject", "Not this one")
    # a lane that may not approve money is refused by the upload too, naming the lane
    xml = _xml("write_off_approval").replace(b'name="Finance Manager"', b'name="Income Clerk"', 1)
    count = session.scalar(select(func.count(ConfigProposal.id)))
    resp = as_user("wfadmin").post("/workflows/upload", data={"file": (io.BytesIO(xml), "w.bpmn")},
                                   content_type="multipart/form-data")
    assert resp.status_code == 422 and "Lane_FinanceManager" in resp.get_data(as_text=True)
    assert session.scalar(select(func.count(ConfigProposal.id))) == count


def test_a_malformed_limits_form_is_4xx(session, as_user):
    before = _refund_rows(session)
    for rows in ("abc", "-4", ""):
        data = _scheme_form(session, "refund", [("0.00", "", ["Finance Manager"])])
        data["rows"] = rows
        resp = as_user("wfadmin").post("/approval-limits/refund", data=data)
        assert 400 <= resp.status_code < 500, rows
    data = _scheme_form(session, "refund", [("0.00", "100000000000000000000.00",
                                             ["Finance Manager"])])
    assert as_user("wfadmin").post("/approval-limits/refund", data=data).status_code == 422
    assert as_user("wfadmin").post("/approval-limits/nothing", data=data).status_code == 404
    assert _refund_rows(session) == before
