"""Workflow use cases: deploy definitions, start instances, complete tasks (four-eyes), fire timers.

This is the API other features call (thin over app.workflow_engine):

* ``start_workflow(session, process_id, subject_type, subject_id, started_by, data)`` joins the
  caller's transaction (it flushes, never commits) so the business row and its workflow are saved
  together; ``data`` holds at least ``amount_pence``, ``requester`` and ``reason``.
* ``complete_task(session, task_id, username, decision, comment)`` is a use case of its own: it
  commits, or rolls back and raises NotFound (404), Forbidden (403), Conflict (409) or
  ValidationError (422).
* ``register_subject(subject_type, summary_fn, on_outcome_fn)``: ``summary_fn(session, subject_id)``
  returns a dict for the task page; ``on_outcome_fn(session, subject_id, outcome, instance)`` is
  called in the same transaction when the workflow ends ("approved" or "rejected").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.domain.i18n import N_
from app.models.base import utcnow
from app.models.workflow import WorkflowDefinition, WorkflowEvent, WorkflowInstance, WorkflowTask
from app.security import roles as R
from app.services import audit
from app.services.approval_limits import route_for
from app.workflow_engine import (
    SERIALIZER_VERSION,
    DefinitionError,
    EngineError,
    WorkflowRun,
    parse_definition,
    register_operator,
    sha256_of,  # noqa: F401  (re-exported for callers of this service)
)

log = logging.getLogger(__name__)

WORKFLOW_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "workflows")
DECISIONS = ("approve", "reject")
DEFAULT_ESCALATION = "P3D"


# --------------------------------------------------------------------------- subjects
@dataclass(frozen=True)
class Subject:
    subject_type: str
    summary_fn: Callable[[Session, str], dict]
    on_outcome_fn: Callable[[Session, str, str, WorkflowInstance], None] | None


_SUBJECTS: dict[str, Subject] = {}


def register_subject(subject_type: str, summary_fn, on_outcome_fn=None) -> None:
    """Let workflows be about ``subject_type``.

    ``summary_fn(session, subject_id)`` returns ``{"title", "details": {label: value}, "url"?,
    "history"?: [{"at", "actor", "action", "detail"}]}`` for the task page.
    ``on_outcome_fn(session, subject_id, outcome, instance)`` runs inside the transaction that
    ends the workflow; it sets the business status (it must not commit).
    """
    _SUBJECTS[subject_type] = Subject(subject_type, summary_fn, on_outcome_fn)


def subject_summary(session: Session, instance: WorkflowInstance) -> dict:
    subject = _SUBJECTS.get(instance.subject_type)
    summary = {"title": f"{instance.subject_type} {instance.subject_id}", "details": {},
               "url": None, "history": []}
    if subject is not None:
        try:
            summary.update(subject.summary_fn(session, instance.subject_id) or {})
        except Exception:  # a broken summary must not hide the task
            log.exception("summary for %s %s failed", instance.subject_type, instance.subject_id)
    return summary


def _demo_summary(session: Session, subject_id: str) -> dict:
    return {"title": f"Demonstration request {subject_id}",
            "details": {N_("Subject"): "demo", N_("Reference"): subject_id}}


def _demo_outcome(session: Session, subject_id: str, outcome: str, instance) -> None:
    """Demo subjects hold no business row: the outcome lives on the instance and its audit event."""


register_subject("demo", _demo_summary, _demo_outcome)


# --------------------------------------------------------------------------- operators
@dataclass
class RunContext:
    """What service operators may use: the session of the running use case."""

    session: Session


def _op_approval_route(ctx: RunContext, data: dict, action, amount_pence) -> dict:
    required, roles = route_for(ctx.session, str(action), int(amount_pence))
    return {"approvals_required": required, "approval_roles": roles, "approval_step": 0,
            "current_role": ""}


def _op_next_approver(ctx, data: dict) -> dict:
    step = int(data.get("approval_step", 0))
    roles = list(data.get("approval_roles") or [])
    if step < int(data.get("approvals_required", 0)) and step < len(roles):
        return {"current_role": roles[step], "approval_step": step + 1}
    return {"current_role": ""}


def _op_escalate(ctx, data: dict) -> dict:
    current = data.get("current_role") or ""
    return {"current_role": R.NEXT_ROLE_UP.get(current, current),
            "escalated_from": current, "escalations": int(data.get("escalations", 0)) + 1}


def _op_set_outcome(ctx, data: dict, outcome) -> dict:
    if outcome not in ("approved", "rejected"):
        raise ValueError("outcome must be 'approved' or 'rejected'")
    return {"outcome": outcome}


register_operator("approval_route", _op_approval_route, ("action", "amount_pence"),
                  "Look up the approval limit: sets approvals_required, approval_roles, "
                  "approval_step=0, current_role=''.")
register_operator("next_approver", _op_next_approver, (),
                  "Advance to the next approval: sets current_role (\"\" when none is left) "
                  "and approval_step.")
register_operator("escalate", _op_escalate, (),
                  "Move current_role to the next role up (Finance Manager -> Head of Finance).")
register_operator("set_outcome", _op_set_outcome, ("outcome",),
                  "Record the outcome (\"approved\" or \"rejected\") the subject receives.")


# --------------------------------------------------------------------------- definitions
def deploy_definition(session: Session, xml: bytes | str, deployed_by: str,
                      expected_process_id: str | None = None, commit: bool = True
                      ) -> WorkflowDefinition:
    """Validate and store a new version (or re-activate the identical one) of a process.

    Raises ValidationError with ``errors={"bpmn": [...]}`` naming each offending element.
    """
    try:
        parsed = parse_definition(xml, set(R.ROLES), expected_process_id=expected_process_id)
    except DefinitionError as exc:
        session.rollback()
        raise ValidationError("The workflow cannot be deployed.", {"bpmn": exc.errors}) from None
    text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
    existing = session.scalar(select(WorkflowDefinition).where(
        WorkflowDefinition.process_id == parsed.process_id,
        WorkflowDefinition.sha256 == parsed.sha256))
    current = active_definition(session, parsed.process_id)
    if existing is not None:
        definition = existing
    else:
        version = (session.scalar(select(func.max(WorkflowDefinition.version)).where(
            WorkflowDefinition.process_id == parsed.process_id)) or 0) + 1
        definition = WorkflowDefinition(process_id=parsed.process_id, name=parsed.name,
                                        version=version, sha256=parsed.sha256, bpmn_xml=text,
                                        spec_json=parsed.spec_json, deployed_by=deployed_by,
                                        deployed_at=utcnow())
        session.add(definition)
    if current is not None and current is not definition:
        current.active = False
        session.flush()
    if not definition.active:
        definition.active = True
        session.flush()
        audit.record(session, "workflow.deploy", "WorkflowDefinition", definition.id,
                     after={"process_id": definition.process_id, "version": definition.version,
                            "sha256": definition.sha256}, actor=deployed_by)
    if commit:
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Conflict("Another version of this workflow was deployed at the same time; "
                           "try again.") from None
    return definition


def active_definition(session: Session, process_id: str) -> WorkflowDefinition | None:
    return session.scalar(select(WorkflowDefinition).where(
        WorkflowDefinition.process_id == process_id, WorkflowDefinition.active.is_(True)))


def sync_workflows(session: Session, directory: str | None = None,
                   actor: str = "sync-workflows") -> list[str]:
    """Deploy every ``workflows/*.bpmn`` whose content was never deployed. One commit.

    A file whose content is already a version (active or not) is left alone, so a version a
    Workflow Administrator deployed in the browser (or a roll back) survives restarts and
    ``make run``. Raises ValidationError naming the file and its errors if any file is unsafe
    (nothing deployed).
    """
    directory = directory or WORKFLOW_DIR
    lines = []
    try:
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".bpmn"):
                continue
            with open(os.path.join(directory, name), "rb") as fh:
                xml = fh.read()
            known = session.scalar(select(WorkflowDefinition).where(
                WorkflowDefinition.sha256 == sha256_of(xml)).limit(1))
            if known is not None:
                lines.append(f"{name}: {known.process_id} v{known.version} already deployed "
                             f"({known.sha256[:12]}; active: "
                             f"v{(active_definition(session, known.process_id) or known).version})")
                continue
            try:
                definition = deploy_definition(session, xml, actor, commit=False)
            except ValidationError as exc:
                raise ValidationError(f"{name}: {exc.message}",
                                      {name: exc.errors.get("bpmn", [])}) from None
            lines.append(f"{name}: {definition.process_id} v{definition.version} "
                         f"({definition.sha256[:12]})")
        session.commit()
    except Exception:
        session.rollback()
        raise
    return lines


# --------------------------------------------------------------------------- instances
def _config_escalation(subject_type: str) -> str:
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            cfg = current_app.config
            return (cfg.get(f"IMS_{subject_type.upper()}_ESCALATION")
                    or cfg.get("IMS_WORKFLOW_ESCALATION") or cfg.get("IMS_REFUND_ESCALATION")
                    or DEFAULT_ESCALATION)
    except ImportError:  # pragma: no cover
        pass
    return DEFAULT_ESCALATION


def _event(session, instance, actor, action, task=None, comment=None, role=None, at=None):
    session.add(WorkflowEvent(instance_id=instance.id, actor=actor, action=action,
                              task_id=getattr(task, "id", None),
                              task_title=getattr(task, "title", None),
                              role=role or getattr(task, "role", None), comment=comment,
                              occurred_at=at or utcnow()))


def _project(session: Session, instance: WorkflowInstance, run: WorkflowRun, actor: str,
             now: datetime, new: bool = False, ready_before: set[str] | None = None) -> str | None:
    """Bring the task table, history and status in line with the engine after a step.

    ``ready_before`` (ids of the tasks that were ready in the engine) saves a query when the
    caller knows them. Returns the outcome when this step ended the workflow (the caller audits it).
    """
    ready = {t.id: t for t in run.ready_tasks()}
    if new:
        known = {}
    elif ready_before is not None:
        gone = sorted(ready_before - set(ready))
        known = {t.id: t for t in session.scalars(select(WorkflowTask).where(
            WorkflowTask.id.in_(gone), WorkflowTask.status == "ready"))} if gone else {}
        known.update({i: None for i in ready_before & set(ready)})
    else:
        known = {t.id: t for t in session.scalars(select(WorkflowTask).where(
            WorkflowTask.instance_id == instance.id, WorkflowTask.status == "ready"))}
    fired = bool(run.log.timers_fired)
    for task_id, task in known.items():
        if task_id not in ready and task is not None:
            task.status = "escalated" if fired else "cancelled"
            task.completed_at = now
            _event(session, instance, "system", "escalated" if fired else "cancelled", task,
                   comment=("Not completed by its due time; passed to the next role up."
                            if fired else None), at=now)
    for task_id, info in ready.items():
        if task_id in known:
            if known[task_id] is not None and known[task_id].due_at != info.due_at:
                known[task_id].due_at = info.due_at
            continue
        if info.role is None:
            raise EngineError(f"User task {info.name} has no lane (role).")
        session.add(WorkflowTask(id=task_id, instance_id=instance.id, name=info.name,
                                 title=info.title, role=info.role, status="ready",
                                 created_at=now, due_at=info.due_at))
    if not new:  # a new instance was inserted with its state
        instance.state_json = run.dump()
        instance.serializer_version = SERIALIZER_VERSION
        instance.next_timer_at = run.next_timer_at()
    outcome = None
    if run.completed and instance.status == "running":
        outcome = run.data.get("outcome")
        if outcome not in ("approved", "rejected"):
            outcome = "rejected"  # fail closed: a process that ends without an outcome approves nothing
        instance.status = "completed"
        instance.outcome = outcome
        instance.completed_at = now
        instance.next_timer_at = None
        _event(session, instance, actor, outcome, comment=None, at=now)
        subject = _SUBJECTS.get(instance.subject_type)
        if subject is not None and subject.on_outcome_fn is not None:
            subject.on_outcome_fn(session, instance.subject_id, outcome, instance)
    session.flush()
    return outcome


def start_workflow(session: Session, process_id: str, subject_type: str, subject_id,
                   started_by: str, data: dict[str, Any]) -> WorkflowInstance:
    """Start the active version of ``process_id`` about a subject; flushes, does not commit.

    ``data`` needs ``amount_pence`` (int), ``requester`` (username; defaults to started_by) and
    ``reason``; ``escalate_after`` defaults to IMS_<SUBJECT_TYPE>_ESCALATION or
    IMS_REFUND_ESCALATION. Raises NotFound (no such process), ValidationError (bad data, no
    approval limit covers the amount).
    """
    definition = active_definition(session, process_id)
    if definition is None:
        raise NotFound(f"No workflow '{process_id}' is deployed.")
    amount = data.get("amount_pence")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ValidationError("amount_pence must be integer pence.",
                              {"amount_pence": ["Give integer pence."]})
    if subject_type not in _SUBJECTS:
        raise ValidationError(f"Unknown subject type '{subject_type}'.",
                              {"subject_type": ["No subject of this type is registered."]})
    data = dict(data)
    data.setdefault("requester", started_by)
    data.setdefault("escalate_after", _config_escalation(subject_type))
    data.setdefault("action", subject_type)
    data["subject_type"] = subject_type
    data["subject_id"] = str(subject_id)
    now = utcnow()
    try:
        run = WorkflowRun.start(str(definition.id), lambda: definition.spec_json, data,
                                RunContext(session))
    except EngineError as exc:
        raise ValidationError(f"The workflow could not start: {_cause(exc)}",
                              {"workflow": [_cause(exc)]}) from None
    instance = WorkflowInstance(
        definition_id=definition.id, process_id=process_id, subject_type=subject_type,
        subject_id=str(subject_id), status="running", requester=data["requester"],
        started_by=started_by, started_at=now, amount_pence=amount,
        reason=data.get("reason"), state_json=run.dump(), serializer_version=SERIALIZER_VERSION,
        next_timer_at=run.next_timer_at())
    session.add(instance)
    session.flush()
    _event(session, instance, started_by, "started", comment=data.get("reason"), at=now)
    outcome = _project(session, instance, run, started_by, now, new=True)
    audit.record(session, "workflow.start", "WorkflowInstance", instance.id,
                 after={"process_id": process_id, "version": definition.version,
                        "subject_type": subject_type, "subject_id": str(subject_id),
                        "amount_pence": amount, "outcome": outcome}, actor=started_by)
    return instance


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__
    if isinstance(cause, ValidationError):
        return cause.message
    inner = getattr(cause, "exception", None)
    if isinstance(inner, ValidationError):
        return inner.message
    return str(exc)


def _restore(instance: WorkflowInstance, session: Session) -> WorkflowRun:
    definition_id = instance.definition_id  # the parsed spec is cached per version id

    def spec_json():
        return session.get(WorkflowDefinition, definition_id).spec_json

    return WorkflowRun.restore(str(definition_id), spec_json, instance.state_json,
                               RunContext(session))


def user_roles(session: Session, username: str) -> set[str] | None:
    """Role names of an active user, or None if there is no such active user."""
    from flask_appbuilder.security.sqla.models import Role, User

    names = set(session.scalars(select(Role.name).join(User.roles).where(
        User.username == username, User.active.is_(True))))
    return names or None


def decider_facts(session: Session, username: str, task: WorkflowTask) -> tuple[set[str] | None, bool]:
    """(the user's role names or None if inactive/unknown, whether they decided another task of
    the same instance) in one round trip."""
    from flask_appbuilder.security.sqla.models import Role, User

    roles_q = (select(literal("role").label("k"), Role.name.label("v"))
               .select_from(User).join(User.roles)
               .where(User.username == username, User.active.is_(True)))
    decided_q = (select(literal("decided").label("k"), WorkflowTask.id.label("v"))
                 .where(WorkflowTask.instance_id == task.instance_id,
                        WorkflowTask.status == "completed", WorkflowTask.id != task.id,
                        WorkflowTask.completed_by == username))
    roles, decided = set(), False
    for kind, value in session.execute(union_all(roles_q, decided_q)):
        if kind == "role":
            roles.add(value)
        else:
            decided = True
    return (roles or None), decided


def check_may_complete(session: Session, task: WorkflowTask, instance: WorkflowInstance,
                       username: str, roles: set[str] | None = None,
                       decided: bool | None = None) -> None:
    """Raise Forbidden unless ``username`` may complete ``task`` (lane role, four-eyes)."""
    if roles is None or decided is None:
        roles, decided = decider_facts(session, username, task)
    if roles is None:
        raise Forbidden("Your account is not active.")
    if task.role not in roles:
        raise Forbidden(f"Only a {task.role} may complete this task.",
                        {"role": [f"Requires the role {task.role}."]})
    if username in (instance.requester, instance.started_by):
        raise Forbidden("You requested this; someone else must approve it (four-eyes rule).",
                        {"four_eyes": ["The requester may not approve their own request."]})
    if decided:
        raise Forbidden("You have already approved this request once; another person must "
                        "give the next approval (four-eyes rule).",
                        {"four_eyes": ["One person gives at most one approval per request."]})


@dataclass
class CompletionResult:
    task_id: str
    instance_id: int
    decision: str
    instance_status: str
    outcome: str | None
    next_tasks: list[dict]

    def to_dict(self) -> dict:
        return {"task_id": self.task_id, "instance_id": self.instance_id,
                "decision": self.decision, "instance_status": self.instance_status,
                "outcome": self.outcome, "next_tasks": self.next_tasks}


def complete_task(session: Session, task_id: str, username: str, decision: str,
                  comment: str | None = None) -> CompletionResult:
    """Approve or reject a ready task as ``username``; one commit.

    Raises ValidationError (bad decision; reject without a comment), NotFound (no such task),
    Forbidden (not the lane's role; the requester; already approved in this instance) and
    Conflict (the task is no longer ready, e.g. someone else completed it first).
    """
    try:
        return _complete_task(session, task_id, username, decision, comment)
    except Exception:
        session.rollback()
        raise


def _complete_task(session, task_id, username, decision, comment) -> CompletionResult:
    comment = (comment or "").strip() or None
    if decision not in DECISIONS:
        raise ValidationError("Decide 'approve' or 'reject'.",
                              {"decision": ["Choose approve or reject."]})
    if decision == "reject" and not comment:
        raise ValidationError("Give a reason when rejecting.",
                              {"comment": ["A comment is required to reject."]})
    # Lock the instance (timers and other completions take the same lock), then
    # compare-and-set the task row: of two people completing at once, one gets a 409.
    row = session.execute(
        select(WorkflowTask, WorkflowInstance)
        .join(WorkflowInstance, WorkflowTask.instance_id == WorkflowInstance.id)
        .where(WorkflowTask.id == str(task_id))
        .with_for_update(of=WorkflowInstance)
        .execution_options(populate_existing=True)).first()
    if row is None:
        raise NotFound("No such task.")
    task, instance = row
    now = utcnow()
    claimed = session.execute(
        update(WorkflowTask).where(WorkflowTask.id == task.id, WorkflowTask.status == "ready")
        .values(status="completed", completed_by=username, completed_at=now, decision=decision,
                comment=comment).execution_options(synchronize_session=False))
    if claimed.rowcount != 1 or instance.status != "running":
        raise Conflict("This task is no longer waiting for a decision.",
                       {"task": ["Someone else has completed it, or it was escalated."]})
    check_may_complete(session, task, instance, username)
    for key, value in (("status", "completed"), ("completed_by", username), ("completed_at", now),
                       ("decision", decision), ("comment", comment)):
        set_committed_value(task, key, value)
    run = _restore(instance, session)
    ready_before = {t.id for t in run.ready_tasks()} - {task.id}
    try:
        run.complete_user_task(task.id, {"decision": decision, "comment": comment or "",
                                         "approver": username})
    except EngineError as exc:
        raise Conflict(f"The workflow could not continue: {_cause(exc)}") from None
    action = "approved_task" if decision == "approve" else "rejected_task"
    _event(session, instance, username, action, task, comment=comment, at=now)
    outcome = _project(session, instance, run, username, now, ready_before=ready_before)
    audit.record(session, f"workflow.task.{decision}", "WorkflowTask", task.id,
                 after={"instance_id": instance.id, "task": task.name, "role": task.role,
                        "decision": decision, "outcome": outcome}, reason=comment, actor=username)
    result = CompletionResult(task.id, instance.id, decision, instance.status, instance.outcome,
                              [{"id": t.id, "name": t.name, "role": t.role}
                               for t in run.ready_tasks()])
    session.commit()
    return result


# --------------------------------------------------------------------------- inbox
def _inbox_query(session: Session, username: str, roles: set[str]):
    mine = select(WorkflowTask.instance_id).where(WorkflowTask.completed_by == username,
                                                  WorkflowTask.status == "completed")
    return (select(WorkflowTask).join(WorkflowInstance)
            .where(WorkflowTask.status == "ready", WorkflowTask.role.in_(sorted(roles)),
                   WorkflowInstance.requester != username,
                   WorkflowInstance.started_by != username,
                   WorkflowTask.instance_id.not_in(mine)))


def tasks_for_user(session: Session, username: str) -> list[WorkflowTask]:
    """Ready tasks ``username`` could complete now (role, four-eyes), oldest first."""
    roles = user_roles(session, username) or set()
    if not roles:
        return []
    return list(session.scalars(_inbox_query(session, username, roles)
                                .order_by(WorkflowTask.created_at, WorkflowTask.id)))


def count_tasks_for_user(session: Session, username: str, roles: set[str] | None = None) -> int:
    roles = roles if roles is not None else (user_roles(session, username) or set())
    if not roles:
        return 0
    q = _inbox_query(session, username, roles).with_only_columns(func.count(WorkflowTask.id))
    return session.scalar(q) or 0


def get_task(session: Session, task_id: str) -> WorkflowTask:
    task = session.get(WorkflowTask, str(task_id))
    if task is None:
        raise NotFound("No such task.")
    return task


def get_instance(session: Session, instance_id: int) -> WorkflowInstance:
    instance = session.get(WorkflowInstance, instance_id)
    if instance is None:
        raise NotFound("No such workflow instance.")
    return instance


def current_elements(instance: WorkflowInstance) -> list[str]:
    """BPMN element ids the instance waits in (for highlighting the diagram)."""
    return sorted({t.name for t in instance.tasks if t.status == "ready"})


# --------------------------------------------------------------------------- timers
def fire_due_timers(session: Session, now: datetime | None = None, limit: int = 200) -> int:
    """Fire due timers of running instances, one instance per transaction.

    On PostgreSQL each instance is claimed with SELECT ... FOR UPDATE SKIP LOCKED, so several
    workers never process the same instance at once. Returns how many instances were processed.
    """
    processed = 0
    seen: list[int] = []
    while processed < limit:
        moment = now or utcnow()
        q = (select(WorkflowInstance.id)
             .where(WorkflowInstance.status == "running",
                    WorkflowInstance.next_timer_at.is_not(None),
                    WorkflowInstance.next_timer_at <= moment)
             .order_by(WorkflowInstance.next_timer_at).limit(1)
             .with_for_update(skip_locked=True))
        if seen:
            q = q.where(WorkflowInstance.id.not_in(seen))
        instance_id = session.scalar(q)
        if instance_id is None:
            session.rollback()
            break
        seen.append(instance_id)
        instance = session.scalars(select(WorkflowInstance).where(
            WorkflowInstance.id == instance_id).execution_options(populate_existing=True)).one()
        try:
            run = _restore(instance, session)
            run.refresh_timers()
            outcome = _project(session, instance, run, "system", moment)
            if run.log.timers_fired or outcome:
                audit.record(session, "workflow.timer", "WorkflowInstance", instance.id,
                             after={"timers": run.log.timers_fired, "outcome": outcome},
                             actor="worker")
            session.commit()
        except Exception as exc:
            session.rollback()
            log.exception("workflow instance %s failed on a timer", instance_id)
            instance = session.get(WorkflowInstance, instance_id)
            instance.status = "error"
            instance.error = str(exc)[:2000]
            instance.next_timer_at = None
            session.commit()
        processed += 1
    return processed


def _tick_job() -> str | None:
    from app.extensions import db

    n = fire_due_timers(db.session)
    return f"{n} instance(s) with due timers processed" if n else None


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("workflow-timers", _tick_job)


_register_job()
