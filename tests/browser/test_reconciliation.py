"""In Chromium: an Income Clerk opens the bank reconciliation of an account, confirms the
proposed match of a bag's credit with the proposals whose reference agrees (posted Dr Bank / Cr
Cash in transit) and the card settlement line with its fee on its own, sees a zero unexplained
difference and submits it; a Finance Manager signs it off (the clerk is offered no sign-off:
four eyes)."""

import datetime as dt
import random

import pytest

from app.models.cashup import ExpectedBankCredit
from app.services import reconciliation as RC
from tests.browser.test_axe_sweep import _violations
from tests.conftest import browser_login, unique

pytestmark = pytest.mark.browser


def test_clerk_matches_and_a_manager_signs_off(app, page, live_url):
    from app.extensions import db

    day = dt.date(2026, 11, 18)
    with app.app_context():
        s = db.session
        code = unique("PR", 10)
        acct = RC.save_bank_account(s, actor="admin", data={
            "code": code, "name": f"Browser account {code}", "sort_code": "30-00-00",
            "account_number": "87654321", "ledger_account_code": "1200"})
        bag = unique("BAG", 10)
        for kind, amount, fee, ref, clearing, dim in (
                (RC.BAG, 25_000, 0, bag, "CASH_IN_TRANSIT", "CIVIC"),
                (RC.CARD, 9_925, 75, f"SIM {day}", "CARD_CLEARING", "simulator")):
            s.add(ExpectedBankCredit(kind=kind, amount=amount, fee=fee, expected_date=day,
                                     reference=ref, source_id=random.randrange(1, 2**31),
                                     clearing_account=clearing, clearing_reference=dim,
                                     bank_account_id=acct.id))
        RC.add_statement(s, actor="clerk", bank_account=code, statement_date=day,
                         opening_balance=0, closing_balance=25_000 + 9_925 - 300,
                         lines=[{"date": day, "amount": 25_000, "reference": f"DEPOSIT {bag}"},
                                {"date": day, "amount": 9_925, "reference": "SIM SETTLEMENT"},
                                {"date": day, "amount": -300, "reference": "CHARGES"}])
        s.commit()
        db.session.remove()

    browser_login(page, live_url, "clerk")
    page.goto(f"{live_url}/reconciliation/?account={code}&as_of={day.isoformat()}")
    assert page.inner_text("#recon-unexplained") == "£0.00"
    assert page.locator(".recon-proposal").count() == 2
    assert _violations(page) == []  # the page with items on both sides passes axe
    # the bag's line carries its reference: confirmed with the agreed ones; the card
    # settlement's does not ("SIM SETTLEMENT"), so the clerk confirms it on its own
    assert "1 proposal(s), £250.00" in page.inner_text("#recon-confirm-agreed-form")
    page.click("#recon-confirm-agreed")
    page.wait_for_load_state("networkidle")
    assert "Confirmed 1 match(es) whose reference agrees: £250.00" in page.inner_text("body")
    assert page.locator(".recon-proposal").count() == 1
    assert page.locator("#recon-confirm-agreed").count() == 0
    page.locator(".recon-confirm").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".recon-proposal").count() == 0
    assert page.inner_text("#recon-ledger-balance") == "£349.25"
    assert page.inner_text("#recon-unexplained") == "£0.00"
    assert "£3.00" in page.inner_text("#recon-lines")  # the bank charge, explained
    page.click("#recon-prepare")
    page.wait_for_load_state("networkidle")
    assert page.locator(".recon-sign-off").count() == 0  # a clerk never signs off
    assert "Awaiting sign-off" in page.inner_text("#recon-sign-offs")

    browser_login(page, live_url, "manager")
    page.goto(f"{live_url}/reconciliation/?account={code}&as_of={day.isoformat()}")
    page.locator(".recon-sign-off").first.click()
    page.wait_for_load_state("networkidle")
    assert "Signed off" in page.inner_text("#recon-sign-offs")
