"""Cash-up pages: the till by method, the count form (errors shown, nothing saved), the cash-up
page, the banking summary, correction after a rejection, voiding, template rows (Administrator)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.models.cashup import CashUp, CashUpTemplateRow
from app.models.reference import Office
from app.services import cashups as CU
from app.services import workflow as wf
from app.services.receipts import take_receipt
from tests.conftest import unique

def _today() -> str:
    """Today, when asked (a value fixed at import goes stale when the run passes midnight)."""
    return dt.date.today().isoformat()


@pytest.fixture
def office(session):
    code = unique("V", 8)
    session.add(Office(code=code, name=f"View office {code}"))
    session.commit()
    return code


def _receipt(session, office, amount, method="CASH"):
    take_receipt(session, payment_method_code=method, actor="cashier", office_code=office,
                 lines=[{"fund_code": "TWS", "account_reference": unique("W"), "amount": amount}])


def _form(office, **kw):
    data = {"office_code": office, "till_date": _today(), "bag_number": unique("VB", 10),
            "cheque_rows": "6"}
    data.update(kw)
    return data


def test_cash_up_form_page_detail_and_banking_summary(as_user, session, office):
    _receipt(session, office, "12.50")
    _receipt(session, office, "30.00", method="CHQ")
    client = as_user("cashier")
    page = client.get(f"/cash-ups/new?office_code={office}&till_date={_today()}").get_data(as_text=True)
    assert 'id="till-by-method"' in page and "12.50" in page and "30.00" in page
    assert 'name="d_50.00"' in page and 'name="d_0.01"' in page and "ims/cashup.js" in page
    before = session.scalar(select(func.count(CashUp.id)))
    # bad input: a negative count and a cheque without a sort code; shown, nothing saved
    resp = client.post("/cash-ups/new", data=_form(office, **{
        "d_10.00": "-1", "c0_drawer": "C Price", "c0_cheque_number": "123", "c0_amount": "30.00"}))
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert "A count cannot be negative." in text and "Give the sort code." in text
    assert 'value="C Price"' in text  # what was typed is kept
    assert session.scalar(select(func.count(CashUp.id))) == before
    # good input
    resp = client.post("/cash-ups/new", data=_form(office, **{
        "d_10.00": "1", "d_2.00": "1", "d_0.50": "1", "c0_drawer": "C Price",
        "c0_sort_code": "20-30-40", "c0_cheque_number": "123", "c0_amount": "30.00"}))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    cu = session.scalar(select(CashUp).where(CashUp.office_code == office))
    page = client.get(f"/cash-ups/{cu.id}").get_data(as_text=True)
    assert cu.number in page and 'id="void-form"' in page and "42.50" in page
    summary = client.get(f"/cash-ups/{cu.id}/banking").get_data(as_text=True)
    assert cu.bag_number in summary and "20-30-40" in summary and "42.50" in summary
    assert "data-ims-print" in summary
    # listed for the cashier, the managers and the Auditor; not for a clerk
    assert f'data-cash-up-id="{cu.id}"' in client.get("/cash-ups/").get_data(as_text=True)
    assert f'data-cash-up-id="{cu.id}"' in as_user("auditor").get("/cash-ups/").get_data(as_text=True)
    assert as_user("clerk").get("/cash-ups/").status_code in (302, 403)
    # an Auditor sees no void form
    assert 'id="void-form"' not in as_user("auditor").get(f"/cash-ups/{cu.id}").get_data(as_text=True)


def test_returned_cash_up_is_corrected_in_the_page(as_user, session, office):
    _receipt(session, office, "5.00")
    cu = CU.submit_cash_up(session, actor="cashier", data={
        "office_code": office, "bag_number": unique("VR", 10), "denominations": {"1.00": 4},
        "variance_reason": "short"})
    task = wf.tasks_for_user(session, "manager")
    task = [t for t in task if t.instance_id == cu.workflow_instance_id][0]
    wf.complete_task(session, task.id, "manager", "reject", "Count again please")
    client = as_user("cashier")
    page = client.get(f"/cash-ups/{cu.id}").get_data(as_text=True)
    assert 'id="correct-cash-up"' in page
    form = client.get(f"/cash-ups/{cu.id}/correct").get_data(as_text=True)
    assert "Count again please" in form and 'value="4"' in form
    resp = client.post(f"/cash-ups/{cu.id}/correct", data=_form(office, **{
        "d_5.00": "1", "bag_number": cu.bag_number}))
    assert resp.status_code == 302
    session.expire_all()
    assert session.get(CashUp, cu.id).status == "submitted"
    assert session.get(CashUp, cu.id).variance == 0


def test_void_from_the_page(as_user, session, office):
    _receipt(session, office, "2.00")
    cu = CU.submit_cash_up(session, actor="cashier", data={
        "office_code": office, "bag_number": unique("VV", 10), "denominations": {"2.00": 1}})
    client = as_user("cashier")
    client.post(f"/cash-ups/{cu.id}/void", data={"reason": ""})
    session.expire_all()
    assert session.get(CashUp, cu.id).status == "submitted"
    client.post(f"/cash-ups/{cu.id}/void", data={"reason": "counted at the wrong office"})
    session.expire_all()
    assert session.get(CashUp, cu.id).status == "voided"


def test_template_rows_are_reference_data_for_the_administrator(as_user, session, office):
    from app.models.reference import Fund

    office_id = session.scalar(select(Office.id).where(Office.code == office))
    fund_id = session.scalar(select(Fund.id).where(Fund.code == "TWS"))
    resp = as_user("admin").post("/cashuptemplaterowview/add", data={
        "office": office_id, "description": "Car park machine 7", "fund": fund_id,
        "account_reference": "CP7", "sort_order": "1"})
    assert resp.status_code in (200, 302)
    row = session.scalar(select(CashUpTemplateRow).where(CashUpTemplateRow.office_code == office))
    assert row is not None and row.account_reference == "CP7"
    assert as_user("cashier").post("/cashuptemplaterowview/add", data={
        "office": office_id, "description": "Nope", "fund": fund_id}).status_code in (302, 403, 404)
    assert session.scalar(select(func.count(CashUpTemplateRow.id)).where(
        CashUpTemplateRow.description == "Nope")) == 0
    _receipt(session, office, "1.00")
    page = as_user("cashier").get(f"/cash-ups/new?office_code={office}").get_data(as_text=True)
    assert "Car park machine 7" in page and f'name="t_{row.id}"' in page
