"""Workflow administration: check a BPMN before it is proposed (errors per element, a summary of
what changed), list versions, roll back as an operator.

Used by the browser editor (app/views/workflow.py) and the API (app/api/workflow.py) alike, so
both validate exactly the same way (``wf.parse`` does the real validation). Deploys and roll backs
made in the portal or API are proposals (app/services/config_proposals.py) a Head of Finance
approves.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.i18n import N_
from app.models.workflow import ConfigProposal, WorkflowDefinition, WorkflowInstance
from app.services import approval_limits as limits
from app.services import workflow as wf
from app.services.locking import for_update
from app.workflow_engine import OPERATORS, DefinitionError, expressions
from app.workflow_engine.validation import BPMN_NS, NS, SPIFF_NS, safe_xml

#: element kinds that are parts of another element (compared as that element's properties)
_PARTS = {"laneSet", "flowNodeRef", "incoming", "outgoing", "conditionExpression",
          "timerEventDefinition", "timeDuration", "timeDate", "timeCycle", "documentation",
          "extensionElements", "text"}
#: labels of the compared properties (translated on the page)
FIELD_LABELS = {"name": N_("name"), "role": N_("role"), "lane": N_("lane (role)"),
                "from": N_("from"), "to": N_("to"), "condition": N_("condition"),
                "timer": N_("timer"), "attached_to": N_("attached to"),
                "operator": N_("operator"), "parameters": N_("parameters"),
                "default": N_("default flow")}


def problems(errors) -> list[dict]:
    """Errors as ``[{"element": id or None, "message": str}]`` for the editor."""
    return [{"element": getattr(e, "element", None), "message": str(e)} for e in errors]


# --------------------------------------------------------------------------- diff
def _signature(xml: str | bytes) -> dict[str, tuple[str, dict[str, str]]]:
    """id -> (element kind, {property: value}) for everything that matters in the process."""
    root = safe_xml(xml)
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for process in root.findall("bpmn:process", NS):
        lane_of = {}
        for lane in process.iter(f"{{{BPMN_NS}}}lane"):
            for ref in lane.findall("bpmn:flowNodeRef", NS):
                if ref.text:
                    lane_of[ref.text.strip()] = (lane.get("name") or "").strip()
        for el in process.iter():
            if not isinstance(el.tag, str):
                continue
            qn = etree.QName(el)
            ident = el.get("id")
            if qn.namespace != BPMN_NS or not ident or qn.localname in _PARTS:
                continue
            kind = qn.localname
            sig = {"name": (el.get("name") or "").strip()}
            if kind == "lane":
                sig = {"role": sig["name"]}
            elif ident in lane_of:
                sig["lane"] = lane_of[ident]
            if kind == "sequenceFlow":
                sig["from"] = el.get("sourceRef") or ""
                sig["to"] = el.get("targetRef") or ""
                cond = el.find("bpmn:conditionExpression", NS)
                sig["condition"] = (cond.text or "").strip() if cond is not None else ""
            if el.get("default"):
                sig["default"] = el.get("default")
            if kind == "boundaryEvent":
                sig["attached_to"] = el.get("attachedToRef") or ""
            timer = el.find("bpmn:timerEventDefinition", NS)
            if timer is not None:
                for part in timer:
                    if isinstance(part.tag, str):
                        sig["timer"] = f"{etree.QName(part).localname}: {(part.text or '').strip()}"
            op = el.find(f"bpmn:extensionElements/{{{SPIFF_NS}}}serviceTaskOperator", NS)
            if op is not None:
                sig["operator"] = op.get("id") or ""
                sig["parameters"] = ", ".join(
                    f"{p.get('id')}={p.get('value', '')}"
                    for p in op.iterfind(f".//{{{SPIFF_NS}}}parameter"))
            out[ident] = (kind, sig)
    return out


def _title(kind: str, ident: str, sig: dict) -> dict:
    return {"id": ident, "type": kind, "name": sig.get("name") or sig.get("role") or ""}


def diff_bpmn(old_xml: str | bytes | None, new_xml: str | bytes) -> dict:
    """What changed between two versions: elements added, removed and changed (by id)."""
    new = _signature(new_xml)
    old = _signature(old_xml) if old_xml else {}
    added = [_title(k, i, s) for i, (k, s) in new.items() if i not in old]
    removed = [_title(k, i, s) for i, (k, s) in old.items() if i not in new]
    changed = []
    for ident, (kind, sig) in new.items():
        if ident not in old:
            continue
        old_kind, old_sig = old[ident]
        fields = [{"field": f, "old": old_sig.get(f, ""), "new": sig.get(f, "")}
                  for f in sorted(set(sig) | set(old_sig)) if sig.get(f, "") != old_sig.get(f, "")]
        if old_kind != kind:
            fields.insert(0, {"field": "type", "old": old_kind, "new": kind})
        if fields:
            changed.append({**_title(kind, ident, sig), "fields": fields})
    return {"added": added, "removed": removed, "changed": changed}


# --------------------------------------------------------------------------- check and roll back
def active_or_404(session: Session, process_id: str, lock: bool = False) -> WorkflowDefinition:
    """The active version of a process (``lock``: FOR UPDATE, so changes of it serialise)."""
    query = select(WorkflowDefinition).where(WorkflowDefinition.process_id == process_id,
                                             WorkflowDefinition.active.is_(True))
    if lock:
        query = for_update(session, query)
    definition = session.scalar(query)
    if definition is None and lock:
        # we waited for another change that made the row we were locking inactive: read the
        # version that is active now (the caller's version check then answers 409)
        definition = session.scalar(query)
    if definition is None:
        raise NotFound(f"No workflow '{process_id}' is deployed.")
    return definition


def check_base(active: WorkflowDefinition, base_version: int | None) -> None:
    """Conflict unless the active version is still the one the user started from."""
    if base_version is not None and active.version != base_version:
        raise Conflict(
            f"Version {active.version} of this workflow was made active (by "
            f"{active.deployed_by}) after you opened version {base_version}. Reload it to see "
            f"the changes, then make yours again.",
            {"base_version": [f"The active version is {active.version}."]})


@dataclass
class CheckResult:
    valid: bool
    errors: list[str]
    changes: dict
    active_version: int
    unchanged: bool

    def to_dict(self) -> dict:
        return {"valid": self.valid, "errors": [str(e) for e in self.errors],
                "problems": problems(self.errors), "changes": self.changes,
                "active_version": self.active_version, "unchanged": self.unchanged}


def is_guarded_by_code(process_id: str) -> bool:
    """The configuration approval workflow: never changed through the portal or the API."""
    return process_id == limits.CONFIGURATION_PROCESS


def check_definition(session: Session, process_id: str, xml: bytes | str) -> CheckResult:
    """Validate exactly as a deploy would, without deploying; and what changed from the active."""
    active = active_or_404(session, process_id)
    try:
        parsed = wf.parse(xml, expected_process_id=process_id)
    except DefinitionError as exc:
        return CheckResult(False, exc.errors, {"added": [], "removed": [], "changed": []},
                           active.version, False)
    return CheckResult(True, [], diff_bpmn(active.bpmn_xml, xml), active.version,
                       parsed.sha256 == active.sha256)


def activate_version(session: Session, process_id: str, version: int, actor: str,
                     base_version: int | None = None) -> WorkflowDefinition:
    """Make an earlier version the active one at once (an operator's roll back, audited; the
    portal and the API propose it instead). One commit."""
    try:
        active = active_or_404(session, process_id, lock=True)
        check_base(active, base_version)
        target = session.scalar(select(WorkflowDefinition).where(
            WorkflowDefinition.process_id == process_id, WorkflowDefinition.version == version))
        if target is None:
            raise NotFound(f"Workflow '{process_id}' has no version {version}.")
        if target is active:
            raise ValidationError(f"Version {version} is already the active version.",
                                  {"version": ["Already active."]})
        wf.activate_definition(session, target, actor, action="workflow.activate",
                               reason=f"Version {target.version} made active again (was "
                                      f"{active.version}).")
        session.commit()
    except Exception:
        session.rollback()
        raise
    return target


def check_expression(expression: str) -> str | None:
    """None if the expression is safe, else the reason (for the editor, as the user types)."""
    text = (expression or "").strip()
    if not text:
        return "The expression is empty."
    try:
        expressions.validate(text)
    except expressions.UnsafeExpression as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- listing
def versions(session: Session, process_id: str | None = None) -> list[dict]:
    """Every process with its versions (newest first) and how many instances run on each."""
    counts: dict[int, dict[str, int]] = {}
    for definition_id, status, n in session.execute(
            select(WorkflowInstance.definition_id, WorkflowInstance.status, func.count())
            .group_by(WorkflowInstance.definition_id, WorkflowInstance.status)):
        counts.setdefault(definition_id, {})[status] = n
    proposed = {}  # definition id -> the latest proposal to make it active
    for definition_id, proposal_id, status in session.execute(
            select(ConfigProposal.definition_id, ConfigProposal.id, ConfigProposal.status)
            .where(ConfigProposal.definition_id.is_not(None)).order_by(ConfigProposal.id)):
        proposed[definition_id] = {"id": proposal_id, "status": status}
    query = select(WorkflowDefinition).order_by(WorkflowDefinition.process_id,
                                                WorkflowDefinition.version.desc())
    if process_id is not None:
        query = query.where(WorkflowDefinition.process_id == process_id)
    processes: dict[str, dict] = {}
    for d in session.scalars(query):
        entry = processes.setdefault(d.process_id, {
            "process_id": d.process_id, "name": d.name, "active_version": None, "versions": [],
            "guarded_by_code": is_guarded_by_code(d.process_id)})
        by_status = counts.get(d.id, {})
        if d.active:
            entry["active_version"] = d.version
            entry["name"] = d.name
        entry["versions"].append({
            "id": d.id, "version": d.version, "name": d.name, "active": d.active,
            "sha256": d.sha256, "deployed_at": d.deployed_at, "deployed_by": d.deployed_by,
            "running": by_status.get("running", 0),
            "instances": sum(by_status.values()), "proposal": proposed.get(d.id)})
    return list(processes.values())


def operators() -> list[dict]:
    """The service-operator registry, for the editor's operator picker."""
    return [{"name": op.name, "params": list(op.params), "description": op.description}
            for op in sorted(OPERATORS.operators.values(), key=lambda o: o.name)]
