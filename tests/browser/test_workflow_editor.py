"""In Chromium: a Workflow Administrator changes who approves refunds in the BPMN editor, sees
what changed, submits it for approval; nothing changes until a Head of Finance approves it on
their task page (seeing the same changes); then a new refund follows the new route while an older
one keeps the old. A malformed condition shows its error on the page and submits nothing; a lane
naming a role that may not approve money is refused next to the lane. The approval limits page
refuses a gap and submits a proposal."""

import re

import pytest
from sqlalchemy import func, select

from app.models.workflow import WorkflowDefinition, WorkflowInstance, WorkflowTask
from app.services import approval_limits as limits
from app.services import config_proposals as CP
from app.services import refunds as RF
from app.services import workflow as wf
from app.services import workflow_admin as admin
from tests.conftest import browser_login
from tests.integration.test_refunds import deploy_refund_workflow, make_txn
from tests.workflows.helpers import decide_proposal

pytestmark = pytest.mark.browser


def _refund(session, pence):
    txn = make_txn(session, pence * 2)
    refund = RF.request_refund(session, transaction_id=txn.id, amount=f"{pence / 100:.2f}",
                               reason="Paid twice", method="card", actor="clerk").refund
    instance = session.scalar(select(WorkflowInstance).where(
        WorkflowInstance.subject_type == "refund", WorkflowInstance.subject_id == str(refund.id)))
    return instance


def _task_roles(session, instance):
    session.expire_all()
    return [t.role for t in session.scalars(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "ready"))]


def _versions(session):
    session.expire_all()
    return session.scalar(select(func.count(WorkflowDefinition.id)).where(
        WorkflowDefinition.process_id == RF.PROCESS_ID))


def test_administrator_changes_who_approves_refunds_in_the_editor(session, page, live_url):
    deploy_refund_workflow(session)
    session.commit()
    original = wf.active_definition(session, RF.PROCESS_ID)
    old_refund = _refund(session, 120_00)
    assert _task_roles(session, old_refund) == ["Finance Manager"]
    try:
        browser_login(page, live_url, "wfadmin")
        page.goto(f"{live_url}/workflows/")
        page.click(f"#process-{RF.PROCESS_ID} a.edit-workflow")
        page.wait_for_selector("#bpmn-editor[data-ready='true']")
        assert page.locator(".bjs-powered-by").count() == 1  # the bpmn.io watermark stays

        # 1. a malformed condition: refused as typed, and on saving, next to its element
        page.select_option("#element-picker", "Flow_ToFM")
        page.fill("#prop-condition", 'current_role.__class__ == "Finance Manager"')
        page.wait_for_selector("#prop-condition-status.expr-bad")
        assert "attribute" in page.inner_text("#prop-condition-status").lower()
        page.press("#prop-condition", "Tab")  # applies the change to the diagram
        page.click("#btn-save")
        page.wait_for_selector("#problems-panel:not(.hidden)")
        assert "Flow_ToFM" in page.inner_text("#problems")
        assert page.locator("#review-panel.hidden").count() == 1  # nothing offered for deploy
        assert page.locator(".ims-error-badge").count() >= 1
        page.click("#problems a[data-element='Flow_ToFM']")
        assert "Flow_ToFM" in page.inner_text("#element-problems")
        versions_before = _versions(session)
        page.click("#btn-undo")  # take the bad condition back
        page.select_option("#element-picker", "Flow_ToFM")
        assert page.input_value("#prop-condition") == 'current_role == "Finance Manager"'

        # 2. a lane for a role that may not approve refunds is refused next to the lane
        page.select_option("#element-picker", "Lane_FinanceManager")
        page.select_option("#prop-role", "Workflow Administrator")
        page.click("#btn-save")
        page.locator("#problems li", has_text="may not approve").wait_for()
        assert "Lane_FinanceManager" in page.inner_text("#problems")
        assert page.locator("#review-panel.hidden").count() == 1

        # 3. the Finance Manager approval lane now belongs to the Head of Finance
        page.select_option("#element-picker", "Lane_FinanceManager")
        page.select_option("#prop-role", "Head of Finance")
        page.click("#btn-save")
        page.wait_for_selector("#review-panel:not(.hidden)")
        changes = page.inner_text("#changes")
        assert "Lane_FinanceManager" in changes and "Head of Finance" in changes
        assert _versions(session) == versions_before  # review stores nothing yet
        page.click("#btn-deploy")
        page.wait_for_selector("#deploy-result")
        assert "submitted for approval" in page.inner_text("#deploy-result")
        page.wait_for_selector("#pending-panel:not(.hidden) #pending-proposals li")
        pid = page.get_attribute("#pending-proposals li:last-child", "data-proposal")
        session.expire_all()
        assert wf.active_definition(session, RF.PROCESS_ID).id == original.id  # not yet
        assert _task_roles(session, _refund(session, 125_00)) == ["Finance Manager"]

        # 4. the Head of Finance sees the change on the task page and approves it
        browser_login(page, live_url, "head")
        page.goto(f"{live_url}/tasks/")
        # the subject reads "Configuration change 1" since subjects are in words (issue 21)
        row = page.locator("#task-list tr",
                           has_text=re.compile(rf"configuration change {pid}\b", re.IGNORECASE))
        row.locator("a").click()
        page.wait_for_selector(".proposal")
        assert "Lane_FinanceManager" in page.inner_text(".proposal .change-changed")
        assert "Head of Finance" in page.inner_text(".proposal .change-changed")
        page.click("#approve-btn")
        page.wait_for_load_state("networkidle")
        session.expire_all()
        active = wf.active_definition(session, RF.PROCESS_ID)
        assert active.version > original.version and active.deployed_by == "wfadmin"

        # 5. a new refund follows the new route; the older one keeps the old
        new_refund = _refund(session, 130_00)
        assert new_refund.definition_id == active.id
        assert _task_roles(session, new_refund) == ["Head of Finance"]
        assert _task_roles(session, old_refund) == ["Finance Manager"]
        assert session.get(WorkflowInstance, old_refund.id).definition_id == original.id

        # 6. the Workflows page shows the new version with who proposed it
        browser_login(page, live_url, "wfadmin")
        page.goto(f"{live_url}/workflows/")
        row = page.locator(f"#process-{RF.PROCESS_ID} tr[data-version='{active.version}']")
        assert "wfadmin" in row.inner_text() and "active" in row.inner_text()
    finally:
        session.rollback()
        if wf.active_definition(session, RF.PROCESS_ID).id != original.id:
            admin.activate_version(session, RF.PROCESS_ID, original.version, "test-cleanup")


def test_approval_limits_page_refuses_a_gap_and_proposes_a_change(session, page, live_url):
    before = [(b.min_amount, b.max_amount, b.roles) for b in limits.scheme(session, "write_off")]
    browser_login(page, live_url, "wfadmin")
    page.goto(f"{live_url}/approval-limits/")
    form = page.locator("#scheme-write_off form")
    form.locator("input[name='min-1']").fill("150.00")  # leaves 100.01–149.99 uncovered
    form.locator("button[type='submit']").click()
    page.wait_for_load_state("networkidle")
    assert "Nothing covers £100.01 to £149.99" in page.inner_text("#scheme-write_off .scheme-errors")
    session.expire_all()
    assert [(b.min_amount, b.max_amount, b.roles)
            for b in limits.scheme(session, "write_off")] == before
    # a coherent change is submitted for approval, shown, and not applied
    form = page.locator("#scheme-write_off form")
    form.locator("input[name='max-0']").fill("150.00")
    form.locator("input[name='min-1']").fill("150.01")
    form.locator("button[type='submit']").click()
    page.wait_for_load_state("networkidle")
    assert "Submitted for approval" in page.inner_text("body")
    proposal = page.locator("#scheme-write_off .proposal[data-status='pending']").first
    assert "£150.01" in proposal.inner_text()
    session.expire_all()
    assert [(b.min_amount, b.max_amount, b.roles)
            for b in limits.scheme(session, "write_off")] == before
    pid = int(proposal.get_attribute("data-proposal"))
    decide_proposal(session, pid, "head", "reject", "Not now")
    assert CP.get_proposal(session, pid).status == "rejected"
