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

The four-eyes floor (app/services/approval_limits.py ``floor_for``) is checked here, in ``_project``,
before any outcome is applied, whatever the BPMN did: a money or configuration workflow that ends
"approved" without the approvals the floor requires (by distinct people other than the requester,
each in a task of an approving role, deciding "approve") is not applied. A request whose workflow
would approve it at once is refused (ValidationError, nothing saved); an instance that gets there
later (a task, a timer) ends "rejected", with the reason in ``error``, a "blocked" history entry,
a ``workflow.blocked`` audit event and a notification to the Head of Finance and the requester.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, distinct, exists, func, insert, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.domain.i18n import N_
from app.models.base import utcnow
from app.models.workflow import WorkflowDefinition, WorkflowEvent, WorkflowInstance, WorkflowTask
from app.security import roles as R
from app.services import approval_limits as limits
from app.services import audit
from app.services.locking import for_update, write_lock
from app.services.scope import (
    codes_for_username,
    lane_for_funds,
    subject_allowed,
    subject_allowed_for,
)
from app.workflow_engine import (
    SERIALIZER_VERSION,
    DefinitionError,
    EngineError,
    ParsedDefinition,
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
    #: (action, amount) -> the band's (approvals required, roles) read with the definition at
    #: start (limits.ROUTE_COLUMNS), so the route costs no statement of its own
    routes: dict[tuple[str, int], tuple] = field(default_factory=dict)


def _op_approval_route(ctx: RunContext, data: dict, action, amount_pence) -> dict:
    key = (str(action), int(amount_pence))
    band = ctx.routes.get(key)
    if band is not None:
        required, roles = limits.check_route(*key, *band)
    else:
        required, roles = limits.route_for(ctx.session, *key)
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
def parse(xml: bytes | str, expected_process_id: str | None = None) -> ParsedDefinition:
    """Validate and parse a BPMN document as every deploy does (lanes are roles; the lanes of
    money and configuration workflows only approving roles). Raises DefinitionError."""
    return parse_definition(xml, set(R.ROLES), expected_process_id=expected_process_id,
                            guarded=limits.GUARDED_PROCESSES)


def check(xml: bytes | str, expected_process_id: str | None = None) -> ParsedDefinition:
    """``parse``, raising ValidationError with ``errors={"bpmn": [...]}`` naming each offending
    element."""
    try:
        return parse(xml, expected_process_id)
    except DefinitionError as exc:
        raise ValidationError("The workflow cannot be deployed.", {"bpmn": exc.errors}) from None


def store_definition(session: Session, xml: bytes | str, stored_by: str,
                     expected_process_id: str | None = None,
                     parsed: ParsedDefinition | None = None) -> WorkflowDefinition:
    """Validate a process and store it as a new version, not active (or return the version that
    has the same content). Flushes only. ``parsed``: ``check(xml)`` already done.

    Raises ValidationError with ``errors={"bpmn": [...]}`` naming each offending element.
    """
    parsed = parsed or check(xml, expected_process_id)
    existing = session.scalar(select(WorkflowDefinition).where(
        WorkflowDefinition.process_id == parsed.process_id,
        WorkflowDefinition.sha256 == parsed.sha256))
    if existing is not None:
        return existing
    version = (session.scalar(select(func.max(WorkflowDefinition.version)).where(
        WorkflowDefinition.process_id == parsed.process_id)) or 0) + 1
    text = xml.decode("utf-8") if isinstance(xml, bytes) else xml
    definition = WorkflowDefinition(process_id=parsed.process_id, name=parsed.name,
                                    version=version, sha256=parsed.sha256, bpmn_xml=text,
                                    spec_json=parsed.spec_json, active=False,
                                    deployed_by=stored_by, deployed_at=utcnow())
    session.add(definition)
    session.flush()
    return definition


def activate_definition(session: Session, definition: WorkflowDefinition, actor: str,
                        action: str = "workflow.deploy", reason: str | None = None,
                        details: dict | None = None) -> WorkflowDefinition:
    """Make a stored version the active one of its process (new requests follow it). Audited as
    ``action`` with ``details``; flushes only."""
    current = active_definition(session, definition.process_id)
    if current is definition:
        return definition
    if current is not None:
        current.active = False
        session.flush()
    definition.active = True
    session.flush()
    audit.record(session, action, "WorkflowDefinition", definition.id,
                 before=None if current is None else {"process_id": current.process_id,
                                                      "version": current.version},
                 after={"process_id": definition.process_id, "version": definition.version,
                        "sha256": definition.sha256, **(details or {})},
                 reason=reason, actor=actor)
    return definition


def deploy_definition(session: Session, xml: bytes | str, deployed_by: str,
                      expected_process_id: str | None = None, commit: bool = True,
                      reason: str | None = None) -> WorkflowDefinition:
    """Validate, store and activate a new version (or re-activate the identical one) at once.

    For operators on the server (``ims sync-workflows``, a service deploying its file the first
    time): the portal and the API propose instead (app/services/config_proposals.py), and a Head
    of Finance approves. Raises ValidationError with ``errors={"bpmn": [...]}`` naming each
    offending element.
    """
    try:
        definition = store_definition(session, xml, deployed_by, expected_process_id)
        activate_definition(session, definition, deployed_by, reason=reason)
    except ValidationError:
        if commit:
            session.rollback()
        raise
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


OPERATOR_DEPLOY = ("Deployed by an operator on the server (ims sync-workflows): "
                   "no second person approves this.")


def sync_workflows(session: Session, directory: str | None = None,
                   actor: str = "sync-workflows") -> list[str]:
    """Deploy every ``workflows/*.bpmn`` whose content was never deployed. One commit.

    An operator runs this on the server (``make run``, deployments): it needs no second person,
    and each deploy is audited as such. A file whose content is already a version (active or
    not) is left alone, so a version a Head of Finance approved in the portal (or a roll back)
    survives restarts and ``make run``. Raises ValidationError naming the file and its errors if
    any file is unsafe (nothing deployed).
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
                definition = deploy_definition(session, xml, actor, commit=False,
                                               reason=OPERATOR_DEPLOY)
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


# Statements on the hot path are built once: SQLAlchemy caches their compiled SQL per statement
# object, so each use only binds values. Rows written here are plain INSERT/UPDATEs on the
# session's connection (in its transaction) rather than ORM unit-of-work flushes.
_INSTANCES = WorkflowInstance.__table__
_TASKS = WorkflowTask.__table__
_INSERT_INSTANCE = insert(_INSTANCES)
_UPDATE_INSTANCE = update(_INSTANCES).where(_INSTANCES.c.id == bindparam("b_id"))
_INSERT_TASK = insert(_TASKS)
_INSERT_EVENT = insert(WorkflowEvent.__table__)
_ACTIVE_REF = select(WorkflowDefinition.id, WorkflowDefinition.version).where(
    WorkflowDefinition.process_id == bindparam("process_id"), WorkflowDefinition.active.is_(True))
#: PostgreSQL: the active version and the id the new instance will have (taken from its sequence
#: only when a version is found), so the instance row can be written with the step's other rows
_ACTIVE_REF_AND_NEW_ID = _ACTIVE_REF.add_columns(
    func.nextval(func.pg_get_serial_sequence(_INSTANCES.name, _INSTANCES.c.id.name)))
#: ...and the approval-limit band of the request's action and amount (its last two columns), read
#: in the same round trip for the approval_route operator
_START_REFS = {(False, False): _ACTIVE_REF, (True, False): _ACTIVE_REF_AND_NEW_ID,
               (False, True): _ACTIVE_REF.add_columns(*limits.ROUTE_COLUMNS),
               (True, True): _ACTIVE_REF_AND_NEW_ID.add_columns(*limits.ROUTE_COLUMNS)}
_TASK_AND_INSTANCE = (
    select(WorkflowTask, WorkflowInstance)
    .join(WorkflowInstance, WorkflowTask.instance_id == WorkflowInstance.id)
    .where(WorkflowTask.id == bindparam("task_id"))
    .with_for_update(of=WorkflowInstance)
    .execution_options(populate_existing=True))
_CLAIM_TASK = (update(_TASKS)
               .where(_TASKS.c.id == bindparam("b_id"), _TASKS.c.status == "ready")
               .values(status="completed", completed_by=bindparam("b_by"),
                       completed_at=bindparam("b_at"), decision=bindparam("b_decision"),
                       comment=bindparam("b_comment")))
_claim_with_facts = None


def _claim_with_facts_query():
    """PostgreSQL: ``_CLAIM_TASK`` returning the decider's facts in the same round trip: (active
    user with a role, has the task's lane role, decided another task of this instance), the
    facts ``decider_facts`` reads. Built once (FAB's models are imported late).

    The UPDATE runs after the instance lock was granted, so (like a separate query after it) its
    snapshot holds every completion committed before: the four-eyes check holds under races.
    (SQLite renders RETURNING columns without their tables, so it keeps the separate query.)
    """
    global _claim_with_facts
    if _claim_with_facts is None:
        from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

        users, roles, links = User.__table__, Role.__table__, assoc_user_role
        active_user = (users.c.username == bindparam("b_by"), users.c.active.is_(True),
                       links.c.user_id == users.c.id)
        other = _TASKS.alias("other_task")
        _claim_with_facts = _CLAIM_TASK.returning(
            exists().where(*active_user).label("has_roles"),
            exists().where(*active_user, links.c.role_id == roles.c.id,
                           roles.c.name == _TASKS.c.role).label("has_lane_role"),
            exists().where(other.c.instance_id == _TASKS.c.instance_id,
                           other.c.status == "completed", other.c.id != _TASKS.c.id,
                           other.c.completed_by == bindparam("b_by")).label("decided"))
    return _claim_with_facts


def _claim(session: Session, task: WorkflowTask, username: str, now: datetime, decision: str,
           comment: str | None) -> tuple[set[str] | None, bool] | None:
    """Set a ready task completed (compare-and-set) and read the decider's facts.

    Returns None if the task was no longer ready, else ``decider_facts`` for ``username``.
    """
    conn = session.connection()
    params = {"b_id": task.id, "b_by": username, "b_at": now, "b_decision": decision,
              "b_comment": comment}
    if conn.dialect.name != "postgresql":
        if conn.execute(_CLAIM_TASK, params).rowcount != 1:
            return None
        return decider_facts(session, username, task)
    row = conn.execute(_claim_with_facts_query(), params).first()
    if row is None:
        return None
    has_roles, has_lane_role, decided = row
    return ({task.role} if has_lane_role else set()) if has_roles else None, bool(decided)


_EVENT_COLUMNS = ("instance_id", "occurred_at", "actor", "action", "task_id", "task_title", "role",
                  "comment")
_TASK_COLUMNS = ("id", "instance_id", "name", "title", "role", "status", "created_at", "due_at",
                 "completed_by", "completed_at", "decision", "comment")
_AUDIT_COLUMNS = tuple(c.name for c in audit.AUDIT_TABLE.columns if c.name != "id")
_INSERT_AUDIT = insert(audit.AUDIT_TABLE)
_combined_writes: dict[tuple, Any] = {}


def _combined_write(changed: tuple[str, ...], n_events: int, n_tasks: int, audited: bool,
                    new_instance: bool = False):
    """PostgreSQL: one statement (data-modifying WITH clauses) that inserts (``new_instance``) or
    updates the instance row and inserts the task, history and audit rows, built once per shape
    so SQLAlchemy caches its SQL. (Foreign keys are checked at the end of the statement.)

    Each history row is inserted by its own clause reading the row before it (``FROM`` the clause
    that returned it), so they are written, and numbered, in order. The other parts touch
    different rows; running them together changes nothing but the number of round trips.
    """
    key = (changed, n_events, n_tasks, audited, new_instance)
    stmt = _combined_writes.get(key)
    if stmt is not None:
        return stmt
    plain = []  # written by WITH clauses nothing reads
    if new_instance:
        plain.append(insert(_INSTANCES).values({c.name: bindparam(f"n_{c.name}")
                                                for c in _INSTANCES.columns}))
    if changed:
        plain.append(update(_INSTANCES).where(_INSTANCES.c.id == bindparam("i_id"))
                     .values({k: bindparam(f"i_{k}") for k in changed}))
    for n in range(n_tasks):
        plain.append(insert(_TASKS).values({c: bindparam(f"t{n}_{c}") for c in _TASK_COLUMNS}))
    if audited:
        plain.append(insert(audit.AUDIT_TABLE).values({c: bindparam(f"a_{c}") for c in _AUDIT_COLUMNS}))
    events = WorkflowEvent.__table__
    ctes, stmt, previous = [], None, None
    for n in range(n_events):
        if previous is None:
            part = insert(events).values({c: bindparam(f"e{n}_{c}") for c in _EVENT_COLUMNS})
        else:  # reads the row just written, so it runs after it
            part = insert(events).from_select(list(_EVENT_COLUMNS), select(
                *[bindparam(f"e{n}_{c}", type_=events.c[c].type) for c in _EVENT_COLUMNS]
            ).select_from(previous))
        if n < n_events - 1:
            previous = part.returning(events.c.id).cte(f"event_{n}")
            ctes.append(previous)
        else:
            stmt = part
    if stmt is None:
        stmt = plain.pop()
    ctes.extend(part.cte(f"write_{n}") for n, part in enumerate(plain))
    for cte in ctes:
        stmt = stmt.add_cte(cte)
    _combined_writes[key] = stmt
    return stmt


def _write(conn, instance_id: int, changes: dict, events: list[dict], new_tasks: list[dict],
           audit_row: dict | None, new_instance: dict | None = None) -> None:
    """Insert the instance row (``new_instance``, with its id) or update it (``changes``), insert
    history and task rows and the prepared audit event."""
    parts = (bool(changes) + bool(events) + bool(new_tasks) + (audit_row is not None)
             + (new_instance is not None))
    if conn.dialect.name == "postgresql" and parts > 1:
        params = {f"i_{k}": v for k, v in changes.items()}
        params["i_id"] = instance_id
        if new_instance is not None:
            params.update({f"n_{k}": v for k, v in new_instance.items()})
        for n, row in enumerate(events):
            params.update({f"e{n}_{c}": row[c] for c in _EVENT_COLUMNS})
        for n, row in enumerate(new_tasks):
            params.update({f"t{n}_{c}": row[c] for c in _TASK_COLUMNS})
        if audit_row is not None:
            params.update({f"a_{c}": audit_row[c] for c in _AUDIT_COLUMNS})
        conn.execute(_combined_write(tuple(changes), len(events), len(new_tasks),
                                     audit_row is not None, new_instance is not None), params)
        return
    if new_instance is not None:
        conn.execute(_INSERT_INSTANCE, new_instance)
    if changes:
        conn.execute(_UPDATE_INSTANCE, {"b_id": instance_id, **changes})
    if events:
        conn.execute(_INSERT_EVENT, events)
    if new_tasks:
        conn.execute(_INSERT_TASK, new_tasks)
    if audit_row is not None:
        conn.execute(_INSERT_AUDIT, audit_row)


def _event(events: list[dict], instance, actor, action, task=None, comment=None, role=None,
           at=None) -> None:
    """Queue one history row; ``_project`` inserts the queue in order (one statement)."""
    events.append({"instance_id": instance.id, "actor": actor, "action": action,
                   "task_id": getattr(task, "id", None), "task_title": getattr(task, "title", None),
                   "role": role or getattr(task, "role", None), "comment": comment,
                   "occurred_at": at or utcnow()})


def _project(session: Session, instance: WorkflowInstance, run: WorkflowRun, actor: str,
             now: datetime, new: bool = False, ready_before: set[str] | None = None,
             events: list[dict] | None = None,
             audit_event: Callable[[str | None], dict] | None = None,
             new_row: dict | None = None) -> str | None:
    """Bring the task table, history and status in line with the engine after a step.

    ``ready_before`` (ids of the tasks that were ready in the engine) saves a query when the
    caller knows them. ``events`` are history rows the caller queued for this step (written first).
    ``audit_event(outcome)`` gives the arguments of ``audit.record`` for this step: the event is
    written with the other rows (else the caller audits the step itself). ``new_row`` is a new
    instance's row not written yet (its id reserved): it is written with the others.
    Returns the outcome when this step ended the workflow.
    """
    events = [] if events is None else events
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
            _event(events, instance, "system", "escalated" if fired else "cancelled", task,
                   comment=("Not completed by its due time; passed to the next role up."
                            if fired else None), at=now)
    new_tasks = []
    for task_id, info in ready.items():
        if task_id in known:
            if known[task_id] is not None and known[task_id].due_at != info.due_at:
                known[task_id].due_at = info.due_at
            continue
        if info.role is None:
            raise EngineError(f"User task {info.name} has no lane (role).")
        role = lane_for_funds(session, instance.subject_type, instance.subject_id, info.role)
        if role != info.role:
            _event(events, instance, "system", "escalated", role=role, at=now,
                   comment=f"No {info.role} holds the funds of this request; passed to the "
                           f"{role}.")
        new_tasks.append({"id": task_id, "instance_id": instance.id, "name": info.name,
                          "title": info.title, "role": role, "status": "ready",
                          "created_at": now, "due_at": info.due_at, "completed_by": None,
                          "completed_at": None, "decision": None, "comment": None})
    changes: dict[str, Any] = {}
    if not new:  # a new instance was inserted with its state
        changes.update(state_json=run.dump(), serializer_version=SERIALIZER_VERSION,
                       next_timer_at=run.next_timer_at())
    outcome = blocked = None
    if run.completed and instance.status == "running":
        outcome = run.data.get("outcome")
        if outcome not in ("approved", "rejected"):
            outcome = "rejected"  # fail closed: a process that ends without an outcome approves nothing
        if outcome == "approved":
            blocked = _floor_problem(session, instance, new)
            if blocked is not None:
                if new:  # nothing is written yet: the caller's use case rolls back
                    raise ValidationError(
                        f"{blocked} The request was not saved; a Workflow Administrator must "
                        f"correct the workflow.", {"workflow": [blocked]})
                outcome = "rejected"
                changes["error"] = blocked
                _event(events, instance, "system", "blocked", comment=blocked, at=now)
        changes.update(status="completed", outcome=outcome, completed_at=now, next_timer_at=None)
        _event(events, instance, actor, outcome, comment=None, at=now)
    audit_row = audit.prepare(session, **audit_event(outcome)) if audit_event else None
    if new_row is not None:  # written with this step's values: nothing to update
        _write(session.connection(), instance.id, {}, events, new_tasks, audit_row,
               {**new_row, **changes})
    else:
        _write(session.connection(), instance.id, changes, events, new_tasks, audit_row)
    for key, value in changes.items():  # the object matches its row again
        set_committed_value(instance, key, value)
    loaded = [key for key in ("tasks", "events") if key in instance.__dict__]
    if loaded:  # collections read earlier in this session would miss the rows just written
        session.expire(instance, loaded)
    if blocked is not None:
        _report_blocked(session, instance, blocked)
    if outcome is not None:
        subject = _SUBJECTS.get(instance.subject_type)
        if subject is not None and subject.on_outcome_fn is not None:
            subject.on_outcome_fn(session, instance.subject_id, outcome, instance)
    session.flush()
    return outcome


_APPROVERS_Q = (
    select(func.count(distinct(WorkflowTask.completed_by)))
    .where(WorkflowTask.instance_id == bindparam("instance_id"),
           WorkflowTask.status == "completed", WorkflowTask.decision == "approve",
           WorkflowTask.role.in_(bindparam("roles", expanding=True)),
           WorkflowTask.completed_by.not_in(bindparam("people", expanding=True))))


def _floor_problem(session: Session, instance: WorkflowInstance, new: bool) -> str | None:
    """Why an instance that ended "approved" may not be applied (None: the floor is met).

    Counted from the recorded task decisions, not from anything the BPMN set: distinct people,
    neither the requester nor the starter, who approved in a task of an approving role (the
    service checked at completion that they held the task's role). One small query, only when a
    guarded workflow ends approved.
    """
    floor = limits.floor_for(instance.subject_type, instance.amount_pence)
    if floor is None or floor.approvals <= 0:
        return None
    approvers = 0 if new else session.scalar(_APPROVERS_Q, {
        "instance_id": instance.id, "roles": list(floor.roles),
        "people": [instance.requester, instance.started_by]}) or 0
    if approvers >= floor.approvals:
        return None
    return (f"The {instance.process_id} workflow approved {instance.subject_type} "
            f"{instance.subject_id} with {approvers} approval(s) by {' or '.join(floor.roles)}; "
            f"the four-eyes rule requires at least {floor.approvals}.")


def _report_blocked(session: Session, instance: WorkflowInstance, reason: str) -> None:
    """Audit and announce an instance the floor stopped (it ends rejected)."""
    from app.services.notifications import notify

    audit.record(session, "workflow.blocked", "WorkflowInstance", instance.id,
                 after={"process_id": instance.process_id, "subject_type": instance.subject_type,
                        "subject_id": instance.subject_id, "outcome": "rejected"},
                 reason=reason, actor="system")
    log.warning("workflow instance %s blocked: %s", instance.id, reason)
    notify(session, [R.HEAD, instance.requester],
           f"Blocked and rejected (nothing was applied): {reason}",
           f"/workflow-instances/{instance.id}",
           about=(instance.subject_type, instance.subject_id))


def start_workflow(session: Session, process_id: str, subject_type: str, subject_id,
                   started_by: str, data: dict[str, Any]) -> WorkflowInstance:
    """Start the active version of ``process_id`` about a subject; flushes, does not commit.

    ``data`` needs ``amount_pence`` (int), ``requester`` (username; defaults to started_by) and
    ``reason``; ``escalate_after`` defaults to IMS_<SUBJECT_TYPE>_ESCALATION or
    IMS_REFUND_ESCALATION. Raises NotFound (no such process), ValidationError (bad data, no
    approval limit covers the amount).
    """
    if session.autoflush and (session.new or session.dirty or session.deleted):
        session.flush()  # the limits read below see the session's changes, as a query would
    conn = session.connection()
    reserve_id = conn.dialect.name == "postgresql"
    amount = data.get("amount_pence")
    # the band of the action and amount the operator will most likely be asked for (an amount
    # no column holds is left to the operator, which refuses it as before)
    route_key = ((str(data.get("action", subject_type)), amount)
                 if isinstance(amount, int) and not isinstance(amount, bool)
                 and abs(amount) <= limits.MAX_PENCE else None)
    params = {"process_id": process_id}
    if route_key is not None:
        params.update(route_action=route_key[0], route_amount=route_key[1])
    definition = conn.execute(_START_REFS[reserve_id, route_key is not None], params).first()
    if definition is None:
        raise NotFound(f"No workflow '{process_id}' is deployed.")
    definition_id, version = definition[:2]
    context = RunContext(session)
    if route_key is not None:
        context.routes[route_key] = tuple(definition[-2:])
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
        run = WorkflowRun.start(str(definition_id), lambda: _spec_json(session, definition_id),
                                data, context)
    except EngineError as exc:
        raise ValidationError(f"The workflow could not start: {_cause(exc)}",
                              {"workflow": [_cause(exc)]}) from None
    row = {"definition_id": definition_id, "process_id": process_id,
           "subject_type": subject_type, "subject_id": str(subject_id), "status": "running",
           "outcome": None, "requester": data["requester"], "started_by": started_by,
           "started_at": now, "completed_at": None, "amount_pence": amount,
           "reason": data.get("reason"), "state_json": run.dump(),
           "serializer_version": SERIALIZER_VERSION, "next_timer_at": run.next_timer_at(),
           "error": None}
    if reserve_id:  # written by _project with the step's other rows
        row["id"] = definition[2]
    else:
        row["id"] = conn.execute(_INSERT_INSTANCE, row).inserted_primary_key[0]
    # Attach the row to the session as a persistent object with every column loaded
    # (relationships load on first use), as if it had been read back.
    instance = WorkflowInstance(**row)
    make_transient_to_detached(instance)
    session.add(instance)
    events: list[dict] = []
    _event(events, instance, started_by, "started", comment=data.get("reason"), at=now)

    def audit_event(outcome):
        return {"action": "workflow.start", "entity": "WorkflowInstance", "entity_id": instance.id,
                "after": {"process_id": process_id, "version": version,
                          "subject_type": subject_type, "subject_id": str(subject_id),
                          "amount_pence": amount, "outcome": outcome}, "actor": started_by}

    _project(session, instance, run, started_by, now, new=True, events=events,
             audit_event=audit_event, new_row=row if reserve_id else None)
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


def _spec_json(session: Session, definition_id: int) -> str:
    """The stored spec of a definition version (read only when the parsed spec is not cached)."""
    return session.scalar(select(WorkflowDefinition.spec_json).where(
        WorkflowDefinition.id == definition_id))


def _restore(instance: WorkflowInstance, session: Session) -> WorkflowRun:
    definition_id = instance.definition_id  # the parsed spec is cached per version id
    return WorkflowRun.restore(str(definition_id), lambda: _spec_json(session, definition_id),
                               instance.state_json, RunContext(session))


def user_roles(session: Session, username: str) -> set[str] | None:
    """Role names of an active user, or None if there is no such active user."""
    from flask_appbuilder.security.sqla.models import Role, User

    names = set(session.scalars(select(Role.name).join(User.roles).where(
        User.username == username, User.active.is_(True))))
    return names or None


_decider_q = None


def _decider_query():
    """The facts query of ``decider_facts``, built once (FAB's models are imported late)."""
    global _decider_q
    if _decider_q is None:
        from flask_appbuilder.security.sqla.models import Role, User

        roles_q = (select(literal("role").label("k"), Role.name.label("v"))
                   .select_from(User).join(User.roles)
                   .where(User.username == bindparam("username"), User.active.is_(True)))
        decided_q = (select(literal("decided").label("k"), WorkflowTask.id.label("v"))
                     .where(WorkflowTask.instance_id == bindparam("instance_id"),
                            WorkflowTask.status == "completed",
                            WorkflowTask.id != bindparam("task_id"),
                            WorkflowTask.completed_by == bindparam("username")))
        _decider_q = union_all(roles_q, decided_q)
    return _decider_q


def decider_facts(session: Session, username: str, task: WorkflowTask) -> tuple[set[str] | None, bool]:
    """(the user's role names or None if inactive/unknown, whether they decided another task of
    the same instance) in one round trip."""
    roles, decided = set(), False
    params = {"username": username, "instance_id": task.instance_id, "task_id": task.id}
    for kind, value in session.execute(_decider_query(), params):
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
    if not subject_allowed_for(session, instance.subject_type, instance.subject_id, username):
        raise NotFound("No such task.")  # an approver holds the funds of what they approve
    _check_decider(task, instance, username, roles, decided)


def _check_decider(task: WorkflowTask, instance: WorkflowInstance, username: str,
                   roles: set[str] | None, decided: bool) -> None:
    """The rules of ``check_may_complete`` on facts already read (roles None: not active)."""
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
    write_lock(session)  # SQLite: the instance is read under the write lock (PostgreSQL: FOR UPDATE)
    row = session.execute(_TASK_AND_INSTANCE, {"task_id": str(task_id)}).first()
    if row is None:
        raise NotFound("No such task.")
    task, instance = row
    if not subject_allowed_for(session, instance.subject_type, instance.subject_id, username):
        raise NotFound("No such task.")  # an approver holds the funds of what they approve
    now = utcnow()
    facts = _claim(session, task, username, now, decision, comment)
    if facts is None or instance.status != "running":
        raise Conflict("This task is no longer waiting for a decision.",
                       {"task": ["Someone else has completed it, or it was escalated."]})
    _check_decider(task, instance, username, *facts)
    for key, value in (("status", "completed"), ("completed_by", username), ("completed_at", now),
                       ("decision", decision), ("comment", comment)):
        set_committed_value(task, key, value)
    run = _restore(instance, session)
    ready_before = set(run.ready_task_ids()) - {task.id}
    try:
        run.complete_user_task(task.id, {"decision": decision, "comment": comment or "",
                                         "approver": username})
    except EngineError as exc:
        raise Conflict(f"The workflow could not continue: {_cause(exc)}") from None
    action = "approved_task" if decision == "approve" else "rejected_task"
    events: list[dict] = []
    _event(events, instance, username, action, task, comment=comment, at=now)

    def audit_event(outcome):
        return {"action": f"workflow.task.{decision}", "entity": "WorkflowTask",
                "entity_id": task.id, "after": {"instance_id": instance.id, "task": task.name,
                                                "role": task.role, "decision": decision,
                                                "outcome": outcome},
                "reason": comment, "actor": username}

    _project(session, instance, run, username, now, ready_before=ready_before, events=events,
             audit_event=audit_event)
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
    tasks = list(session.scalars(_inbox_query(session, username, roles)
                                 .order_by(WorkflowTask.created_at, WorkflowTask.id)))
    codes = codes_for_username(session, username)
    if codes is None:
        return tasks
    return [t for t in tasks if subject_allowed(session, t.instance.subject_type,
                                                t.instance.subject_id, codes)]


def count_tasks_for_user(session: Session, username: str, roles: set[str] | None = None) -> int:
    roles = roles if roles is not None else (user_roles(session, username) or set())
    if not roles:
        return 0
    if codes_for_username(session, username) is not None:  # fund groups: counted one by one
        return len(tasks_for_user(session, username))
    q = _inbox_query(session, username, roles).with_only_columns(func.count(WorkflowTask.id))
    return session.scalar(q) or 0


def get_task(session: Session, task_id: str) -> WorkflowTask:
    task = session.get(WorkflowTask, str(task_id))
    if task is None or not subject_allowed(session, task.instance.subject_type,
                                           task.instance.subject_id):
        raise NotFound("No such task.")
    return task


def get_instance(session: Session, instance_id: int) -> WorkflowInstance:
    instance = session.get(WorkflowInstance, instance_id)
    if instance is None or not subject_allowed(session, instance.subject_type,
                                               instance.subject_id):
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
             .order_by(WorkflowInstance.next_timer_at).limit(1))
        q = for_update(session, q, skip_locked=True)
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
