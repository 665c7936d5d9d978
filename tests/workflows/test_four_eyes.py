"""The four-eyes floor no configuration lowers, checked in the service whatever the BPMN and the
scheme say: refunds and write-offs always need an approval by someone other than the requester in
an approving role; suspense allocations need one above the ceiling. Workflows here are deployed
by an operator (``wf.deploy_definition``, as ``ims sync-workflows`` does) or stored as a version
deployed before the floor existed, to show the service holds even when the BPMN is bad."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from app.domain.errors import ValidationError
from app.models.audit import AuditEvent
from app.models.ledger import LedgerLine
from app.models.notification import Notification
from app.models.refund import Refund
from app.models.suspense_work import SuspenseAllocation, WriteOff
from app.models.workflow import ApprovalLimit, WorkflowDefinition, WorkflowEvent, WorkflowInstance
from app.security import roles as R
from app.services import approval_limits as limits
from app.services import refunds as RF
from app.services import suspense as S
from app.services import workflow as wf
from app.services import workflow_admin as admin
from app.services import writeoffs as WO
from app.workflow_engine import parse_definition
from tests.conftest import unique
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.integration.test_suspense_service import line, make_item
from tests.workflows.helpers import ready_tasks, with_action


def _xml(process_id: str) -> bytes:
    with open(os.path.join(wf.WORKFLOW_DIR, f"{process_id}.bpmn"), "rb") as fh:
        return fh.read()


def approves_at_once(xml: bytes) -> bytes:
    """A refund/write-off BPMN that still has approval tasks in approving lanes (so it deploys)
    but never reaches them: every request goes straight to "approved"."""
    xml = with_action(xml, 'current_role == "Finance Manager"', 'current_role == "nobody"')
    xml = with_action(xml, 'current_role == "Head of Finance"', 'current_role == "nobody"')
    if b'current_role == ""' in xml:  # refund_approval: "no more approvals" has a condition
        return with_action(xml, 'current_role == ""', 'current_role != "nobody"')
    return xml  # the others take their default route to "approved"


def approves_a_rejection(xml: bytes) -> bytes:
    """The approver's "reject" is routed on as if approved."""
    return with_action(xml, 'decision == "reject"', 'decision == "never"')


@pytest.fixture
def operator_deploys(session):
    """Deploy a BPMN as an operator would; the versions active before come back afterwards."""
    deploy_refund_workflow(session)
    S.ensure_deployed(session, WO.PROCESS_ID)
    S.ensure_deployed(session, S.PROCESS_ID)
    session.commit()
    before = {p: wf.active_definition(session, p) for p in
              ("refund_approval", "write_off_approval", "suspense_allocation_approval")}

    def deploy(process_id: str, xml: bytes):
        return wf.deploy_definition(session, xml, "operator", expected_process_id=process_id)

    yield deploy
    session.rollback()
    for process_id, original in before.items():
        if wf.active_definition(session, process_id).id != original.id:
            admin.activate_version(session, process_id, original.version, "test-cleanup")


def _store_unchecked(session, process_id: str, xml: bytes) -> WorkflowDefinition:
    """Make ``xml`` the active version without the lane check, as a version deployed before the
    four-eyes floor existed would be."""
    parsed = parse_definition(xml, set(R.ROLES))
    version = session.scalar(select(func.max(WorkflowDefinition.version)).where(
        WorkflowDefinition.process_id == process_id)) + 1
    definition = WorkflowDefinition(process_id=process_id, name=parsed.name, version=version,
                                    sha256=parsed.sha256, bpmn_xml=xml.decode(),
                                    spec_json=parsed.spec_json, deployed_by="legacy")
    session.add(definition)
    session.flush()
    wf.activate_definition(session, definition, "legacy")
    session.commit()
    return definition


def _refund_lines(session, refund_id) -> int:
    return session.scalar(select(func.count(LedgerLine.id)).join(
        Refund, Refund.approval_group_id == LedgerLine.group_id).where(Refund.id == refund_id))


def _assert_blocked(session, instance_id, requester="clerk"):
    session.expire_all()
    instance = session.get(WorkflowInstance, instance_id)
    assert (instance.status, instance.outcome) == ("completed", "rejected")
    assert "four-eyes" in instance.error
    assert "blocked" in [e.action for e in instance.events]
    event = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "workflow.blocked",
        AuditEvent.entity_id == str(instance_id))).one()
    assert "four-eyes" in event.reason
    for who in ("head", requester):
        assert session.scalar(select(func.count(Notification.id)).where(
            Notification.username == who, Notification.link == f"/workflow-instances/{instance_id}",
            Notification.message.contains("Blocked"))) == 1, who
    return instance


# ----------------------------------------------------------------------------- the scheme
@pytest.mark.parametrize("action, bands, message", [
    ("refund", [{"min_amount": 0, "max_amount": None, "roles": []}], "at least 1 approval"),
    ("refund", [{"min_amount": 0, "max_amount": None, "roles": [None]}], "not null"),
    ("refund", [{"min_amount": 0, "max_amount": None, "roles": [R.WFADMIN]}], "may not approve"),
    ("write_off", [{"min_amount": 0, "max_amount": 100_00, "roles": [R.MANAGER]},
                   {"min_amount": 100_01, "max_amount": None, "roles": []}], "at least 1"),
    ("write_off", [{"min_amount": 0, "max_amount": None, "roles": [R.CLERK]}], "may not approve"),
    ("suspense_allocation", [{"min_amount": 0, "max_amount": None, "roles": []}],
     "above £10,000.00 need at least 1"),
    ("suspense_allocation", [{"min_amount": 0, "max_amount": 2_000_000, "roles": []},
                             {"min_amount": 2_000_001, "max_amount": None,
                              "roles": [R.MANAGER]}], "above £10,000.00"),
    ("refund", [{"min_amount": 0, "max_amount": None, "roles": [1, 2]}], "not 1"),
    ("refund", [{"min_amount": 0, "max_amount": 2**63, "roles": [R.MANAGER]},
                {"min_amount": 2**63 + 1, "max_amount": None, "roles": [R.MANAGER]}],
     "maximum must be"),
    ("refund", [{"min_amount": -5, "max_amount": None, "roles": [R.MANAGER]}], "minimum must be"),
])
def test_a_scheme_below_the_floor_or_malformed_is_refused_and_nothing_changes(
        session, action, bands, message):
    before = limits.band_dicts(limits.scheme(session, action))
    with pytest.raises(ValidationError) as info:
        limits.replace_scheme(session, action, bands)
    assert message in str(info.value.errors), info.value.errors
    session.expire_all()
    assert limits.band_dicts(limits.scheme(session, action)) == before


def test_suspense_allocations_up_to_the_ceiling_may_go_without_approval(session):
    bands = [{"min_amount": 0, "max_amount": 1_000_000, "roles": []},
             {"min_amount": 1_000_001, "max_amount": None, "roles": [R.MANAGER]}]
    assert [b.approvals_required for b in
            limits.validate_scheme("suspense_allocation", bands)] == [0, 1]


def test_a_stored_scheme_below_the_floor_refuses_the_request_and_saves_nothing(session):
    """A band lowered in the database (or stored before the floor) is not waved through."""
    deploy_refund_workflow(session)
    txn = make_txn(session, 100_000)
    band = session.scalars(select(ApprovalLimit).where(
        ApprovalLimit.action == "refund", ApprovalLimit.min_amount == 0)).one()
    old = (band.approvals_required, band.roles)
    band.approvals_required, band.roles = 0, ""
    session.commit()
    try:
        with pytest.raises(ValidationError) as info:
            RF.request_refund(session, transaction_id=txn.id, amount="89.99", reason="Paid twice",
                              method="card", actor="clerk")
        assert "four-eyes" in info.value.message
        assert session.scalar(select(func.count(Refund.id)).where(
            Refund.transaction_id == txn.id)) == 0
    finally:
        band = session.get(ApprovalLimit, band.id)
        band.approvals_required, band.roles = old
        session.commit()


# ----------------------------------------------------------------------------- deploy checks
@pytest.mark.parametrize("process_id", ["refund_approval", "write_off_approval",
                                        "suspense_allocation_approval"])
def test_lanes_of_money_workflows_may_name_only_approving_roles(session, process_id):
    xml = with_action(_xml(process_id), 'name="Head of Finance"', 'name="Workflow Administrator"')
    with pytest.raises(ValidationError) as info:
        wf.deploy_definition(session, xml, "operator", expected_process_id=process_id)
    [problem] = info.value.errors["bpmn"]
    assert problem.element == "Lane_HeadOfFinance"
    assert "may not approve" in problem and "Finance Manager or Head of Finance" in problem
    assert wf.active_definition(session, process_id) is None or \
        wf.active_definition(session, process_id).sha256 != wf.sha256_of(xml)
    # the editor's check says the same, next to the lane
    if wf.active_definition(session, process_id) is not None:
        result = admin.check_definition(session, process_id, xml)
        assert not result.valid and result.to_dict()["problems"][0]["element"] == "Lane_HeadOfFinance"


def test_a_money_workflow_without_an_approval_task_is_refused(session):
    """Start -> set outcome approved -> End, as found: not deployable, whoever deploys it."""
    xml = _start_approved_end("refund_approval")
    with pytest.raises(ValidationError) as info:
        wf.deploy_definition(session, xml, "operator", expected_process_id="refund_approval")
    [problem] = info.value.errors["bpmn"]
    assert problem.element == "refund_approval" and "at least one user task" in problem
    # a process that approves nothing of value may still be that simple
    wf.parse(_start_approved_end("some_demo"))


def _start_approved_end(process_id: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="D" targetNamespace="x">
  <bpmn:process id="{process_id}" name="Approve everything" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="Activity_Approved" name="Approve">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="set_outcome" resultVariable="r">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="outcome" type="str" value="&quot;approved&quot;" />
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="EndEvent_1"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent_1" targetRef="Activity_Approved" />
    <bpmn:sequenceFlow id="F2" sourceRef="Activity_Approved" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>""".encode()


# ----------------------------------------------------------------------------- the service floor
def test_a_refund_workflow_that_approves_at_once_is_refused_and_nothing_is_saved(
        session, operator_deploys):
    operator_deploys("refund_approval", approves_at_once(_xml("refund_approval")))
    txn = make_txn(session, 1_000_000)
    lines_before = session.scalar(select(func.count(LedgerLine.id)))
    with pytest.raises(ValidationError) as info:
        RF.request_refund(session, transaction_id=txn.id, amount="8999.00", reason="Overpaid",
                          method="card", actor="clerk")
    assert "four-eyes" in info.value.message and "not saved" in info.value.message
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == txn.id)) == 0
    assert session.scalar(select(func.count(LedgerLine.id))) == lines_before


def test_an_approver_s_rejection_the_bpmn_turns_into_approval_is_blocked(session, operator_deploys):
    operator_deploys("refund_approval", approves_a_rejection(_xml("refund_approval")))
    txn = make_txn(session, 50_000)
    refund = RF.request_refund(session, transaction_id=txn.id, amount="100.00",
                               reason="Overpaid", method="card", actor="clerk").refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    result = wf.complete_task(session, task.id, "manager", "reject", "Not evidenced")
    assert result.outcome == "rejected"
    _assert_blocked(session, refund.workflow_instance_id)
    refund = session.get(Refund, refund.id)
    assert refund.status == "rejected" and "four-eyes" in refund.rejection_reason
    assert refund.approval_group_id is None and _refund_lines(session, refund.id) == 0


def test_a_legacy_version_with_a_workflow_administrator_lane_cannot_approve(
        session, operator_deploys):
    """A version stored before lanes were checked: the wfadmin's "approval" does not count."""
    xml = with_action(_xml("refund_approval"), 'name="Finance Manager">',
                      'name="Workflow Administrator">')
    _store_unchecked(session, "refund_approval", xml)
    txn = make_txn(session, 50_000)
    refund = RF.request_refund(session, transaction_id=txn.id, amount="100.00",
                               reason="Overpaid", method="card", actor="clerk").refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    assert task.role == R.WFADMIN
    result = wf.complete_task(session, task.id, "wfadmin", "approve", None)
    assert result.outcome == "rejected"
    _assert_blocked(session, refund.workflow_instance_id)
    refund = session.get(Refund, refund.id)
    assert refund.status == "rejected" and _refund_lines(session, refund.id) == 0


def test_a_timer_that_approves_is_blocked(app, session, operator_deploys):
    xml = with_action(_xml("refund_approval"),
                      'id="Flow_Escalated" sourceRef="Activity_Escalate" targetRef="Gateway_Assign"',
                      'id="Flow_Escalated" sourceRef="Activity_Escalate" targetRef="Activity_Approved"')
    operator_deploys("refund_approval", xml)
    txn = make_txn(session, 50_000)
    app.config["IMS_REFUND_ESCALATION"] = "PT1S"
    try:
        refund = RF.request_refund(session, transaction_id=txn.id, amount="100.00",
                                   reason="Overpaid", method="card", actor="clerk").refund
    finally:
        app.config["IMS_REFUND_ESCALATION"] = "P3D"
    [task] = ready_tasks(session, refund.workflow_instance_id)
    time.sleep(max(0.0, task.due_at.timestamp() - time.time()) + 0.05)
    assert wf.fire_due_timers(session) >= 1
    _assert_blocked(session, refund.workflow_instance_id)
    assert session.get(Refund, refund.id).status == "rejected"


def test_the_same_approvals_pass_the_floor(session, operator_deploys):
    """The check is no obstacle to a proper approval (one Finance Manager, not the requester)."""
    operator_deploys("refund_approval", _xml("refund_approval"))
    txn = make_txn(session, 50_000)
    refund = RF.request_refund(session, transaction_id=txn.id, amount="100.00",
                               reason="Overpaid", method="card", actor="clerk").refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    assert wf.complete_task(session, task.id, "manager", "approve", None).outcome == "approved"
    session.expire_all()
    instance = session.get(WorkflowInstance, refund.workflow_instance_id)
    assert instance.error is None and session.get(Refund, refund.id).status in ("approved", "paid")


def test_a_write_off_workflow_that_approves_at_once_is_refused(session, operator_deploys):
    operator_deploys("write_off_approval", approves_at_once(_xml("write_off_approval")))
    item = make_item(session, 40_00)
    with pytest.raises(ValidationError) as info:
        WO.request_write_off(session, amount="40.00", reason="Untraceable", actor="clerk",
                             suspense_item_id=item.id)
    assert "four-eyes" in info.value.message
    session.expire_all()
    assert session.scalar(select(func.count(WriteOff.id)).where(
        WriteOff.suspense_item_id == item.id)) == 0
    assert S.remaining_of(session.get(type(item), item.id)) == 40_00


# ----------------------------------------------------------------------------- suspense ceiling
def test_suspense_allocation_under_the_ceiling_posts_over_it_waits(session):
    small = make_item(session, 10_000_00)
    res = S.allocate(session, small.id, [line("TWS", unique("U"), "10000.00")], actor="clerk")
    assert res.allocation.status == "posted"
    big = make_item(session, 10_000_01)
    res = S.allocate(session, big.id, [line("TWS", unique("O"), "10000.01")], actor="clerk")
    assert res.allocation.status == "awaiting_approval"
    [task] = ready_tasks(session, res.allocation.workflow_instance_id)
    assert task.role == R.MANAGER


def test_over_the_ceiling_a_band_without_approval_is_refused(session):
    """A suspense band stored with no approval above the ceiling (or a ceiling lowered in the
    configuration) makes larger allocations wait for nobody: they are refused instead."""
    low, high = limits.scheme(session, "suspense_allocation")
    assert (low.max_amount, high.min_amount) == (1_000_000, 1_000_001)
    item = make_item(session, 20_000_00)
    low.max_amount, high.min_amount = 5_000_000, 5_000_001  # none up to £50,000
    session.commit()
    try:
        with pytest.raises(ValidationError) as info:
            S.allocate(session, item.id, [line("TWS", unique("C"), "20000.00")], actor="clerk")
        assert "four-eyes" in info.value.message
        assert session.scalar(select(func.count(SuspenseAllocation.id)).where(
            SuspenseAllocation.suspense_item_id == item.id)) == 0
        res = S.allocate(session, item.id, [line("TWS", unique("C"), "9000.00")], actor="clerk")
        assert res.allocation.status == "posted"
    finally:
        low, high = limits.scheme(session, "suspense_allocation")
        low.max_amount, high.min_amount = 1_000_000, 1_000_001
        session.commit()


def test_the_ceiling_comes_from_configuration(app, session):
    app.config["IMS_SUSPENSE_APPROVAL_CEILING"] = "100.00"
    try:
        assert limits.suspense_ceiling() == 100_00
        item = make_item(session, 200_00)
        with pytest.raises(ValidationError):  # the demo band (none up to £10,000) is too low now
            S.allocate(session, item.id, [line("TWS", unique("K"), "200.00")], actor="clerk")
        res = S.allocate(session, item.id, [line("TWS", unique("K"), "100.00")], actor="clerk")
        assert res.allocation.status == "posted"
        assert limits.floor_problems("suspense_allocation", limits.scheme(
            session, "suspense_allocation"))
    finally:
        app.config["IMS_SUSPENSE_APPROVAL_CEILING"] = "10000.00"
    assert limits.floor_problems("suspense_allocation",
                                 limits.scheme(session, "suspense_allocation")) == []


def test_blocked_history_is_in_order(session, operator_deploys):
    operator_deploys("refund_approval", approves_a_rejection(_xml("refund_approval")))
    txn = make_txn(session, 50_000)
    refund = RF.request_refund(session, transaction_id=txn.id, amount="10.00",
                               reason="Overpaid", method="card", actor="clerk").refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    wf.complete_task(session, task.id, "manager", "reject", "No")
    rows = session.scalars(select(WorkflowEvent).where(
        WorkflowEvent.instance_id == refund.workflow_instance_id).order_by(WorkflowEvent.id))
    assert [r.action for r in rows] == ["started", "rejected_task", "blocked", "rejected"]
