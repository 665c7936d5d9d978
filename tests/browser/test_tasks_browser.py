"""In Chromium: a two-step approval end to end — inbox count, task page, approve, diagram, history."""

import pytest

from tests.conftest import browser_login
from tests.workflows.helpers import OUTCOMES, ready_tasks, start

pytestmark = pytest.mark.browser


def test_two_step_approval_in_the_browser(session, page, live_url):
    instance = start(session, 650_00, reason="Refund of duplicate card payment")
    [task] = ready_tasks(session, instance.id)

    browser_login(page, live_url, "manager")
    page.click("#ims-my-tasks")
    page.wait_for_load_state("networkidle")
    assert "/tasks/" in page.url
    page.click(f"tr[data-task-id='{task.id}'] a")
    assert page.inner_text("#request-amount") == "£650.00"
    assert page.inner_text("#request-requester") == "clerk"
    assert "duplicate card payment" in page.inner_text("#request-reason")
    page.fill("#comment", "Evidence checked")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")
    assert "Approved:" in page.inner_text("body")

    [second] = ready_tasks(session, instance.id)
    browser_login(page, live_url, "head")
    page.goto(f"{live_url}/tasks/{second.id}")
    page.click("#reject-btn")  # no comment: refused, nothing changes
    page.wait_for_load_state("networkidle")
    assert "reason" in page.inner_text("#task-error")
    page.fill("#comment", "Customer already refunded by cheque")
    page.click("#reject-btn")
    page.wait_for_load_state("networkidle")
    assert OUTCOMES[instance.subject_id] == ["rejected"]

    page.goto(f"{live_url}/workflow-instances/{instance.id}")
    page.wait_for_selector("#bpmn-canvas[data-rendered='true']")
    assert page.locator("#bpmn-canvas svg").count() >= 1
    assert page.locator(".bjs-powered-by").count() == 1  # the bpmn.io watermark stays
    history = page.inner_text("#workflow-history")
    assert "Evidence checked" in history and "Customer already refunded by cheque" in history
    assert page.inner_text("#instance-outcome") == "rejected"


def test_current_task_is_highlighted_on_the_diagram(session, page, live_url):
    instance = start(session, 10_00)
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/workflow-instances/{instance.id}")
    page.wait_for_selector("#bpmn-canvas[data-rendered='true']")
    assert page.locator("g.ims-current[data-element-id='Activity_ApproveFM']").count() == 1
