"""workflows/write_off_approval.bpmn driven through the workflow service (every step restores the
saved instance state, acts and saves it again): tiers, four-eyes, escalation, rejection, and
write-offs of a transaction's residual balance."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.domain.errors import Forbidden, ValidationError
from app.models.ledger import LedgerLine, Transaction
from app.models.suspense_work import WriteOff
from app.models.workflow import WorkflowInstance, WorkflowTask
from app.services import ledger as L
from app.services import receipts as RC
from app.services import suspense as S
from app.services import workflow as wf
from app.services import writeoffs as W
from app.workflow_engine import WorkflowRun
from tests.conftest import unique
from tests.integration.test_suspense_service import assert_books_balance, make_item, ready


def _request(session, pence, requester="clerk"):
    item = make_item(session, pence)
    wo = W.request_write_off(session, suspense_item_id=item.id, amount=pence, reason="Unclaimed",
                             actor=requester)
    return item, wo


def _roles(session, wo):
    return [t.role for t in ready(session, wo.workflow_instance_id)]


def _approve(session, wo, user, comment="ok"):
    [task] = ready(session, wo.workflow_instance_id)
    return wf.complete_task(session, task.id, user, "approve", comment)


def _status(session, wo):
    session.expire_all()
    return session.get(WriteOff, wo.id).status


def test_both_bpmn_files_deploy(session):
    for pid in ("write_off_approval", "suspense_allocation_approval"):
        S.ensure_deployed(session, pid)
        session.commit()
        definition = wf.active_definition(session, pid)
        assert definition is not None and definition.process_id == pid


def test_tier_one_finance_manager(session):
    item, wo = _request(session, 75_00)
    assert wo.status == "awaiting_approval"
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 0  # reserved
    assert _roles(session, wo) == ["Finance Manager"]
    # the saved state restores to the same waiting task
    inst = session.get(WorkflowInstance, wo.workflow_instance_id)
    run = WorkflowRun.restore(str(inst.definition_id), lambda: inst.definition.spec_json,
                              inst.state_json)
    assert [t.name for t in run.ready_tasks()] == wf.current_elements(inst)
    _approve(session, wo, "manager")
    assert _status(session, wo) == "posted"
    wo = session.get(WriteOff, wo.id)
    lines = {(ln.account, ln.amount) for ln in session.scalars(
        select(LedgerLine).where(LedgerLine.group_id == wo.posting_group_id))}
    assert lines == {("SUSPENSE", 75_00), ("WRITE_OFFS", -75_00)}
    item = S.get_item(session, item.id)
    assert item.status == "written_off" and item.remaining_amount == 0
    assert wo.approvers == "manager"
    assert_books_balance(session)


def test_tier_two_head_of_finance(session):
    _, wo = _request(session, 2_500_00)
    assert _roles(session, wo) == ["Head of Finance"]
    with pytest.raises(Forbidden):
        _approve(session, wo, "manager")
    _approve(session, wo, "head")
    assert _status(session, wo) == "posted"
    assert_books_balance(session)


def test_tier_three_climbs_head_then_second_approver(session):
    _, wo = _request(session, 7_000_00)
    assert _roles(session, wo) == ["Head of Finance"]
    _approve(session, wo, "head", "Agreed")
    assert _status(session, wo) == "awaiting_approval"
    assert _roles(session, wo) == ["Finance Manager"]
    _approve(session, wo, "manager2", "Second approval")
    assert _status(session, wo) == "posted"
    assert session.get(WriteOff, wo.id).approvers == "head, manager2"
    assert_books_balance(session)


def test_requester_cannot_approve_and_nothing_posts(session):
    _, wo = _request(session, 20_00, requester="manager")
    with pytest.raises(Forbidden):
        _approve(session, wo, "manager")
    assert _status(session, wo) == "awaiting_approval"
    assert session.get(WriteOff, wo.id).posting_group_id is None


def test_rejection_releases_the_item(session):
    item, wo = _request(session, 30_00)
    [task] = ready(session, wo.workflow_instance_id)
    with pytest.raises(ValidationError):
        wf.complete_task(session, task.id, "manager", "reject", "")
    wf.complete_task(session, task.id, "manager", "reject", "Payer found; allocate instead")
    session.expire_all()
    wo = session.get(WriteOff, wo.id)
    assert wo.status == "rejected" and wo.decision_comment == "Payer found; allocate instead"
    item = S.get_item(session, item.id)
    assert item.remaining_amount == 30_00 and item.status == "unallocated"
    assert_books_balance(session)


def test_escalation_to_head_of_finance(session, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMS_WRITE_OFF_ESCALATION", "PT1S")
    _, wo = _request(session, 10_00)
    [task] = ready(session, wo.workflow_instance_id)
    assert task.due_at is not None
    time.sleep(max(0.0, task.due_at.timestamp() - time.time()) + 0.05)
    wf.fire_due_timers(session)
    session.expire_all()
    assert session.get(WorkflowTask, task.id).status == "escalated"
    assert _roles(session, wo) == ["Head of Finance"]
    _approve(session, wo, "head")
    assert _status(session, wo) == "posted"
    assert_books_balance(session)


def test_write_off_more_than_the_item_is_refused(session):
    item = make_item(session, 5_00)
    with pytest.raises(ValidationError) as exc:
        W.request_write_off(session, suspense_item_id=item.id, amount="5.01", reason="x",
                            actor="clerk")
    assert "amount" in exc.value.errors
    assert session.scalar(select(WriteOff.id).where(WriteOff.suspense_item_id == item.id)) is None


def _receipt(session, amount="10.00"):
    res = RC.take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": unique("WO"),
                                           "amount": amount}], payment_method_code="CASH",
                          actor="cashier")
    return res.transactions[0]


def test_residual_balance_of_a_transaction(session):
    txn = _receipt(session, "10.00")
    tid, fund, ref = txn.id, txn.fund_code, txn.account_reference
    with pytest.raises(ValidationError):
        W.request_write_off(session, transaction_id=tid, amount="10.01", reason="x", actor="clerk")
    wo = W.request_write_off(session, transaction_id=tid, amount="0.40", reason="Small residual",
                             actor="clerk")
    session.expire_all()
    assert L.available_amount(session, session.get(Transaction, tid)) == 9_60  # reserved
    _approve(session, wo, "manager")
    session.expire_all()
    assert session.get(WriteOff, wo.id).status == "posted"
    assert L.available_amount(session, session.get(Transaction, tid)) == 9_60
    assert L.balance_of(session, L.FUND, fund, ref) == -9_60
    assert_books_balance(session)


def test_rejected_transaction_write_off_releases(session):
    txn = _receipt(session, "3.00")
    tid = txn.id
    wo = W.request_write_off(session, transaction_id=tid, amount="3.00", reason="x", actor="clerk")
    [task] = ready(session, wo.workflow_instance_id)
    wf.complete_task(session, task.id, "manager", "reject", "No")
    session.expire_all()
    assert L.available_amount(session, session.get(Transaction, tid)) == 3_00


def test_ageing_job_lists_daily(session, app):
    old = make_item(session, 1_11, days_old=60)
    run = W.run_ageing(session)
    assert old.id in [i.id for i in W.run_items(session, run)]
    with app.app_context():
        assert W._ageing_job() is None  # ran in the last 20 hours: nothing until tomorrow
    created = W.propose_aged(session, [old.id], reason="Aged", actor="clerk", ageing_run_id=run.id)
    assert created[0].amount == 1_11 and created[0].ageing_run_id == run.id
    with pytest.raises(ValidationError):  # nothing left to propose
        W.propose_aged(session, [old.id], reason="Aged", actor="clerk")
