"""The only package that imports SpiffWorkflow: a small engine wrapper used by app.services.workflow.

Public surface: ``parse_definition`` (validate + parse a BPMN document), ``WorkflowRun`` (start,
restore, complete a user task, fire timers, dump), ``register_operator`` (service operators) and
the whitelist ``expressions`` evaluator.
"""

from app.workflow_engine.engine import (  # noqa: F401
    SERIALIZER_VERSION,
    DefinitionError,
    EngineError,
    ParsedDefinition,
    ReadyTask,
    WorkflowRun,
    load_spec,
    parse_definition,
    sha256_of,
)
from app.workflow_engine.script_engine import OPERATORS, Operator, register_operator  # noqa: F401
