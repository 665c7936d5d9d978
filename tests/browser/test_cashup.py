"""In Chromium: a cashier cashes up their till (counts by denomination, lists a cheque, sees the
over/short as they type, enters the bag number), a Finance Manager approves it from their task
list, and the ledger balances with the office's Cash in hand emptied into Cash in transit."""

import datetime as dt
import re

import pytest
from sqlalchemy import select

from app.models.cashup import CashUp
from app.models.reference import Office
from app.services import ledger as L
from app.services.receipts import take_receipt
from tests.conftest import browser_login, unique

pytestmark = pytest.mark.browser


def test_cashier_cashes_up_and_a_manager_approves(app, page, live_url):
    from app.extensions import db

    office = unique("P", 8)
    with app.app_context():
        s = db.session
        s.add(Office(code=office, name=f"Browser office {office}"))
        s.commit()
        for amount, method in (("15.00", "CASH"), ("2.37", "CASH"), ("40.00", "CHQ")):
            take_receipt(s, payment_method_code=method, actor="cashier", office_code=office,
                         lines=[{"fund_code": "TWS", "account_reference": unique("W"),
                                 "amount": amount}])
        db.session.remove()
    bag = unique("PB", 10)

    browser_login(page, live_url, "cashier")
    page.goto(f"{live_url}/cash-ups/")
    page.click("#cash-up-till")
    page.wait_for_load_state("networkidle")
    page.select_option("#till-office", office)
    page.click("#show-till")
    page.wait_for_load_state("networkidle")
    assert page.inner_text("#till-cash") == "£17.37" and page.inner_text("#till-cheques") == "£40.00"
    page.fill("#d-1000", "1")
    page.fill("#d-500", "1")
    page.fill("#d-200", "1")
    page.fill("#d-20", "1")
    page.fill("#d-10", "1")
    page.fill("#d-5", "1")
    page.fill("input[name=c0_drawer]", "G Rees")
    page.fill("input[name=c0_sort_code]", "30-40-50")
    page.fill("input[name=c0_cheque_number]", "004411")
    page.fill("input[name=c0_amount]", "40.00")
    # £17.35 counted against £17.37 receipted: 2p short, shown as they type
    assert page.inner_text("#variance") == "-0.02"
    page.fill("#d-2", "1")
    assert page.inner_text("#variance") == "0.00"
    assert page.inner_text("#counted") == "57.37"
    page.fill("#bag-number", bag)
    page.click("#submit-cash-up")
    page.wait_for_load_state("networkidle")
    assert "submitted for approval" in page.inner_text("body")
    number = page.inner_text("h1").split()[-1]
    cash_up_id = int(page.url.rstrip("/").split("/")[-1])
    page.click("#banking-summary")
    page.wait_for_load_state("networkidle")
    assert bag in page.inner_text("#banking-bag") and "57.37" in page.inner_text("#banking-total")

    browser_login(page, live_url, "manager")
    page.click("#ims-my-tasks")
    page.wait_for_load_state("networkidle")
    row = page.locator("#task-list tr", has_text=re.compile(rf"Cash-up {cash_up_id}\b"))
    assert row.count() == 1
    row.locator("a").first.click()
    page.wait_for_load_state("networkidle")
    assert number in page.inner_text("body") and bag in page.inner_text("body")
    page.fill("#comment", "Bag checked")
    page.click("#approve-btn")
    page.wait_for_load_state("networkidle")
    assert "Approved:" in page.inner_text("body")

    with app.app_context():
        s = db.session
        cu = s.scalar(select(CashUp).where(CashUp.bag_number == bag))
        assert cu.status == "approved" and cu.decided_by == "manager"
        assert L.balance_of(s, L.CASH_IN_HAND, account_reference=office) == 0
        assert L.balance_of(s, L.CASH_IN_TRANSIT, account_reference=office) == 5737
        assert L.trial_balance(s)["balanced"] and L.unbalanced_groups(s) == []
        assert cu.till_date == dt.date.today()
        db.session.remove()
