"""workflows/suspense_allocation_approval.bpmn: above the limit a Finance Manager approves (or the
Head of Finance after escalation); approval posts, rejection releases the reservation."""

from __future__ import annotations

import time

from app.models.suspense_work import SuspenseAllocation
from app.models.workflow import WorkflowInstance, WorkflowTask
from app.services import ledger as L
from app.services import suspense as S
from app.services import workflow as wf
from tests.conftest import unique
from tests.integration.test_suspense_service import assert_books_balance, line, make_item, ready


def test_limit_boundary(session):
    item = make_item(session, 25_000_00)
    at = S.allocate(session, item.id, [line("TWS", unique("E"), "10000.00")], actor="clerk")
    assert at.allocation.status == "posted" and at.allocation.workflow_instance_id is None
    above = S.allocate(session, item.id, [line("TWS", unique("F"), "10000.01")], actor="clerk")
    assert above.allocation.status == "awaiting_approval"
    inst = session.get(WorkflowInstance, above.allocation.workflow_instance_id)
    assert inst.process_id == "suspense_allocation_approval" and inst.amount_pence == 10_000_01
    assert [t.role for t in ready(session, inst.id)] == ["Finance Manager"]


def test_escalated_allocation_approved_by_head(session, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMS_SUSPENSE_ALLOCATION_ESCALATION", "PT1S")
    item = make_item(session, 30_000_00)
    ref = unique("H")
    res = S.allocate(session, item.id, [line("TWS", ref, "15000.00"),
                                        line("TWS", ref + "2", "15000.00")], actor="clerk")
    [task] = ready(session, res.allocation.workflow_instance_id)
    time.sleep(max(0.0, task.due_at.timestamp() - time.time()) + 0.05)
    wf.fire_due_timers(session)
    session.expire_all()
    assert session.get(WorkflowTask, task.id).status == "escalated"
    [task2] = ready(session, res.allocation.workflow_instance_id)
    assert task2.role == "Head of Finance"
    wf.complete_task(session, task2.id, "head", "approve", "ok")
    session.expire_all()
    assert session.get(SuspenseAllocation, res.allocation.id).status == "posted"
    assert L.balance_of(session, L.FUND, "TWS", ref) == -15_000_00
    assert L.balance_of(session, L.FUND, "TWS", ref + "2") == -15_000_00
    assert S.get_item(session, item.id).status == "allocated"
    assert_books_balance(session)


def test_approval_rechecks_the_lines(session):
    """A fund disabled while the request waited: the approval is refused, nothing posts."""
    import pytest

    from app.domain.errors import ValidationError
    from app.models.reference import Fund

    code = unique("Z", 8)
    session.add(Fund(code=code, name="Soon closed"))
    session.commit()
    item = make_item(session, 11_000_00)
    res = S.allocate(session, item.id, [line(code, "ANY", "11000.00")], actor="clerk")
    fund = session.query(Fund).filter_by(code=code).one()
    fund.disabled = True
    session.commit()
    [task] = ready(session, res.allocation.workflow_instance_id)
    with pytest.raises(ValidationError):
        wf.complete_task(session, task.id, "manager", "approve", "ok")
    session.expire_all()
    assert session.get(SuspenseAllocation, res.allocation.id).status == "awaiting_approval"
    wf.complete_task(session, task.id, "manager", "reject", "Fund closed")
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 11_000_00
    assert_books_balance(session)


def test_approvers_and_requester_are_notified(session):
    from sqlalchemy import select

    from app.models.notification import Notification

    item = make_item(session, 10_500_00)
    res = S.allocate(session, item.id, [line("TWS", unique("N"), "10500.00")], actor="clerk")
    link = f"/suspense/{item.id}"
    to_managers = session.scalars(select(Notification.username).where(Notification.link == link)).all()
    assert {"manager", "manager2"} <= set(to_managers)
    [task] = ready(session, res.allocation.workflow_instance_id)
    wf.complete_task(session, task.id, "manager", "approve", "ok")
    told = session.scalars(select(Notification.message).where(
        Notification.link == link, Notification.username == "clerk")).all()
    assert any("approved" in m for m in told)
