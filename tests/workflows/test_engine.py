"""The demo approval BPMN driven through the engine, with a save/restore between every step."""

import time

import pytest

from app.security.roles import ROLES
from app.services.workflow import RunContext
from app.workflow_engine import DefinitionError, WorkflowRun, parse_definition
from tests.workflows.helpers import demo_xml, with_action


@pytest.fixture(scope="module")
def parsed():
    return parse_definition(demo_xml(), set(ROLES))


def save_restore(run, parsed, session):
    return WorkflowRun.restore("test-demo", parsed.spec_json, run.dump(), RunContext(session))


def drive(parsed, session, action, amount, decisions, escalate_after="P3D"):
    """Start, then answer each ready task with the next decision; return (run, roles asked)."""
    run = WorkflowRun.start("test-demo", parsed.spec_json,
                            {"action": action, "amount_pence": amount, "requester": "clerk",
                             "escalate_after": escalate_after}, RunContext(session))
    asked = []
    for decision in decisions:
        run = save_restore(run, parsed, session)
        ready = run.ready_tasks()
        assert len(ready) == 1, ready
        asked.append(ready[0].role)
        run.complete_user_task(ready[0].id, {"decision": decision, "comment": "ok"})
    run = save_restore(run, parsed, session)
    return run, asked


@pytest.mark.parametrize("action, amount, roles", [
    ("suspense_allocation", 1_000_000, []),
    ("suspense_allocation", 1_000_001, ["Finance Manager"]),
    ("refund", 1, ["Finance Manager"]),
    ("refund", 50_000, ["Finance Manager"]),
    ("refund", 50_001, ["Finance Manager", "Head of Finance"]),
    ("write_off", 10_000, ["Finance Manager"]),
    ("write_off", 10_001, ["Head of Finance"]),
    ("write_off", 500_000, ["Head of Finance"]),
    ("write_off", 500_001, ["Head of Finance", "Finance Manager"]),
])
def test_routes_by_the_seeded_approval_limits(parsed, session, action, amount, roles):
    run, asked = drive(parsed, session, action, amount, ["approve"] * len(roles))
    assert asked == roles
    assert run.completed
    assert run.data["outcome"] == "approved"
    assert run.ready_tasks() == []


def test_rejection_at_the_second_approval_ends_rejected(parsed, session):
    run, asked = drive(parsed, session, "refund", 75_000, ["approve", "reject"])
    assert asked == ["Finance Manager", "Head of Finance"]
    assert run.completed and run.data["outcome"] == "rejected"


def test_rejection_at_the_first_approval_asks_nobody_else(parsed, session):
    run, asked = drive(parsed, session, "refund", 75_000, ["reject"])
    assert asked == ["Finance Manager"]
    assert run.completed and run.data["outcome"] == "rejected"


def test_finance_manager_task_escalates_to_head_of_finance_after_its_duration(parsed, session):
    run = WorkflowRun.start("test-demo", parsed.spec_json,
                            {"action": "refund", "amount_pence": 100, "requester": "clerk",
                             "escalate_after": "PT1S"}, RunContext(session))
    [task] = run.ready_tasks()
    assert task.role == "Finance Manager" and task.due_at is not None
    assert run.next_timer_at() == task.due_at
    run = save_restore(run, parsed, session)
    run.refresh_timers()  # not due yet: nothing changes
    assert [t.role for t in run.ready_tasks()] == ["Finance Manager"]
    time.sleep(max(0.0, (task.due_at.timestamp() - time.time())) + 0.05)
    run = save_restore(run, parsed, session)
    run.refresh_timers()
    assert run.log.timers_fired == ["Event_EscalateFM"]
    [escalated] = run.ready_tasks()
    assert escalated.role == "Head of Finance"
    assert run.next_timer_at() is None
    run = save_restore(run, parsed, session)
    run.complete_user_task(escalated.id, {"decision": "approve"})
    assert run.completed and run.data["outcome"] == "approved"


def test_timer_uses_the_duration_from_task_data(parsed, session):
    run = WorkflowRun.start("test-demo", parsed.spec_json,
                            {"action": "refund", "amount_pence": 100, "requester": "clerk",
                             "escalate_after": "P3D"}, RunContext(session))
    [task] = run.ready_tasks()
    assert 3 * 86400 - 60 < task.due_at.timestamp() - time.time() <= 3 * 86400


def test_no_approval_limit_for_the_action_stops_the_start(parsed, session):
    from app.workflow_engine import EngineError

    with pytest.raises(EngineError):
        WorkflowRun.start("test-demo", parsed.spec_json,
                          {"action": "no_such_action", "amount_pence": 100}, RunContext(session))


# ----------------------------------------------------------------------- unsafe definitions
SCRIPT_TASK = ('<bpmn:userTask id="Activity_ApproveFM" name="Approve (Finance Manager)">',
               '<bpmn:scriptTask id="Activity_ApproveFM" name="Approve (Finance Manager)">'
               '<bpmn:script>import os</bpmn:script>')


def errors_for(xml):
    with pytest.raises(DefinitionError) as info:
        parse_definition(xml, set(ROLES))
    return info.value.errors


def test_script_task_is_refused_naming_the_element():
    xml = demo_xml().replace(b'<bpmn:userTask id="Activity_ApproveFM" name="Approve (Finance Manager)">',
                             b'<bpmn:scriptTask id="Activity_ApproveFM" name="Approve (Finance Manager)">'
                             b'<bpmn:script>import os</bpmn:script>', 1)
    xml = xml.replace(b"</bpmn:userTask>\n    <bpmn:boundaryEvent", b"</bpmn:scriptTask>\n    <bpmn:boundaryEvent", 1)
    errors = errors_for(xml)
    assert any("Activity_ApproveFM" in e and "script task" in e for e in errors), errors


@pytest.mark.parametrize("condition", [
    '__import__("os").system("id")',
    "().__class__.__base__.__subclasses__()",
    "current_role.upper() == 'X'",
    "(lambda: True)()",
    "[c for c in current_role]",
])
def test_unsafe_gateway_condition_is_refused_naming_the_flow(condition):
    from xml.sax.saxutils import escape

    xml = with_action(demo_xml(), 'current_role == "Finance Manager"', escape(condition))
    errors = errors_for(xml)
    assert any("Flow_ToFM" in e and "unsafe" in e for e in errors), errors


def test_unsafe_timer_expression_is_refused():
    xml = with_action(demo_xml(), ">escalate_after<", ">__import__('os').getcwd()<")
    errors = errors_for(xml)
    assert any("Event_EscalateFM" in e and "timeDuration" in e for e in errors), errors


def test_unknown_service_operator_is_refused():
    xml = with_action(demo_xml(), 'id="escalate"', 'id="os_system"')
    errors = errors_for(xml)
    assert any("Activity_Escalate" in e and "os_system" in e for e in errors), errors


def test_lane_that_is_not_a_role_is_refused():
    xml = with_action(demo_xml(), 'name="Head of Finance">', 'name="Chief Executive">')
    errors = errors_for(xml)
    assert any("Lane_HeadOfFinance" in e and "Chief Executive" in e for e in errors), errors


def test_pre_and_post_scripts_are_refused():
    xml = with_action(demo_xml(), '<bpmn:userTask id="Activity_ApproveHoF" name="Approve (Head of Finance)">',
                      '<bpmn:userTask id="Activity_ApproveHoF" name="Approve (Head of Finance)">'
                      '<bpmn:extensionElements><spiffworkflow:preScript>import os</spiffworkflow:preScript>'
                      '</bpmn:extensionElements>')
    errors = errors_for(xml)
    assert any("Activity_ApproveHoF" in e and "preScript" in e for e in errors), errors


def test_entities_and_doctype_are_refused():
    xml = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + \
        demo_xml().split(b"?>", 1)[1]
    errors = errors_for(xml)
    assert any("DOCTYPE" in e for e in errors)


def test_reserved_ids_are_reported():
    xml = demo_xml().replace(b"StartEvent_1", b"Start")
    errors = errors_for(xml)
    assert any("'Start'" in e for e in errors), errors


def test_not_xml_is_refused():
    assert errors_for(b"this is not xml")


def test_script_engine_never_executes_scripts(parsed, session):
    from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

    from app.workflow_engine.script_engine import SafeScriptEngine

    run = WorkflowRun.start("test-demo", parsed.spec_json,
                            {"action": "refund", "amount_pence": 100, "escalate_after": "P1D"},
                            RunContext(session))
    task = run.workflow.get_tasks()[0]
    engine = SafeScriptEngine()
    with pytest.raises(WorkflowTaskException):
        engine.execute(task, "x = 1")
    with pytest.raises(WorkflowTaskException):
        engine.evaluate(task, "__import__('os')")
