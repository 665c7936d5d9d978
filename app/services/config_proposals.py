"""Configuration changes need a second person: a Workflow Administrator (or an Administrator)
proposes a new workflow version, a roll back, or new approval limits; the change takes effect
only when a Head of Finance other than the proposer approves it through their task list.

Each proposal is a ``ConfigProposal`` row and an instance of the ``configuration_approval``
workflow (subject ``configuration_change``), whose lane is the Head of Finance. That workflow and
the four-eyes floor are code: the portal and the API refuse to deploy ``configuration_approval``,
and the workflow service applies an approved proposal only if a Head of Finance other than the
proposer approved it (app/services/approval_limits.py ``floor_for``). A proposal made stale by
another change that took effect first (the active version, or the scheme's fingerprint, is not
the one it was made against) is refused with 409 when approved, and changes nothing.
``ims sync-workflows``, run by an operator on the server, deploys without a proposal.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.domain.i18n import N_
from app.models.base import utcnow
from app.models.workflow import (
    APPROVAL_ACTIONS,
    ApprovalLimit,
    ConfigProposal,
    WorkflowDefinition,
    WorkflowTask,
)
from app.services import approval_limits as limits
from app.services import audit
from app.services import workflow as wf
from app.services import workflow_admin as admin
from app.services.locking import for_update

SUBJECT = limits.CONFIGURATION_SUBJECT
PROCESS_ID = limits.CONFIGURATION_PROCESS
KIND_LABELS = {"workflow_deploy": N_("New workflow version"),
               "workflow_activate": N_("Roll back a workflow"),
               "approval_limits": N_("Approval limits")}
STATUS_LABELS = {"pending": N_("waiting for approval"), "approved": N_("approved"),
                 "rejected": N_("rejected")}


def ensure_deployed(session: Session) -> None:
    """Deploy workflows/configuration_approval.bpmn if no version is active (joins the
    transaction; ``ims sync-workflows`` normally did it already)."""
    if wf.active_definition(session, PROCESS_ID) is not None:
        return
    with open(os.path.join(wf.WORKFLOW_DIR, f"{PROCESS_ID}.bpmn"), "rb") as fh:
        wf.deploy_definition(session, fh.read(), "system", expected_process_id=PROCESS_ID,
                             commit=False, reason="Deployed from workflows/ by the service: "
                                                  "no version was active.")


def guard_process(process_id: str) -> None:
    """The workflow that approves configuration changes is part of the code."""
    if process_id == PROCESS_ID:
        raise Forbidden(f"The {PROCESS_ID} workflow approves configuration changes and is part "
                        f"of the code: it is deployed only by an operator on the server "
                        f"(ims sync-workflows), never through the portal or the API.",
                        {"process_id": ["This workflow cannot be changed here."]})


# --------------------------------------------------------------------------- describing
def describe(proposal: ConfigProposal) -> str:
    """One line saying what the proposal changes (English; the pages show it with its parts)."""
    if proposal.kind == "workflow_deploy":
        return f"Version {_version(proposal)} of {proposal.target}"
    if proposal.kind == "workflow_activate":
        return f"Make version {_version(proposal)} of {proposal.target} active again"
    names = [limits.ACTION_NOUNS.get(a, a) for a in proposal.target.split(",")]
    return f"Approval limits for {' and '.join(names)}"


def _version(proposal: ConfigProposal) -> int | None:
    return proposal.definition.version if proposal.definition is not None else None


def _payload(proposal: ConfigProposal) -> dict:
    return json.loads(proposal.payload) if proposal.payload else {}


def stale_reason(session: Session, proposal: ConfigProposal) -> str | None:
    """Why approving this pending proposal would be refused (another change took effect first)."""
    if proposal.status != "pending":
        return None
    if proposal.kind in ("workflow_deploy", "workflow_activate"):
        active = wf.active_definition(session, proposal.target)
        if active is None or active.version != proposal.base_version:
            now = active.version if active is not None else None
            return (f"Version {now} of {proposal.target} became active after this was proposed "
                    f"against version {proposal.base_version}. Reject it; the Workflow "
                    f"Administrator can propose it again.")
        return None
    for action, expected in _payload(proposal).get("fingerprints", {}).items():
        if limits.fingerprint(limits.scheme(session, action)) != expected:
            return (f"The {limits.ACTION_NOUNS.get(action, action)} limits changed after this was "
                    f"proposed. Reject it; the Workflow Administrator can propose it again.")
    return None


def ready_task_id(session: Session, proposal: ConfigProposal) -> str | None:
    if proposal.workflow_instance_id is None:
        return None
    return session.scalar(select(WorkflowTask.id).where(
        WorkflowTask.instance_id == proposal.workflow_instance_id,
        WorkflowTask.status == "ready").limit(1))


def details(session: Session, proposal: ConfigProposal) -> dict:
    """What the pages and the API show: the proposal and what it changes (a BPMN diff, or the
    bands before and after)."""
    out = {"id": proposal.id, "kind": proposal.kind, "target": proposal.target,
           "status": proposal.status, "description": describe(proposal),
           "proposed_by": proposal.proposed_by, "proposed_at": proposal.proposed_at,
           "decided_by": proposal.decided_by, "decided_at": proposal.decided_at,
           "decision_comment": proposal.decision_comment,
           "workflow_instance_id": proposal.workflow_instance_id,
           "task_id": ready_task_id(session, proposal) if proposal.status == "pending" else None,
           "stale": stale_reason(session, proposal)}
    if proposal.kind in ("workflow_deploy", "workflow_activate"):
        base = session.scalar(select(WorkflowDefinition).where(
            WorkflowDefinition.process_id == proposal.target,
            WorkflowDefinition.version == proposal.base_version))
        out.update(process_id=proposal.target, version=_version(proposal),
                   base_version=proposal.base_version,
                   changes=admin.diff_bpmn(base.bpmn_xml if base is not None else None,
                                           proposal.definition.bpmn_xml))
    else:
        payload = _payload(proposal)
        out["complete"] = bool(payload.get("complete", True))
        out["schemes"] = [{"action": action, "before": payload.get("before", {}).get(action, []),
                           "after": bands}
                          for action, bands in payload.get("schemes", {}).items()]
    return out


def get_proposal(session: Session, proposal_id) -> ConfigProposal:
    try:
        proposal = session.get(ConfigProposal, int(proposal_id))
    except (TypeError, ValueError, OverflowError):
        proposal = None
    if proposal is None:
        raise NotFound(f"No configuration proposal {proposal_id}.")
    return proposal


def proposals(session: Session, status: str | None = None, kinds=None, target: str | None = None,
              limit: int = 100) -> list[ConfigProposal]:
    """Proposals, newest first (``target``: a process id, or an action of approval limits)."""
    query = select(ConfigProposal).order_by(ConfigProposal.id.desc()).limit(limit)
    if status is not None:
        query = query.where(ConfigProposal.status == status)
    if kinds is not None:
        query = query.where(ConfigProposal.kind.in_(list(kinds)))
    found = list(session.scalars(query))
    if target is not None:
        found = [p for p in found if target in p.target.split(",")]
    return found


# --------------------------------------------------------------------------- proposing
def _start(session: Session, proposal: ConfigProposal, actor: str, after: dict) -> ConfigProposal:
    """Start the approval of a flushed proposal, audit and announce it, commit."""
    ensure_deployed(session)
    text = describe(proposal)
    instance = wf.start_workflow(session, PROCESS_ID, SUBJECT, proposal.id, actor, {
        "amount_pence": None, "requester": actor, "reason": f"Proposed: {text}",
        "action": SUBJECT, "kind": proposal.kind})
    proposal.workflow_instance_id = instance.id
    session.flush()
    audit.record(session, "configuration.propose", "ConfigProposal", proposal.id,
                 after={"kind": proposal.kind, "target": proposal.target, **after},
                 reason=text, actor=actor)
    from app.services.notifications import notify

    notify(session, list(limits.CONFIGURATION_APPROVERS),
           f"{text}: proposed by {actor}, waiting for your approval.", "/tasks/",
           exclude=[actor])
    session.commit()
    return proposal


def _run(session: Session, work):
    """One unit of work: commit inside ``work``, roll back on any error."""
    try:
        return work()
    except IntegrityError:
        session.rollback()
        raise Conflict("Someone else proposed a change at the same moment; try again.") from None
    except Exception:
        session.rollback()
        raise


def propose_workflow(session: Session, process_id: str, xml: bytes | str, actor: str,
                     base_version: int | None = None) -> ConfigProposal:
    """Propose a new version of a workflow: validated and stored now (not active), made active
    when a Head of Finance approves. One commit.

    Raises ValidationError (unsafe BPMN, errors["bpmn"] name the elements; the active version
    already), Forbidden (the configuration approval workflow), NotFound, Conflict (another version
    became active since ``base_version``).
    """
    def work():
        guard_process(process_id)
        parsed = wf.check(xml, expected_process_id=process_id)
        try:
            active = admin.active_or_404(session, process_id, lock=True)
        except NotFound:
            raise NotFound(f"No workflow '{process_id}' is deployed. New workflows are deployed "
                           f"from workflows/ by an operator (ims sync-workflows).") from None
        admin.check_base(active, base_version)
        definition = wf.store_definition(session, xml, actor, parsed=parsed)
        if definition.id == active.id:
            raise ValidationError("This is the active version already: there is nothing to "
                                  "approve.", {"bpmn": ["Nothing has changed from the active "
                                                        "version."]})
        proposal = ConfigProposal(kind="workflow_deploy", target=process_id, status="pending",
                                  proposed_by=actor, proposed_at=utcnow(),
                                  definition_id=definition.id, base_version=active.version)
        session.add(proposal)
        session.flush()
        return _start(session, proposal, actor, {"version": definition.version,
                                                 "sha256": definition.sha256,
                                                 "active_version": active.version})

    return _run(session, work)


def propose_activation(session: Session, process_id: str, version: int, actor: str,
                       base_version: int | None = None) -> ConfigProposal:
    """Propose a roll back (or forward): make an earlier version the active one once a Head of
    Finance approves. One commit. Raises NotFound, ValidationError (already active), Forbidden,
    Conflict (stale ``base_version``)."""
    def work():
        guard_process(process_id)
        active = admin.active_or_404(session, process_id, lock=True)
        admin.check_base(active, base_version)
        target = session.scalar(select(WorkflowDefinition).where(
            WorkflowDefinition.process_id == process_id, WorkflowDefinition.version == version))
        if target is None:
            raise NotFound(f"Workflow '{process_id}' has no version {version}.")
        if target.id == active.id:
            raise ValidationError(f"Version {version} is already the active version.",
                                  {"version": ["Already active."]})
        proposal = ConfigProposal(kind="workflow_activate", target=process_id, status="pending",
                                  proposed_by=actor, proposed_at=utcnow(),
                                  definition_id=target.id, base_version=active.version)
        session.add(proposal)
        session.flush()
        return _start(session, proposal, actor, {"version": target.version,
                                                 "active_version": active.version})

    return _run(session, work)


def propose_limits(session: Session, schemes: dict[str, list], actor: str,
                   expected: dict[str, str | None] | None = None,
                   complete: bool = True) -> ConfigProposal:
    """Propose new bands for one or more actions (each replaces that action's scheme when a Head
    of Finance approves). One commit.

    ``schemes``: ``{action: [{"min_amount": pence, "max_amount": pence|None, "roles": [...]}]}``.
    Validated now and again when approved (``approval_limits.validate_scheme``: amounts, roles
    that may approve, the four-eyes floor, overlaps and, when ``complete``, gaps). Raises
    ValidationError, Conflict (a scheme changed since its ``expected`` fingerprint was read).
    """
    def work():
        if not schemes:
            raise ValidationError("Nothing to change.", {"bands": ["No bands were sent."]})
        after, before, prints, unchanged = {}, {}, {}, True
        for action, bands in schemes.items():
            proposed = limits.validate_scheme(action, bands, complete=complete)
            current = limits.scheme(session, action, lock=True)
            fp = limits.fingerprint(current)
            if (expected or {}).get(action) not in (None, fp):
                raise Conflict("Someone else changed these approval limits since you opened "
                               "them. Reload to see their changes, then make yours again.",
                               {"fingerprint": ["The approval limits changed meanwhile."]})
            after[action] = limits.band_dicts(proposed)
            before[action] = limits.band_dicts(current)
            prints[action] = fp
            unchanged = unchanged and after[action] == before[action]
        if unchanged:
            raise ValidationError("These are the approval limits already: there is nothing to "
                                  "approve.", {"bands": ["Nothing has changed."]})
        proposal = ConfigProposal(kind="approval_limits", target=",".join(after), status="pending",
                                  proposed_by=actor, proposed_at=utcnow(),
                                  payload=json.dumps({"schemes": after, "before": before,
                                                      "fingerprints": prints,
                                                      "complete": complete}))
        session.add(proposal)
        session.flush()
        return _start(session, proposal, actor, {"schemes": json.dumps(after, sort_keys=True)})

    return _run(session, work)


def propose_band(session: Session, actor: str, values: dict, band_id=None) -> ConfigProposal:
    """Per-band changes through the API (``POST``/``PUT /api/v1/approval-limits/``) as a proposal
    of the affected schemes: add a band (``band_id`` None) or change one (``values`` holds the
    fields sent: ``action``, ``min_amount``/``max_amount`` in pence, ``approvals_required``,
    ``roles``). Gaps are allowed (bands are edited one at a time); overlaps, bad roles and bands
    below the floor are not. Raises ValidationError, NotFound."""
    def current(action):
        return limits.band_dicts(limits.scheme(session, action))

    if band_id is None:
        missing = [f for f in ("action", "min_amount") if values.get(f) is None]
        if missing:
            raise ValidationError("The band is incomplete.", {f: ["Required."] for f in missing})
        row_action, merged = None, {"min_amount": values["min_amount"],
                                    "max_amount": values.get("max_amount"),
                                    "roles": values.get("roles", [])}
        action = values["action"]
    else:
        row = session.get(ApprovalLimit, band_id)
        if row is None:
            raise NotFound(f"No approval limit {band_id}.")
        row_action, action = row.action, values.get("action", row.action)
        merged = {"min_amount": values.get("min_amount", row.min_amount),
                  "max_amount": values["max_amount"] if "max_amount" in values else row.max_amount,
                  "roles": values.get("roles", row.role_list)}
    if action not in APPROVAL_ACTIONS:
        raise ValidationError(f"Unknown action '{action}'.",
                              {"action": [f"Choose one of: {', '.join(APPROVAL_ACTIONS)}."]})
    required = values.get("approvals_required")
    roles = merged["roles"]
    if isinstance(roles, str):  # the API's comma-separated form
        roles = merged["roles"] = roles.split(",")
    if required is not None and isinstance(roles, list) and required != len(
            [r for r in roles if not isinstance(r, str) or r.strip()]):
        raise ValidationError("approvals_required must equal the number of roles.",
                              {"roles": [f"Name exactly {required} role(s), in approval order "
                                         f"(one per approval)."]})
    schemes: dict[str, list] = {}
    if row_action is not None:
        rows = limits.scheme(session, row_action)
        schemes[row_action] = [band for band, r in zip(limits.band_dicts(rows), rows, strict=True)
                               if r.id != band_id]
    schemes.setdefault(action, current(action)).append(merged)
    return propose_limits(session, schemes, actor, complete=False)


# --------------------------------------------------------------------------- deciding
def _decider(session: Session, instance) -> tuple[str, str | None]:
    task = session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed")
        .order_by(WorkflowTask.completed_at.desc(), WorkflowTask.id.desc()).limit(1))
    if task is None:
        return "system", None
    return task.completed_by or "system", task.comment


def _apply(session: Session, proposal: ConfigProposal, approver: str) -> None:
    """Make the change (the caller holds the proposal's lock). Raises Conflict when stale."""
    stale = Conflict(f"Proposal {proposal.id} is out of date: another change took effect after "
                     f"it was proposed, so it was not applied. Reject it; the Workflow "
                     f"Administrator can propose it again.",
                     {"proposal": ["Another change took effect first."]})
    details_ = {"proposal": proposal.id, "proposed_by": proposal.proposed_by,
                "approved_by": approver}
    if proposal.kind in ("workflow_deploy", "workflow_activate"):
        active = admin.active_or_404(session, proposal.target, lock=True)
        if active.version != proposal.base_version:
            raise stale
        action = "workflow.deploy" if proposal.kind == "workflow_deploy" else "workflow.activate"
        wf.activate_definition(session, proposal.definition, approver, action=action,
                               reason=f"{describe(proposal)}: proposed by {proposal.proposed_by}, "
                                      f"approved by {approver}.", details=details_)
        return
    payload = _payload(proposal)
    with audit.reason_for(f"Proposal {proposal.id} by {proposal.proposed_by}, approved by "
                          f"{approver}."):
        for action, bands in payload["schemes"].items():
            try:
                limits.replace_scheme(session, action, bands,
                                      expected=payload["fingerprints"][action],
                                      complete=payload.get("complete", True), commit=False)
            except Conflict:
                raise stale from None


def _outcome(session: Session, subject_id: str, outcome: str, instance) -> None:
    """The configuration approval ended: apply the change, or record the rejection. Runs in the
    transaction that completed the task; never commits. Raises Conflict (stale proposal) or
    ValidationError (no longer valid), which undo the approval."""
    proposal = session.scalar(for_update(session, select(ConfigProposal).where(
        ConfigProposal.id == int(subject_id))))
    if proposal is None or proposal.status != "pending":
        return
    decider, comment = _decider(session, instance)
    if outcome == "approved":
        _apply(session, proposal, decider)
        proposal.status = "approved"
    else:
        proposal.status = "rejected"
        proposal.decision_comment = instance.error or comment
    proposal.decided_by, proposal.decided_at = decider, utcnow()
    session.flush()
    audit.record(session, f"configuration.{proposal.status}", "ConfigProposal", proposal.id,
                 after={"kind": proposal.kind, "target": proposal.target,
                        "status": proposal.status, "proposed_by": proposal.proposed_by},
                 reason=proposal.decision_comment, actor=decider)
    from app.services.notifications import notify

    notify(session, [proposal.proposed_by],
           f"{describe(proposal)}: {proposal.status} by {decider}"
           + (f": {proposal.decision_comment}" if proposal.decision_comment else "."),
           "/workflows/" if proposal.kind != "approval_limits" else "/approval-limits/")


def _summary(session: Session, subject_id: str) -> dict:
    proposal = get_proposal(session, subject_id)
    return {"title": describe(proposal),
            "details": {N_("Change"): KIND_LABELS[proposal.kind]},
            "url": ("/approval-limits/" if proposal.kind == "approval_limits"
                    else "/workflows/") + f"#proposal-{proposal.id}",
            "proposal": details(session, proposal)}


wf.register_subject(SUBJECT, _summary, _outcome)

__all__ = ["describe", "details", "propose_activation", "propose_band", "propose_limits",
           "propose_workflow", "proposals"]
