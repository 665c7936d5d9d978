"""SpiffWorkflow script engine that never runs Python: whitelist expressions and named operators."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine

from app.workflow_engine import expressions


@dataclass(frozen=True)
class Operator:
    """A named Python function a BPMN service task may call.

    ``fn(context, data, **params)`` returns a dict that is merged into the task data.
    """

    name: str
    fn: Callable[..., dict[str, Any]]
    params: tuple[str, ...] = ()
    description: str = ""


@dataclass
class OperatorRegistry:
    operators: dict[str, Operator] = field(default_factory=dict)

    def register(self, name: str, fn, params=(), description: str = "") -> None:
        self.operators[name] = Operator(name, fn, tuple(params), description)

    def get(self, name: str) -> Operator | None:
        return self.operators.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.operators


#: the process-wide registry of service operators (filled by app.services.workflow)
OPERATORS = OperatorRegistry()


def register_operator(name: str, fn, params=(), description: str = "") -> None:
    """Make ``fn`` callable from BPMN service tasks as operator ``name``."""
    OPERATORS.register(name, fn, params, description)


class SafeScriptEngine(PythonScriptEngine):
    """Replaces exec/eval: scripts always fail, expressions go through the whitelist evaluator."""

    def __init__(self, context: Any = None, registry: OperatorRegistry | None = None):
        super().__init__()
        self.context = context
        self.registry = registry or OPERATORS

    def validate(self, expression):
        expressions.validate(expression)

    def evaluate(self, task, expression, external_context=None):
        try:
            return expressions.evaluate(expression, task.data, external_context)
        except Exception as exc:
            raise WorkflowTaskException(f"Error evaluating expression '{expression}': {exc}",
                                        task=task, exception=exc) from exc

    def execute(self, task, script, external_context=None):
        raise WorkflowTaskException("Scripts are not allowed in IMS workflows.", task=task)

    def call_service(self, task, operation_name=None, operation_params=None, **kwargs):
        operator = self.registry.get(operation_name)
        if operator is None:
            raise WorkflowTaskException(f"Unknown service operator '{operation_name}'.", task=task)
        params = {k: v["value"] for k, v in (operation_params or {}).items()}
        try:
            result = operator.fn(self.context, task.data, **params) or {}
        except WorkflowTaskException:
            raise
        except Exception as exc:
            raise WorkflowTaskException(f"Service operator '{operation_name}' failed: {exc}",
                                        task=task, exception=exc) from exc
        task.data.update(result)
        return json.dumps(result, default=str)
