"""refund_approval.bpmn driven step by step, saved and restored between steps (as SpiffWorkflow's
own save_restore tests do), plus escalation through the tick and the deployed definition."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.models.refund import Refund
from app.models.workflow import WorkflowInstance
from app.security import roles as R
from app.services import refunds as RF
from app.services import workflow as wf
from app.workflow_engine import WorkflowRun, parse_definition
from tests.integration.test_refunds import REFUND_BPMN, deploy_refund_workflow, make_txn, ready


def _definition():
    with open(REFUND_BPMN, "rb") as fh:
        return parse_definition(fh.read(), set(R.ROLES))


def _save_restore(run, session):
    parsed = _definition()
    return WorkflowRun.restore("refund-test-" + parsed.sha256, lambda: parsed.spec_json, run.dump(),
                               wf.RunContext(session))


def _start(session, amount_pence):
    parsed = _definition()
    data = {"amount_pence": amount_pence, "requester": "clerk", "reason": "test",
            "action": "refund", "escalate_after": "P3D", "subject_type": "refund",
            "subject_id": "0", "method": "card", "payee_differs": False}
    return WorkflowRun.start("refund-test-" + parsed.sha256, lambda: parsed.spec_json, data,
                             wf.RunContext(session))


def test_definition_is_valid_with_lanes_that_are_roles():
    parsed = _definition()
    assert parsed.process_id == "refund_approval"
    assert set(parsed.roles) == {R.MANAGER, R.HEAD}


@pytest.mark.parametrize("amount,approvals", [(100, [R.MANAGER]), (50_000, [R.MANAGER]),
                                              (50_001, [R.MANAGER, R.HEAD])])
def test_route_by_the_scheme_of_delegation_with_save_restore_between_steps(session, amount, approvals):
    run = _save_restore(_start(session, amount), session)
    seen = []
    while not run.completed:
        [task] = run.ready_tasks()
        seen.append(task.role)
        assert task.due_at is not None if task.role == R.MANAGER else True
        run.complete_user_task(task.id, {"decision": "approve", "comment": "", "approver": "x"})
        run = _save_restore(run, session)
    assert seen == approvals
    assert run.data["outcome"] == "approved"
    session.rollback()


def test_a_rejection_at_the_second_step_ends_rejected(session):
    run = _save_restore(_start(session, 90_000), session)
    [fm] = run.ready_tasks()
    run.complete_user_task(fm.id, {"decision": "approve", "comment": "", "approver": "m"})
    run = _save_restore(run, session)
    [hof] = run.ready_tasks()
    assert hof.role == R.HEAD
    run.complete_user_task(hof.id, {"decision": "reject", "comment": "no", "approver": "h"})
    run = _save_restore(run, session)
    assert run.completed and run.data["outcome"] == "rejected"
    session.rollback()


def test_overdue_finance_manager_task_escalates_to_head_of_finance(app, session):
    deploy_refund_workflow(session)
    old = app.config.get("IMS_REFUND_ESCALATION")
    app.config["IMS_REFUND_ESCALATION"] = "PT1S"
    try:
        txn = make_txn(session, 10_000)
        refund = RF.request_refund(session, transaction_id=txn.id, amount="10.00",
                                   reason="late approval", method="card", actor="clerk").refund
    finally:
        app.config["IMS_REFUND_ESCALATION"] = old
    [task] = ready(session, refund)
    assert task.role == R.MANAGER
    time.sleep(max(0.0, task.due_at.timestamp() - time.time()) + 0.05)
    wf.fire_due_timers(session)
    [escalated] = ready(session, refund)
    assert escalated.role == R.HEAD
    instance = session.get(WorkflowInstance, refund.workflow_instance_id)
    assert [e.action for e in instance.events] == ["started", "escalated"]
    from app.models.notification import Notification

    note = session.scalars(select(Notification).where(Notification.username == "head")
                           .order_by(Notification.id.desc()).limit(1)).one()
    assert "Escalated" in note.message
    wf.complete_task(session, escalated.id, "head", "approve", "done late")
    RF.pay_queued(session)
    session.expire_all()
    assert session.get(Refund, refund.id).status == "paid"


def test_a_limit_naming_a_role_without_a_lane_fails_closed(session):
    from app.models.workflow import ApprovalLimit

    band = session.scalars(select(ApprovalLimit).where(
        ApprovalLimit.action == "refund", ApprovalLimit.max_amount.is_(None))).one()
    band.roles = f"{R.MANAGER},{R.CASHIER}"  # flushed, never committed
    session.flush()
    try:
        run = _save_restore(_start(session, band.min_amount + 1), session)
        [fm] = run.ready_tasks()
        run.complete_user_task(fm.id, {"decision": "approve", "comment": "", "approver": "m"})
        run = _save_restore(run, session)
        assert run.completed and run.data["outcome"] == "rejected"
    finally:
        session.rollback()
