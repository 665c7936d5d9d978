"""Helpers for workflow tests: deploy the demo BPMN, start requests about a test subject."""

from __future__ import annotations

import os
import uuid

from app.services import workflow as wf

DEMO_BPMN = os.path.join(wf.WORKFLOW_DIR, "approval_demo.bpmn")

#: outcomes delivered to the "wf_test" subject: subject_id -> [outcome, ...]
OUTCOMES: dict[str, list[str]] = {}


def _summary(session, subject_id):
    return {"title": f"Test request {subject_id}", "details": {"Test reference": subject_id},
            "url": f"/example/{subject_id}",
            "history": [{"at": "2026-01-01", "actor": "clerk", "action": "created",
                         "detail": "test subject created"}]}


def _outcome(session, subject_id, outcome, instance):
    assert instance.status == "completed"
    OUTCOMES.setdefault(subject_id, []).append(outcome)


wf.register_subject("wf_test", _summary, _outcome)


def demo_xml() -> bytes:
    with open(DEMO_BPMN, "rb") as fh:
        return fh.read()


def deploy_demo(session):
    """The active approval_demo definition (deployed from workflows/ if it is not yet)."""
    definition = wf.active_definition(session, "approval_demo")
    if definition is None or definition.sha256 != wf.sha256_of(demo_xml()):
        definition = wf.deploy_definition(session, demo_xml(), "wfadmin")
    return definition


def start(session, amount_pence: int, action: str = "refund", requester: str = "clerk",
          escalate_after: str = "P3D", reason: str = "Customer overpaid"):
    """Start (and commit) an approval of a fresh wf_test subject; returns the instance."""
    deploy_demo(session)
    subject_id = uuid.uuid4().hex[:12]
    instance = wf.start_workflow(session, "approval_demo", "wf_test", subject_id, requester,
                                 {"amount_pence": amount_pence, "requester": requester,
                                  "reason": reason, "action": action,
                                  "escalate_after": escalate_after})
    session.commit()
    return instance


def ready_tasks(session, instance_id):
    from sqlalchemy import select

    from app.models.workflow import WorkflowTask

    session.expire_all()
    return list(session.scalars(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance_id, WorkflowTask.status == "ready")))


def with_action(xml: bytes, old: str, new: str) -> bytes:
    assert old.encode() in xml, old
    return xml.replace(old.encode(), new.encode(), 1)


def variant(xml: bytes) -> bytes:
    """The demo BPMN with a harmless change (a new version, same behaviour)."""
    return with_action(xml, 'name="Generic approval by approval limits"',
                       f'name="Generic approval by approval limits {uuid.uuid4().hex[:6]}"')


def proposal_task(session, proposal_id):
    """The ready task (Head of Finance) that decides a configuration proposal, or None."""
    from sqlalchemy import select

    from app.models.workflow import ConfigProposal, WorkflowTask

    session.expire_all()
    proposal = session.get(ConfigProposal, proposal_id)
    return session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == proposal.workflow_instance_id,
        WorkflowTask.status == "ready"))


def decide_proposal(session, proposal_id, user="head", decision="approve", comment=None):
    """A Head of Finance (``user``) decides a proposal through its task, as their inbox would."""
    task = proposal_task(session, proposal_id)
    assert task is not None, f"proposal {proposal_id} has no ready task"
    return wf.complete_task(session, task.id, user, decision, comment)
