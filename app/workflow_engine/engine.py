"""The one wrapper around SpiffWorkflow: parse + validate, start, restore, step, save."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnWorkflowConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from app.workflow_engine import validation
from app.workflow_engine.script_engine import OPERATORS, OperatorRegistry, SafeScriptEngine


class DefinitionError(ValueError):
    """A BPMN document that may not be deployed; ``errors`` name the offending elements."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class EngineError(RuntimeError):
    """The workflow could not proceed (bad data for an expression, a failing operator...)."""


def _message(exc: Exception) -> str:
    """SpiffWorkflow's __str__ can fail on empty notes: build the message defensively."""
    base = str(exc.args[0]) if exc.args else exc.__class__.__name__
    notes = [n for n in (getattr(exc, "notes", None) or []) if n]
    return ". ".join([base, *notes])


class _InstanceConverter(BpmnWorkflowConverter):
    """Serialises a workflow without its spec (stored once per definition version)."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        if "spec" in dct:  # a full serialisation (e.g. from SpiffWorkflow itself)
            return super().from_dict(dct)
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _make_serializer() -> BpmnWorkflowSerializer:
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = _InstanceConverter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


SERIALIZER = _make_serializer()
SERIALIZER_VERSION = f"spiff-{SERIALIZER.VERSION}/ims-1"


@dataclass(frozen=True)
class ParsedDefinition:
    process_id: str
    name: str
    sha256: str
    spec_json: str
    roles: tuple[str, ...]


def sha256_of(xml: bytes | str) -> str:
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    return hashlib.sha256(data).hexdigest()


def parse_definition(xml: bytes | str, roles: set[str], registry: OperatorRegistry | None = None,
                     expected_process_id: str | None = None,
                     guarded: dict[str, tuple[str, ...]] | None = None) -> ParsedDefinition:
    """Validate and parse one BPMN document; raise DefinitionError listing every problem.

    ``guarded``: process id -> the only roles its lanes may name (see validation.check_document).
    """
    registry = registry or OPERATORS
    try:
        root = validation.safe_xml(xml)
    except ValueError as exc:
        raise DefinitionError([str(exc)]) from None
    errors = validation.check_document(root, roles, registry, guarded)
    if errors:
        raise DefinitionError(errors)
    process = next(p for p in root.findall("bpmn:process", validation.NS)
                   if p.get("isExecutable", "true") != "false")
    process_id = process.get("id")
    if expected_process_id and process_id != expected_process_id:
        raise DefinitionError([f"The process id is '{process_id}', not '{expected_process_id}'."])
    parser = SpiffBpmnParser()
    try:
        parser.add_bpmn_xml(root, filename=f"{process_id}.bpmn")
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except (ValidationException, SpiffWorkflowException) as exc:
        raise DefinitionError([validation.Problem(f"The BPMN does not parse: {_message(exc)}",
                                                  getattr(exc, "id", None))]) from None
    except Exception as exc:  # lxml/Spiff raise many kinds for malformed models
        raise DefinitionError([f"The BPMN does not parse: {exc.__class__.__name__}: {exc}"]) from None
    spec_json = json.dumps({
        "spec": SERIALIZER.to_dict(spec),
        "subprocess_specs": {k: SERIALIZER.to_dict(v) for k, v in subprocess_specs.items()},
    })
    lanes = sorted({ts.lane for ts in spec.task_specs.values() if getattr(ts, "lane", None)})
    return ParsedDefinition(process_id, process.get("name") or process_id,
                            sha256_of(xml), spec_json, tuple(lanes))


_spec_cache: dict[str, tuple[Any, dict]] = {}
_spec_lock = threading.Lock()


def load_spec(key: str, spec_json):
    """The restored (spec, subprocess_specs) for a definition version, cached per process.

    ``spec_json`` is the stored JSON or a callable returning it (read only on a cache miss).
    """
    cached = _spec_cache.get(key)
    if cached is None:
        dct = json.loads(spec_json() if callable(spec_json) else spec_json)
        cached = (SERIALIZER.from_dict(dct["spec"]),
                  {k: SERIALIZER.from_dict(v) for k, v in dct["subprocess_specs"].items()})
        with _spec_lock:
            _spec_cache[key] = cached
    return cached


@dataclass
class ReadyTask:
    id: str
    name: str
    title: str
    role: str | None
    due_at: datetime | None


@dataclass
class StepLog:
    """What happened during one run of engine steps (for the instance history)."""

    timers_fired: list[str] = field(default_factory=list)


class WorkflowRun:
    """One live workflow in memory: start or restore it, act on it, dump it."""

    def __init__(self, workflow: BpmnWorkflow):
        self.workflow = workflow
        self.log = StepLog()
        self._ready_cache: list[ReadyTask] | None = None
        self._timer_cache: list | None = None

    # construction -------------------------------------------------------
    @classmethod
    def start(cls, spec_key: str, spec_json, data: dict, context: Any = None) -> "WorkflowRun":
        spec, subs = load_spec(spec_key, spec_json)
        wf = BpmnWorkflow(spec, subs, script_engine=SafeScriptEngine(context))
        start = wf.task_tree
        start.data.update(data)
        for task in wf.get_tasks(state=TaskState.READY):
            task.data.update(data)
        run = cls(wf)
        run.step()
        return run

    @classmethod
    def restore(cls, spec_key: str, spec_json, state_json: str, context: Any = None) -> "WorkflowRun":
        spec, subs = load_spec(spec_key, spec_json)
        dct = json.loads(state_json)
        dct.pop(BpmnWorkflowSerializer.VERSION_KEY, None)
        wf = SERIALIZER.registry.restore(dct, spec=spec, subprocess_specs=subs)
        wf.script_engine = SafeScriptEngine(context)
        return cls(wf)

    def dump(self) -> str:
        dct = SERIALIZER.to_dict(self.workflow)
        dct[BpmnWorkflowSerializer.VERSION_KEY] = SERIALIZER.VERSION
        return json.dumps(dct, separators=(",", ":"), default=str)

    # stepping -----------------------------------------------------------
    def step(self) -> None:
        def did_complete(task):
            spec = task.task_spec
            if isinstance(spec, CatchingEvent) and isinstance(
                    getattr(spec, "event_definition", None), TimerEventDefinition):
                self.log.timers_fired.append(spec.bpmn_id or spec.name)

        try:
            self.workflow.do_engine_steps(did_complete_task=did_complete)
        except SpiffWorkflowException as exc:
            raise EngineError(_message(exc)) from exc
        self._ready_cache = None
        self._timer_cache = None

    def refresh_timers(self) -> None:
        try:
            self.workflow.refresh_timers()
        except SpiffWorkflowException as exc:
            raise EngineError(_message(exc)) from exc
        self.step()

    def complete_user_task(self, task_id: str, data: dict) -> None:
        task = self.workflow.get_task_from_id(UUID(task_id))
        if task is None or task.state != TaskState.READY or not task.task_spec.manual:
            raise EngineError("The task is not ready.")
        task.data.update(data)
        self._ready_cache = None
        self._timer_cache = None
        try:
            task.run()
        except SpiffWorkflowException as exc:
            raise EngineError(_message(exc)) from exc
        self.step()

    # queries --------------------------------------------------------------
    def _ready_user_tasks(self):
        return self.workflow.get_tasks(state=TaskState.READY, manual=True)

    def ready_task_ids(self) -> list[str]:
        """Ids of the ready user tasks (without working out roles and due times)."""
        if self._ready_cache is not None:
            return [t.id for t in self._ready_cache]
        return [str(task.id) for task in self._ready_user_tasks()]

    def ready_tasks(self) -> list[ReadyTask]:
        """Ready user tasks with their role (lane) and due time (earliest boundary timer)."""
        if self._ready_cache is None:
            timers = self._timers()
            out = []
            for task in self._ready_user_tasks():
                spec = task.task_spec
                out.append(ReadyTask(str(task.id), spec.bpmn_id or spec.name,
                                     spec.bpmn_name or spec.bpmn_id or spec.name,
                                     getattr(spec, "lane", None), self._due_for(task, timers)))
            self._ready_cache = out
        return list(self._ready_cache)

    def _timers(self) -> list:
        """Waiting timer events (cached until the next step)."""
        if self._timer_cache is None:
            self._timer_cache = [
                task for task in self.workflow.get_tasks(state=TaskState.WAITING)
                if isinstance(task.task_spec, CatchingEvent) and isinstance(
                    getattr(task.task_spec, "event_definition", None), TimerEventDefinition)]
        return self._timer_cache

    @staticmethod
    def _timer_value(task) -> datetime | None:
        value = task._get_internal_data("event_value")
        if isinstance(value, dict):  # cycle timers
            value = value.get("next")
        if not value:
            return None
        try:
            return TimerEventDefinition.get_datetime(value).astimezone(timezone.utc)
        except Exception:
            return None

    def _due_for(self, user_task, timers) -> datetime | None:
        """The earliest boundary timer attached to a user task (its escalation deadline)."""
        due = None
        for timer in timers:
            parent = timer.parent
            if parent is not None and any(c.id == user_task.id for c in parent.children):
                value = self._timer_value(timer)
                if value is not None and (due is None or value < due):
                    due = value
        return due

    def next_timer_at(self) -> datetime | None:
        values = [v for v in (self._timer_value(t) for t in self._timers()) if v is not None]
        return min(values) if values else None

    @property
    def completed(self) -> bool:
        return self.workflow.is_completed()

    @property
    def data(self) -> dict:
        """The data of the latest finished task (the workflow's result at the end)."""
        if self.workflow.is_completed():
            ends = [t for t in self.workflow.get_tasks(state=TaskState.COMPLETED)
                    if t.task_spec.__class__.__name__ == "EndEvent"]
            if ends:
                return dict(max(ends, key=lambda t: t.last_state_change).data)
            return dict(self.workflow.data)
        last = self.workflow.last_task
        return dict(last.data) if last is not None else dict(self.workflow.task_tree.data)

    def task_data(self, task_id: str) -> dict:
        task = self.workflow.get_task_from_id(UUID(task_id))
        return dict(task.data) if task is not None else {}

    def current_elements(self) -> list[str]:
        """BPMN ids of the elements the instance is waiting in (for diagram highlighting)."""
        ids = [t.task_spec.bpmn_id for t in self._ready_user_tasks()]
        return [i for i in ids if i]
