"""Configuration changes need a second person: a Workflow Administrator proposes (a workflow
version, a roll back, approval limits), a Head of Finance other than the proposer approves it
through their task, and only then does it take effect. Stale proposals are refused (409)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.models.audit import AuditEvent
from app.models.notification import Notification
from app.models.workflow import ConfigProposal, WorkflowDefinition
from app.security import roles as R
from app.services import approval_limits as limits
from app.services import config_proposals as CP
from app.services import workflow as wf
from app.services import workflow_admin as admin
from tests.workflows.helpers import decide_proposal, demo_xml, proposal_task, start, variant
from tests.workflows.test_four_eyes import _start_approved_end, _store_unchecked, _xml


def _active(session, process_id="approval_demo"):
    session.expire_all()
    return wf.active_definition(session, process_id)


def _notes(session, username, text):
    return session.scalar(select(func.count(Notification.id)).where(
        Notification.username == username, Notification.message.contains(text)))


@pytest.fixture
def refund_scheme(session):
    """The refund bands as they were, back after the test."""
    before = limits.band_dicts(limits.scheme(session, "refund"))
    yield before
    session.rollback()
    if limits.band_dicts(limits.scheme(session, "refund")) != before:
        limits.replace_scheme(session, "refund", before)


# ----------------------------------------------------------------------------- workflows
def test_a_new_version_takes_effect_only_when_a_head_of_finance_approves(session, demo):
    xml = variant(demo_xml())
    proposal = CP.propose_workflow(session, "approval_demo", xml, "wfadmin",
                                   base_version=demo.version)
    assert proposal.status == "pending" and proposal.base_version == demo.version
    stored = proposal.definition
    assert stored.version > demo.version and not stored.active and stored.deployed_by == "wfadmin"
    assert _active(session).id == demo.id  # nothing changed yet
    assert start(session, 5_00).definition_id == demo.id
    task = proposal_task(session, proposal.id)
    assert task.role == R.HEAD
    assert task.id in [t.id for t in wf.tasks_for_user(session, "head")]
    assert task.id not in [t.id for t in wf.tasks_for_user(session, "wfadmin")]
    assert _notes(session, "head", f"Version {stored.version} of approval_demo") >= 1
    for user in ("wfadmin", "manager", "admin"):  # not a Head of Finance
        with pytest.raises(Forbidden):
            decide_proposal(session, proposal.id, user)
    result = decide_proposal(session, proposal.id, "head")
    assert result.outcome == "approved"
    assert _active(session).id == stored.id
    proposal = session.get(ConfigProposal, proposal.id)
    assert (proposal.status, proposal.decided_by) == ("approved", "head")
    deploy = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "workflow.deploy", AuditEvent.entity_id == str(stored.id))).one()
    assert deploy.actor == "head" and '"proposed_by":"wfadmin"' in deploy.after
    propose = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "configuration.propose",
        AuditEvent.entity_id == str(proposal.id))).one()
    assert propose.actor == "wfadmin"
    assert _notes(session, "wfadmin", "approved by head") >= 1
    later = wf.start_workflow(session, "approval_demo", "wf_test", "after", "clerk",
                              {"amount_pence": 5_00, "reason": "x", "action": "refund"})
    assert later.definition_id == stored.id
    session.commit()


def test_the_proposer_may_not_approve_their_own_proposal(session, demo):
    """Even holding the Head of Finance role: the proposer is the requester (four-eyes)."""
    proposal = CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "head")
    assert proposal_task(session, proposal.id).id not in [
        t.id for t in wf.tasks_for_user(session, "head")]
    with pytest.raises(Forbidden) as info:
        decide_proposal(session, proposal.id, "head")
    assert "four-eyes" in info.value.message
    assert _active(session).id == demo.id


def test_a_rejection_needs_a_reason_and_changes_nothing(session, demo):
    proposal = CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "wfadmin")
    with pytest.raises(ValidationError):
        decide_proposal(session, proposal.id, "head", "reject", "  ")
    assert decide_proposal(session, proposal.id, "head", "reject",
                           "Escalation is too short").outcome == "rejected"
    assert _active(session).id == demo.id
    proposal = session.get(ConfigProposal, proposal.id)
    assert proposal.status == "rejected" and proposal.decision_comment == "Escalation is too short"
    assert _notes(session, "wfadmin", "Escalation is too short") >= 1
    versions = admin.versions(session, "approval_demo")[0]["versions"]
    mine = next(v for v in versions if v["id"] == proposal.definition_id)
    assert mine["proposal"] == {"id": proposal.id, "status": "rejected"} and not mine["active"]


def test_a_stale_proposal_is_refused_with_409_and_not_applied(session, demo):
    first = CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "wfadmin")
    second = CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "admin")
    assert CP.stale_reason(session, second) is None
    decide_proposal(session, first.id, "head")
    session.expire_all()
    second = session.get(ConfigProposal, second.id)
    assert "became active" in CP.stale_reason(session, second)
    with pytest.raises(Conflict) as info:
        decide_proposal(session, second.id, "head")
    assert "out of date" in info.value.message
    assert _active(session).id == first.definition_id
    assert session.get(ConfigProposal, second.id).status == "pending"
    decide_proposal(session, second.id, "head", "reject", "Out of date")
    assert session.get(ConfigProposal, second.id).status == "rejected"


def test_proposals_refuse_unsafe_unchanged_and_stale_input(session, demo):
    count = session.scalar(select(func.count(ConfigProposal.id)))
    with pytest.raises(ValidationError) as info:
        CP.propose_workflow(session, "approval_demo",
                            demo_xml().replace(b'decision == "reject"', b"().__class__"), "wfadmin")
    assert any("Flow_Reject" in e for e in info.value.errors["bpmn"])
    with pytest.raises(ValidationError):
        CP.propose_workflow(session, "approval_demo", demo_xml(), "wfadmin")  # the active one
    with pytest.raises(Conflict):
        CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "wfadmin",
                            base_version=demo.version + 7)
    with pytest.raises(ValidationError):
        CP.propose_workflow(session, "other", demo_xml(), "wfadmin")  # process id differs
    with pytest.raises(NotFound):
        CP.propose_activation(session, "approval_demo", 999, "wfadmin")
    with pytest.raises(ValidationError):
        CP.propose_activation(session, "approval_demo", demo.version, "wfadmin")
    assert session.scalar(select(func.count(ConfigProposal.id))) == count


def test_a_roll_back_is_a_proposal_too(session, demo):
    newer = wf.deploy_definition(session, variant(demo_xml()), "operator")
    proposal = CP.propose_activation(session, "approval_demo", demo.version, "wfadmin",
                                     base_version=newer.version)
    assert _active(session).id == newer.id
    assert CP.details(session, proposal)["changes"]["changed"]  # the name differs
    decide_proposal(session, proposal.id, "head")
    assert _active(session).id == demo.id
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "workflow.activate")
                            .order_by(AuditEvent.id.desc())).first()
    assert event.actor == "head" and f'"version":{demo.version}' in event.after


# ----------------------------------------------------------------------------- the approver's workflow
def test_the_configuration_approval_workflow_is_code(session, demo):
    CP.ensure_deployed(session)
    session.commit()
    active = wf.active_definition(session, CP.PROCESS_ID)
    xml = _xml(CP.PROCESS_ID)
    changed = xml.replace(b'name="Configuration change approval" isExecutable',
                          b'name="Changed" isExecutable')
    with pytest.raises(Forbidden):
        CP.propose_workflow(session, CP.PROCESS_ID, changed, "wfadmin")
    with pytest.raises(Forbidden):
        CP.propose_activation(session, CP.PROCESS_ID, active.version, "wfadmin")
    # even an operator cannot give it a lane other than the Head of Finance
    with pytest.raises(ValidationError) as info:
        wf.deploy_definition(session, xml.replace(b'name="Head of Finance"',
                                                  b'name="Workflow Administrator"'), "operator")
    assert "may not approve" in str(info.value.errors)


def test_a_configuration_workflow_that_approves_by_itself_cannot_apply_anything(session, demo):
    """Stored without the deploy checks (as an old version might be): the service still wants a
    Head of Finance's approval, so the proposal is refused and nothing is saved."""
    CP.ensure_deployed(session)
    session.commit()
    original = wf.active_definition(session, CP.PROCESS_ID)
    _store_unchecked(session, CP.PROCESS_ID, _start_approved_end(CP.PROCESS_ID))
    count = session.scalar(select(func.count(ConfigProposal.id)))
    versions = session.scalar(select(func.count(WorkflowDefinition.id)))
    try:
        with pytest.raises(ValidationError) as info:
            CP.propose_workflow(session, "approval_demo", variant(demo_xml()), "wfadmin")
        assert "four-eyes" in info.value.message
        assert session.scalar(select(func.count(ConfigProposal.id))) == count
        assert session.scalar(select(func.count(WorkflowDefinition.id))) == versions
        assert _active(session).id == demo.id
    finally:
        admin.activate_version(session, CP.PROCESS_ID, original.version, "test-cleanup")


# ----------------------------------------------------------------------------- approval limits
NEW_REFUNDS = [{"min_amount": 0, "max_amount": 100_00, "roles": [R.MANAGER]},
               {"min_amount": 100_01, "max_amount": None, "roles": [R.HEAD]}]


def test_approval_limits_change_when_a_head_of_finance_approves(session, refund_scheme):
    proposal = CP.propose_limits(session, {"refund": NEW_REFUNDS}, "wfadmin",
                                 expected={"refund": limits.fingerprint(
                                     limits.scheme(session, "refund"))})
    payload = json.loads(proposal.payload)
    assert payload["before"]["refund"] == refund_scheme and payload["complete"] is True
    assert limits.route_for(session, "refund", 200_00) == (1, [R.MANAGER])  # not yet
    shown = CP.details(session, proposal)["schemes"][0]
    assert shown["action"] == "refund" and shown["after"] == NEW_REFUNDS
    decide_proposal(session, proposal.id, "head")
    session.expire_all()
    assert limits.route_for(session, "refund", 200_00) == (1, [R.HEAD])
    events = session.scalars(select(AuditEvent).where(AuditEvent.entity == "ApprovalLimit")
                             .order_by(AuditEvent.id.desc()).limit(2)).all()
    assert all(f"Proposal {proposal.id} by wfadmin, approved by head" in e.reason
               for e in events)  # (the actor is the signed-in approver: see the API test)


def test_a_stale_limits_proposal_is_refused(session, refund_scheme):
    first = CP.propose_limits(session, {"refund": NEW_REFUNDS}, "wfadmin")
    other = [dict(b) for b in NEW_REFUNDS]
    other[0]["max_amount"], other[1]["min_amount"] = 200_00, 200_01
    second = CP.propose_limits(session, {"refund": other}, "admin")
    decide_proposal(session, first.id, "head")
    with pytest.raises(Conflict):
        decide_proposal(session, second.id, "head")
    session.expire_all()
    assert limits.band_dicts(limits.scheme(session, "refund")) == NEW_REFUNDS
    with pytest.raises(Conflict):  # and a proposal from a scheme read before is refused at once
        CP.propose_limits(session, {"refund": other}, "wfadmin",
                          expected={"refund": limits.fingerprint([])})
    decide_proposal(session, second.id, "head", "reject", "Out of date")


def test_a_limits_proposal_below_the_floor_is_refused_at_once(session, refund_scheme):
    count = session.scalar(select(func.count(ConfigProposal.id)))
    with pytest.raises(ValidationError) as info:
        CP.propose_limits(session, {"refund": [{"min_amount": 0, "max_amount": None,
                                                "roles": []}]}, "wfadmin")
    assert "four-eyes" in str(info.value.errors)
    with pytest.raises(ValidationError):
        CP.propose_limits(session, {"refund": refund_scheme}, "wfadmin")  # nothing changes
    assert session.scalar(select(func.count(ConfigProposal.id))) == count


def test_sync_workflows_needs_no_second_person_and_says_so(session, tmp_path):
    xml = variant(demo_xml())
    (tmp_path / "approval_demo.bpmn").write_bytes(xml)
    original = wf.active_definition(session, "approval_demo")
    try:
        wf.sync_workflows(session, str(tmp_path), actor="sync-workflows")
        new = _active(session)
        assert new.sha256 == wf.sha256_of(xml)
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "workflow.deploy", AuditEvent.entity_id == str(new.id))).one()
        assert event.actor == "sync-workflows" and event.reason == wf.OPERATOR_DEPLOY
    finally:
        if original is not None:
            admin.activate_version(session, "approval_demo", original.version, "test-cleanup")
