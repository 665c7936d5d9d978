"""/workflow-instances/<id> shows what a request is about (payee, amount, reason): only to those
who may read its subject, its requester and its approvers."""

from __future__ import annotations

import pytest

from app.security.roles import SUBJECT_RESOURCES
from app.services import workflow as wf
from tests.conftest import unique
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.integration.test_suspense_service import make_item
from tests.workflows.helpers import ready_tasks, start

#: roles that read refunds, write-offs and suspense allocations, and those that do not
READERS = ("clerk", "manager", "head", "auditor")
OTHERS = ("cashier", "wfadmin", "admin")


def _refund(api, session):
    deploy_refund_workflow(session)
    txn = make_txn(session, 200_00)
    resp = api("clerk").post("/api/v1/refunds", json={
        "transaction_id": txn.id, "amount": "150.00", "method": "bacs",
        "reason": "Secret reason for the refund",
        "payee": {"name": "Payee Secretname", "sort_code": "12-34-56",
                  "account_number": "12345678"}})
    assert resp.status_code == 201, resp.json
    return resp.json["workflow_instance_id"], ("Payee Secretname", "Secret reason", "150.00")


def _write_off(api, session):
    item = make_item(session, 25_00)
    resp = api("clerk").post("/api/v1/write-offs", json={
        "suspense_item_id": item.id, "amount": "25.00", "reason": "Secret write-off reason"})
    assert resp.status_code == 201, resp.json
    return resp.json["workflow_instance_id"], ("Secret write-off reason", "25.00")


def _allocation(api, session):
    item = make_item(session, 12_345_00)
    resp = api("clerk").post(f"/api/v1/suspense/{item.id}/allocations", json={
        "lines": [{"fund_code": "TWS", "account_reference": unique("S"), "amount": "12345.00"}],
        "note": "Secret allocation note"})
    assert resp.status_code == 201 and resp.json["status"] == "awaiting_approval", resp.json
    return resp.json["workflow_instance_id"], ("12,345.00",)


@pytest.mark.parametrize("make", [_refund, _write_off, _allocation])
def test_only_readers_of_the_subject_see_the_instance_page(api, as_user, session, make):
    instance_id, secrets = make(api, session)
    assert instance_id
    for username in READERS:
        resp = as_user(username).get(f"/workflow-instances/{instance_id}")
        assert resp.status_code == 200, (username, resp.status_code)
    html = as_user("auditor").get(f"/workflow-instances/{instance_id}").get_data(as_text=True)
    assert all(s in html for s in secrets), secrets
    for username in OTHERS:
        resp = as_user(username).get(f"/workflow-instances/{instance_id}")
        assert resp.status_code == 403, (username, resp.status_code)
        text = resp.get_data(as_text=True)
        assert not any(s in text for s in secrets), username


def test_requester_and_approvers_see_a_workflow_whose_subject_has_no_reader_rule(session, as_user):
    """wf_test (a test subject) maps to no resource: its requester and the roles of its tasks
    (approvers, whoever completed one) may see it, nobody else."""
    instance = start(session, 700_00)
    assert instance.subject_type not in SUBJECT_RESOURCES
    [task] = ready_tasks(session, instance.id)
    assert task.role == "Finance Manager"
    url = f"/workflow-instances/{instance.id}"
    assert as_user("clerk").get(url).status_code == 200  # the requester
    assert as_user("manager2").get(url).status_code == 200  # holds the lane's role
    for username in ("cashier", "wfadmin", "head", "auditor"):
        assert as_user(username).get(url).status_code == 403, username
    as_user("manager").post(f"/tasks/{task.id}/complete", data={"decision": "approve",
                                                                 "comment": "ok"})
    assert as_user("head").get(url).status_code == 200  # the next approver's role
    assert as_user("manager").get(url).status_code == 200  # completed a task


def test_unknown_instance_is_404(as_user):
    assert as_user("auditor").get("/workflow-instances/99999999").status_code == 404


def test_every_subject_type_of_the_app_has_a_reader_rule():
    """A new kind of workflow subject must say who may see its workflows."""
    ours = {name for name, subject in wf._SUBJECTS.items()
            if subject.summary_fn.__module__.startswith("app.")}
    assert ours, "the app registers its subject types on import"
    assert ours <= set(SUBJECT_RESOURCES), sorted(ours - set(SUBJECT_RESOURCES))
