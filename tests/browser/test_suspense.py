"""In Chromium: a clerk works a suspense item down to zero across two funds (suggestion, live
remaining, keyboard bulk selection); a large allocation is approved by a manager; a write-off
climbs the approval tiers (Head of Finance, then a Finance Manager)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models.reference import AccountHolder
from app.models.suspense_work import SuspenseAllocation, WriteOff
from app.models.workflow import WorkflowTask
from app.services import suspense as S
from tests.conftest import browser_login, unique
from tests.integration.test_suspense_service import assert_books_balance, make_item

pytestmark = pytest.mark.browser


def _line(page, i):
    return page.locator("#allocation-lines tbody tr").nth(i)


def test_clerk_splits_an_item_across_two_funds_to_zero(session, page, live_url):
    acct = session.scalar(select(AccountHolder).where(AccountHolder.fund_code == "CTAX",
                                                      AccountHolder.stop_message.is_(None))
                          .order_by(AccountHolder.id.desc()).limit(1))
    ref = acct.account_reference
    wrong = ref[1] + ref[0] + ref[2:] if ref[0] != ref[1] else ref[0] + ref[2] + ref[1] + ref[3:]
    item = make_item(session, 150_00, reference=wrong, narrative="Bank credit")
    item_id = item.id
    tws = unique("TW")

    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/suspense/?q={wrong}")
    # keyboard: tick "select all" with the space bar, then assign the selection to me
    page.focus("#select-all")
    page.keyboard.press("Space")
    assert page.locator(f"tr[data-item-id='{item_id}'] .row-select").is_checked()
    page.click("#bulk-assign")
    page.wait_for_load_state("networkidle")
    assert page.inner_text(f"tr[data-item-id='{item_id}'] .item-assigned") == "clerk"
    page.click(f"tr[data-item-id='{item_id}'] a.item-link")
    page.wait_for_load_state("networkidle")

    # the near-miss suggestion says why, and fills the first line
    sugg = page.locator(f".suggestion[data-reference='{ref}']")
    assert "swapped" in sugg.inner_text()
    sugg.locator(".use-suggestion").click()
    assert _line(page, 0).locator(".line-fund").input_value() == "CTAX"
    assert _line(page, 0).locator(".line-reference").input_value() == ref
    _line(page, 0).locator(".line-amount").fill("100.00")
    _line(page, 1).locator(".line-fund").select_option("TWS")
    _line(page, 1).locator(".line-reference").fill(tws)
    _line(page, 1).locator(".line-amount").fill("60.00")
    assert "more than remains" in page.inner_text("#remaining-after")
    assert page.is_disabled("#allocate-btn")
    _line(page, 1).locator(".line-amount").fill("30.00")
    assert page.inner_text("#remaining-after") == "£20.00"
    page.fill("#note", "Payer confirmed by phone")
    page.click("#allocate-btn")
    page.wait_for_load_state("networkidle")
    assert "£20.00 remains in suspense" in page.inner_text("body")
    assert page.inner_text("#item-remaining") == "£20.00"

    # the rest to zero
    _line(page, 0).locator(".line-fund").select_option("TWS")
    _line(page, 0).locator(".line-reference").fill(tws)
    _line(page, 0).locator(".line-amount").fill("20.00")
    assert page.inner_text("#remaining-after") == "£0.00"
    page.click("#allocate-btn")
    page.wait_for_load_state("networkidle")
    assert page.inner_text("#item-remaining") == "£0.00"
    assert page.inner_text("#item-status") == "Allocated"
    assert page.locator("#allocation-form").count() == 0
    assert "Payer confirmed by phone" in page.inner_text("#item-history")
    session.expire_all()
    assert S.get_item(session, item_id).remaining_amount == 0
    assert_books_balance(session)


def _open_task(page, live_url, task_id):
    page.click("#ims-my-tasks")
    page.wait_for_load_state("networkidle")
    page.click(f"tr[data-task-id='{task_id}'] a")
    page.wait_for_load_state("networkidle")


def test_large_allocation_is_approved_by_a_manager(session, page, live_url):
    item = make_item(session, 12_345_00)
    item_id = item.id
    ref = unique("BIG")
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/suspense/{item_id}")
    _line(page, 0).locator(".line-fund").select_option("TWS")
    _line(page, 0).locator(".line-reference").fill(ref)
    _line(page, 0).locator(".line-amount").fill("12345.00")
    page.click("#allocate-btn")
    page.wait_for_load_state("networkidle")
    assert "awaits approval" in page.inner_text("body")
    assert page.inner_text("#item-remaining") == "£0.00"  # reserved
    assert "Awaiting approval" in page.inner_text("#allocations")

    session.expire_all()
    alloc = session.scalar(select(SuspenseAllocation).where(SuspenseAllocation.suspense_item_id == item_id))
    [task] = session.scalars(select(WorkflowTask).where(
        WorkflowTask.instance_id == alloc.workflow_instance_id, WorkflowTask.status == "ready")).all()
    browser_login(page, live_url, "manager")
    _open_task(page, live_url, task.id)
    assert page.inner_text("#request-amount") == "£12,345.00"
    assert ref in page.inner_text("#request-details")
    page.fill("#comment", "Remittance advice seen")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")

    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/suspense/{item_id}")
    assert "Posted" in page.inner_text("#allocations")
    assert page.inner_text("#item-status") == "Allocated"
    assert_books_balance(session)


def test_write_off_climbs_the_tiers(session, page, live_url):
    item = make_item(session, 6_000_00, days_old=90)
    item_id = item.id
    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/suspense/{item_id}")
    assert page.input_value("#wo-amount") == "6000.00"
    page.fill("#wo-reason", "Unclaimed for 90 days; payer untraceable")
    page.click("#write-off-btn")
    page.wait_for_load_state("networkidle")
    assert page.inner_text("#write-off-status") == "Awaiting approval"
    session.expire_all()
    wo = session.scalar(select(WriteOff).where(WriteOff.suspense_item_id == item_id))

    def task():
        session.expire_all()
        [t] = session.scalars(select(WorkflowTask).where(
            WorkflowTask.instance_id == wo.workflow_instance_id, WorkflowTask.status == "ready")).all()
        return t

    first = task()
    assert first.role == "Head of Finance"
    browser_login(page, live_url, "head")
    _open_task(page, live_url, first.id)
    assert page.inner_text("#request-amount") == "£6,000.00"
    page.fill("#comment", "Agreed")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")

    second = task()
    assert second.role == "Finance Manager"
    browser_login(page, live_url, "manager")
    _open_task(page, live_url, second.id)
    page.fill("#comment", "Second approval")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")

    browser_login(page, live_url, "auditor")
    page.goto(f"{live_url}/write-offs/{wo.id}")
    assert page.inner_text("#write-off-status") == "Posted"
    assert page.inner_text("#write-off-approvers") == "head, manager"
    page.goto(f"{live_url}/write-offs/?status=posted")
    assert page.locator(f"tr[data-write-off-id='{wo.id}']").count() == 1
    page.goto(f"{live_url}/suspense-report/")
    assert "reconciles" in page.inner_text("#rec-status")
    page.wait_for_selector("#suspense-age-chart[data-rendered='true']")
    assert_books_balance(session)
