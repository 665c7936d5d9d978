"""The workflow service: instances, the task table, four-eyes, outcomes, versions, timers."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.models.audit import AuditEvent
from app.models.base import utcnow
from app.models.workflow import ApprovalLimit, WorkflowEvent, WorkflowInstance
from app.services import workflow as wf
from tests.workflows.helpers import OUTCOMES, demo_xml, deploy_demo, ready_tasks, start, variant


def test_instance_stores_state_subject_and_projects_the_ready_task(session):
    instance = start(session, 12_345)
    assert instance.status == "running" and instance.subject_type == "wf_test"
    assert instance.started_by == "clerk" and instance.requester == "clerk"
    assert instance.serializer_version.startswith("spiff-")
    assert '"spec"' not in instance.state_json[:200]  # the spec is stored once, on the version
    [task] = ready_tasks(session, instance.id)
    assert task.role == "Finance Manager" and task.name == "Activity_ApproveFM"
    assert task.due_at is not None and instance.next_timer_at == task.due_at
    history = [e.action for e in instance.events]
    assert history == ["started"]


def test_one_approval_then_outcome_delivered_in_the_same_transaction(session):
    instance = start(session, 20_000)
    [task] = ready_tasks(session, instance.id)
    result = wf.complete_task(session, task.id, "manager", "approve", "Fine")
    assert result.instance_status == "completed" and result.outcome == "approved"
    assert OUTCOMES[instance.subject_id] == ["approved"]
    session.expire_all()
    instance = session.get(WorkflowInstance, instance.id)
    assert [e.action for e in instance.events] == ["started", "approved_task", "approved"]
    assert instance.events[1].actor == "manager" and instance.events[1].comment == "Fine"
    audit = session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity == "WorkflowInstance", AuditEvent.entity_id == str(instance.id))).all()
    assert audit == ["workflow.start"]
    approval = session.scalars(select(AuditEvent).where(
        AuditEvent.entity == "WorkflowTask", AuditEvent.entity_id == task.id)).one()
    assert approval.actor == "manager" and approval.action == "workflow.task.approve"
    assert '"outcome":"approved"' in approval.after


def test_two_approvals_in_sequence_and_the_four_eyes_rule(session):
    instance = start(session, 80_000)
    [first] = ready_tasks(session, instance.id)
    wf.complete_task(session, first.id, "manager", "approve", None)
    [second] = ready_tasks(session, instance.id)
    assert second.role == "Head of Finance"
    result = wf.complete_task(session, second.id, "head", "approve", "ok")
    assert result.outcome == "approved"


def test_the_same_person_never_gives_two_approvals_in_one_instance(session):
    # write-off above £5,000: Head of Finance then Finance Manager; give "head" both roles' chance
    from flask_appbuilder.security.sqla.models import Role, User

    user = session.scalar(select(User).where(User.username == "manager2"))
    head_role = session.scalar(select(Role).where(Role.name == "Head of Finance"))
    user.roles.append(head_role)
    session.commit()
    try:
        instance = start(session, 600_000, action="write_off")
        [first] = ready_tasks(session, instance.id)
        assert first.role == "Head of Finance"
        wf.complete_task(session, first.id, "manager2", "approve", None)
        [second] = ready_tasks(session, instance.id)
        assert second.role == "Finance Manager"
        with pytest.raises(Forbidden) as info:
            wf.complete_task(session, second.id, "manager2", "approve", None)
        assert "four-eyes" in info.value.message
        assert [t.id for t in wf.tasks_for_user(session, "manager2")].count(second.id) == 0
        assert second.id in [t.id for t in wf.tasks_for_user(session, "manager")]
        wf.complete_task(session, second.id, "manager", "approve", None)
    finally:
        user = session.scalar(select(User).where(User.username == "manager2"))
        user.roles.remove(head_role)
        session.commit()


def test_requester_may_not_approve_even_holding_the_role(session):
    instance = start(session, 1_000, requester="manager")
    [task] = ready_tasks(session, instance.id)
    with pytest.raises(Forbidden) as info:
        wf.complete_task(session, task.id, "manager", "approve", None)
    assert "requested" in info.value.message
    assert task.id not in [t.id for t in wf.tasks_for_user(session, "manager")]
    assert task.id in [t.id for t in wf.tasks_for_user(session, "manager2")]


@pytest.mark.parametrize("username", ["admin", "wfadmin", "clerk2", "auditor", "head"])
def test_only_the_lane_role_may_complete_no_bypass_for_administrator(session, username):
    instance = start(session, 1_000)
    [task] = ready_tasks(session, instance.id)
    with pytest.raises(Forbidden) as info:
        wf.complete_task(session, task.id, username, "approve", None)
    assert "Finance Manager" in info.value.message
    assert task.id not in [t.id for t in wf.tasks_for_user(session, username)]


def test_an_inactive_or_unknown_user_may_not_complete_and_the_task_stays_ready(app, session):
    from tests.conftest import unique

    sm = app.appbuilder.sm
    name = unique("fm").lower()
    user = sm.add_user(name, "Inactive", "Manager", f"{name}@example.invalid",
                       [sm.find_role("Finance Manager")], password="Str0ng!Passw")
    user.active = False
    session.commit()
    instance = start(session, 1_000)
    [task] = ready_tasks(session, instance.id)
    for username in (name, "no-such-user"):
        with pytest.raises(Forbidden) as info:
            wf.complete_task(session, task.id, username, "approve", None)
        assert "not active" in info.value.message
    session.expire_all()
    [still] = ready_tasks(session, instance.id)
    assert still.id == task.id and still.completed_by is None
    assert wf.complete_task(session, task.id, "manager", "approve", None).outcome == "approved"


def test_reject_needs_a_comment_and_decision_must_be_known(session):
    instance = start(session, 1_000)
    [task] = ready_tasks(session, instance.id)
    with pytest.raises(ValidationError):
        wf.complete_task(session, task.id, "manager", "reject", "  ")
    with pytest.raises(ValidationError):
        wf.complete_task(session, task.id, "manager", "maybe", "x")
    result = wf.complete_task(session, task.id, "manager", "reject", "Duplicate request")
    assert result.outcome == "rejected"
    assert OUTCOMES[instance.subject_id] == ["rejected"]


def test_completed_task_is_a_conflict_and_unknown_is_not_found(session):
    instance = start(session, 1_000)
    [task] = ready_tasks(session, instance.id)
    wf.complete_task(session, task.id, "manager", "approve", None)
    with pytest.raises(Conflict):
        wf.complete_task(session, task.id, "manager2", "approve", None)
    with pytest.raises(NotFound):
        wf.complete_task(session, "no-such-task", "manager", "approve", None)


def test_no_approval_needed_completes_at_start(session):
    instance = start(session, 5_000, action="suspense_allocation")
    assert instance.status == "completed" and instance.outcome == "approved"
    assert OUTCOMES[instance.subject_id] == ["approved"]
    assert ready_tasks(session, instance.id) == []
    session.expire_all()  # the stored row, not just the object, is completed
    stored = session.get(WorkflowInstance, instance.id)
    assert (stored.status, stored.outcome, stored.next_timer_at) == ("completed", "approved", None)
    assert stored.completed_at is not None
    assert [e.action for e in stored.events] == ["started", "approved"]


def test_changing_the_limits_changes_the_route(session):
    limit = session.scalar(select(ApprovalLimit).where(
        ApprovalLimit.action == "suspense_allocation", ApprovalLimit.min_amount == 0))
    old = (limit.approvals_required, limit.roles)
    limit.approvals_required, limit.roles = 1, "Head of Finance"
    session.commit()
    try:
        instance = start(session, 5_000, action="suspense_allocation")
        [task] = ready_tasks(session, instance.id)
        assert task.role == "Head of Finance"
    finally:
        limit.approvals_required, limit.roles = old
        session.commit()


def test_instances_stay_on_their_version_when_a_new_one_is_deployed(session):
    old = deploy_demo(session)
    instance = start(session, 1_000)
    new = wf.deploy_definition(session, variant(demo_xml()), "wfadmin")
    try:
        assert new.version > old.version and new.active and not old.active
        [task] = ready_tasks(session, instance.id)
        wf.complete_task(session, task.id, "manager", "approve", None)
        session.expire_all()
        instance = session.get(WorkflowInstance, instance.id)
        assert instance.definition_id == old.id and instance.outcome == "approved"
        later = wf.start_workflow(session, "approval_demo", "wf_test", "v2", "clerk",
                                  {"amount_pence": 1, "reason": "x", "action": "refund"})
        assert later.definition_id == new.id
        session.commit()
    finally:
        wf.deploy_definition(session, demo_xml(), "wfadmin")  # re-activates the file's version
    assert wf.active_definition(session, "approval_demo").id == old.id


def test_deploying_unsafe_bpmn_fails_and_changes_nothing(session):
    before = deploy_demo(session)
    xml = demo_xml().replace(b'current_role == "Finance Manager"', b"().__class__")
    with pytest.raises(ValidationError) as info:
        wf.deploy_definition(session, xml, "wfadmin")
    assert any("Flow_ToFM" in e for e in info.value.errors["bpmn"])
    assert wf.active_definition(session, "approval_demo").id == before.id


def test_sync_workflows_is_idempotent(session, tmp_path):
    import shutil

    from tests.workflows.helpers import DEMO_BPMN

    deploy_demo(session)
    shutil.copy(DEMO_BPMN, tmp_path / "approval_demo.bpmn")
    first = wf.sync_workflows(session, str(tmp_path))
    second = wf.sync_workflows(session, str(tmp_path))
    assert first == second and any("approval_demo" in line for line in first)
    (tmp_path / "unsafe.bpmn").write_bytes(
        demo_xml().replace(b'current_role == "Finance Manager"', b"__import__('os')"))
    with pytest.raises(ValidationError) as info:
        wf.sync_workflows(session, str(tmp_path))
    assert "unsafe.bpmn" in info.value.message


def test_start_refuses_floats_and_unknown_subjects(session):
    deploy_demo(session)
    with pytest.raises(ValidationError):
        wf.start_workflow(session, "approval_demo", "wf_test", "x", "clerk", {"amount_pence": 1.5})
    with pytest.raises(ValidationError):
        wf.start_workflow(session, "approval_demo", "nope", "x", "clerk", {"amount_pence": 1})
    with pytest.raises(NotFound):
        wf.start_workflow(session, "no_such_process", "wf_test", "x", "clerk", {"amount_pence": 1})
    session.rollback()


def test_tick_escalates_overdue_task_to_the_next_role_up(session):
    instance = start(session, 1_000, escalate_after="PT1S")
    [task] = ready_tasks(session, instance.id)
    wf.fire_due_timers(session, now=utcnow() - timedelta(minutes=1))  # nothing of ours is due
    session.expire_all()
    assert [t.id for t in ready_tasks(session, instance.id)] == [task.id]
    time.sleep(max(0.0, task.due_at.timestamp() - time.time()) + 0.05)
    processed = wf.fire_due_timers(session)
    assert processed >= 1
    [escalated] = ready_tasks(session, instance.id)
    assert escalated.role == "Head of Finance"
    session.expire_all()
    instance = session.get(WorkflowInstance, instance.id)
    actions = [e.action for e in instance.events]
    assert actions == ["started", "escalated"]
    assert instance.next_timer_at is None
    wf.complete_task(session, escalated.id, "head", "approve", "Done late")
    assert OUTCOMES[instance.subject_id] == ["approved"]


def test_tick_job_is_registered_and_runs(app):
    from app.services.audit import set_actor
    from app.services.jobs import run_tick

    try:
        with app.app_context():
            lines = list(run_tick())
    finally:
        set_actor(None)  # run_tick acts as "worker"; later tests act as their users
    assert any(line.startswith("workflow-timers:") for line in lines)


def test_events_record_who_and_comment(session):
    instance = start(session, 60_000)
    [t1] = ready_tasks(session, instance.id)
    wf.complete_task(session, t1.id, "manager", "approve", "first ok")
    [t2] = ready_tasks(session, instance.id)
    wf.complete_task(session, t2.id, "head", "reject", "not justified")
    rows = session.scalars(select(WorkflowEvent).where(WorkflowEvent.instance_id == instance.id)
                           .order_by(WorkflowEvent.id)).all()
    assert [(r.actor, r.action, r.comment) for r in rows] == [
        ("clerk", "started", "Customer overpaid"), ("manager", "approved_task", "first ok"),
        ("head", "rejected_task", "not justified"), ("head", "rejected", None)]


def test_two_approvals_by_the_same_role_need_two_people(session):
    limit = session.scalar(select(ApprovalLimit).where(
        ApprovalLimit.action == "suspense_allocation", ApprovalLimit.max_amount.is_(None)))
    old = (limit.approvals_required, limit.roles)
    limit.approvals_required, limit.roles = 2, "Finance Manager,Finance Manager"
    session.commit()
    try:
        instance = start(session, 2_000_000, action="suspense_allocation")
        [first] = ready_tasks(session, instance.id)
        wf.complete_task(session, first.id, "manager", "approve", None)
        [second] = ready_tasks(session, instance.id)
        assert second.id != first.id and second.role == "Finance Manager"
        with pytest.raises(Forbidden):
            wf.complete_task(session, second.id, "manager", "approve", None)
        result = wf.complete_task(session, second.id, "manager2", "approve", None)
        assert result.outcome == "approved"
    finally:
        limit.approvals_required, limit.roles = old
        session.commit()


def test_escalation_duration_comes_from_config_when_not_given(app, session):
    deploy_demo(session)
    app.config["IMS_WF_TEST_ESCALATION"] = "PT2H"
    try:
        instance = wf.start_workflow(session, "approval_demo", "wf_test", "cfg", "clerk",
                                     {"amount_pence": 1_00, "reason": "x", "action": "refund"})
        session.commit()
    finally:
        del app.config["IMS_WF_TEST_ESCALATION"]
    [task] = ready_tasks(session, instance.id)
    seconds = task.due_at.timestamp() - time.time()
    assert 2 * 3600 - 120 < seconds <= 2 * 3600


def test_start_routes_by_limits_changed_earlier_in_its_transaction(session):
    """The band read with the definition at start sees the session's unflushed changes, as the
    operator's own query did."""
    deploy_demo(session)
    session.commit()
    limit = session.scalar(select(ApprovalLimit).where(
        ApprovalLimit.action == "suspense_allocation", ApprovalLimit.min_amount == 0))
    try:
        limit.approvals_required, limit.roles = 1, "Head of Finance"  # not flushed
        instance = wf.start_workflow(session, "approval_demo", "wf_test", "route-pending", "clerk",
                                     {"amount_pence": 5_000, "reason": "r",
                                      "action": "suspense_allocation"})
        [task] = ready_tasks(session, instance.id)
        assert task.role == "Head of Finance"
    finally:
        session.rollback()
    session.expire_all()
    assert session.get(ApprovalLimit, limit.id).approvals_required == 0


def test_a_route_the_start_did_not_read_is_looked_up_by_the_operator(session):
    """A BPMN passing the operator other values than the request's action and amount is routed
    by those values (the operator queries the limits itself)."""
    xml = variant(demo_xml()).replace(
        b'<spiffworkflow:parameter id="action" type="str" value="action" />',
        b'<spiffworkflow:parameter id="action" type="str" value="&quot;write_off&quot;" />', 1)
    assert b"&quot;write_off&quot;" in xml
    wf.deploy_definition(session, xml, "wfadmin")
    try:
        instance = wf.start_workflow(session, "approval_demo", "wf_test", "route-other", "clerk",
                                     {"amount_pence": 20_000, "reason": "r", "action": "refund"})
        session.commit()
        [task] = ready_tasks(session, instance.id)
        assert task.role == "Head of Finance"  # write-offs over £100 (refunds: Finance Manager)
    finally:
        deploy_demo(session)


def test_start_refuses_an_action_no_limit_covers_and_saves_nothing(session):
    deploy_demo(session)
    session.commit()
    before = session.scalar(select(func.count(WorkflowInstance.id)))
    with pytest.raises(ValidationError, match="No approval limit covers a no_such_action of 100"):
        wf.start_workflow(session, "approval_demo", "wf_test", "route-missing", "clerk",
                          {"amount_pence": 100, "reason": "r", "action": "no_such_action"})
    session.rollback()
    assert session.scalar(select(func.count(WorkflowInstance.id))) == before
