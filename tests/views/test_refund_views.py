"""Refund pages: request form (errors shown, nothing posted), register with filters and CSV,
refund page with workflow history and postings, payment runs with files, notifications page."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models.refund import Refund
from tests.integration.test_refunds import approve_all, deploy_refund_workflow, make_txn, request


@pytest.fixture(autouse=True)
def _workflow(session):
    deploy_refund_workflow(session)


def test_transaction_page_links_to_request_refund_for_clerks_only(as_user, session):
    txn = make_txn(session, 5_000)
    page = as_user("clerk").get(f"/transactions/{txn.id}").get_data(as_text=True)
    assert f"/refunds/new/{txn.id}" in page and "Request refund" in page
    page = as_user("manager").get(f"/transactions/{txn.id}").get_data(as_text=True)
    assert f"/refunds/new/{txn.id}" not in page


def test_request_form_shows_errors_and_posts_nothing(as_user, session):
    txn = make_txn(session, 5_000, method="CASH")
    client = as_user("clerk")
    page = client.get(f"/refunds/new/{txn.id}").get_data(as_text=True)
    assert 'id="method-card"' in page and "disabled" in page.split('id="method-card"')[1][:80]
    resp = client.post(f"/refunds/new/{txn.id}", data={
        "amount": "60.00", "reason": "", "method": "bacs", "payee_name": "Jane Payer",
        "sort_code": "1234", "account_number": "12"})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "This is required." in text and "NN-NN-NN" in text and "exactly 8 digits" in text
    resp = client.post(f"/refunds/new/{txn.id}", data={
        "amount": "60.00", "reason": "Overpaid", "method": "cheque", "payee_name": ""})
    assert resp.status_code == 422 and "available" in resp.get_data(as_text=True)
    assert session.scalar(select(func.count(Refund.id)).where(Refund.transaction_id == txn.id)) == 0
    resp = client.post(f"/refunds/new/{txn.id}", data={
        "amount": "20.00", "reason": "Overpaid", "method": "bacs", "payee_name": "Someone Else",
        "sort_code": "12-34-56", "account_number": "12345678"})
    assert resp.status_code == 302
    refund = session.scalars(select(Refund).where(Refund.transaction_id == txn.id)).one()
    assert refund.payee_differs and refund.status == "awaiting_approval"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "awaiting approval" in page and 'id="payee-differs"' in page and "workflow-history" in page
    assert as_user("cashier").get(f"/refunds/new/{txn.id}").status_code in (302, 403)
    assert as_user("clerk").get("/refunds/new/999999999").status_code == 404


def test_register_filters_export_and_refund_page(as_user, session):
    txn = make_txn(session, 10_000)
    refund = approve_all(session, request(session, txn, "15.00", actor="clerk2"))
    assert refund.status == "paid"
    client = as_user("auditor")
    page = client.get("/refunds/?requester=clerk2&status=paid&method=card").get_data(as_text=True)
    assert f'data-refund-id="{refund.id}"' in page
    page = client.get("/refunds/?status=rejected&requester=clerk2").get_data(as_text=True)
    assert f'data-refund-id="{refund.id}"' not in page
    assert client.get("/refunds/?amount_min=1.234").status_code == 422
    csv_resp = client.get(f"/refunds/export.csv?transaction_id={txn.id}")
    assert csv_resp.status_code == 200 and csv_resp.mimetype == "text/csv"
    assert f"{refund.id}," in csv_resp.get_data(as_text=True)
    page = client.get(f"/refunds/{refund.id}").get_data(as_text=True)
    assert 'id="refund-postings"' in page and "REFUNDS_PAYABLE" in page and "CARD_CLEARING" in page
    assert "request approved" in page and f"/transactions/{txn.id}" in page
    # and the transaction page traces to the refund and its postings
    page = client.get(f"/transactions/{txn.id}").get_data(as_text=True)
    assert f"/refunds/{refund.id}" in page and "REFUNDS_PAYABLE" in page
    assert as_user("cashier").get("/refunds/").status_code in (302, 403)
    assert as_user("auditor").get("/refunds/999999999").status_code == 404


def test_payment_run_page_files_and_roles(as_user, session):
    txn = make_txn(session, 10_000, method="CHQ")
    bacs = approve_all(session, request(session, txn, "11.00", method="bacs", payee={
        "name": "Jane Payer", "sort_code": "40-11-62", "account_number": "31926819"}))
    chq = approve_all(session, request(session, txn, "4.00", method="cheque"))
    client = as_user("manager")
    page = client.get("/refund-payment-runs/").get_data(as_text=True)
    assert f'value="{bacs.id}"' in page and f'value="{chq.id}"' in page
    assert as_user("clerk").post("/refund-payment-runs/new",
                                 data={"refund_id": [bacs.id]}).status_code in (302, 403)
    session.expire_all()
    assert session.get(Refund, bacs.id).status == "approved"
    client = as_user("manager")
    resp = client.post("/refund-payment-runs/new", data={"refund_id": [bacs.id, chq.id]})
    assert resp.status_code == 302 and "/refund-payment-runs/" in resp.headers["Location"]
    session.expire_all()
    run_id = session.get(Refund, bacs.id).payment_run_id
    assert run_id and session.get(Refund, chq.id).status == "paid"
    again = client.post("/refund-payment-runs/new", data={"refund_id": [bacs.id]},
                        follow_redirects=True)
    assert "None of the selected refunds" in again.get_data(as_text=True)
    std18 = client.get(f"/refund-payment-runs/{run_id}/bacs-standard18.txt")
    lines = std18.get_data(as_text=True).split("\r\n")[:-1]
    assert std18.status_code == 200 and all(len(l) == 100 for l in lines) and lines[0][:6] == "401162"
    assert "31926819" in client.get(f"/refund-payment-runs/{run_id}/bacs.csv").get_data(as_text=True)
    cheques = client.get(f"/refund-payment-runs/{run_id}/cheques").get_data(as_text=True)
    assert "Jane Payer" in cheques and "£4.00" in cheques
    assert "4.00" in client.get(f"/refund-payment-runs/{run_id}/cheques.csv").get_data(as_text=True)
    assert as_user("auditor").get(f"/refund-payment-runs/{run_id}").status_code == 200
    assert as_user("clerk").get(f"/refund-payment-runs/{run_id}").status_code in (302, 403)


def test_notifications_page_and_count(as_user, session):
    from app.services.notifications import notify

    notify(session, ["cashier"], "Your own message", "/notifications/")
    session.commit()
    client = as_user("cashier")
    home = client.get("/notifications/").get_data(as_text=True)
    assert "Your own message" in home and 'id="ims-notifications"' in home
    note_id = int(home.split('data-id="')[1].split('"')[0])
    assert client.post("/notifications/read", data={"id": note_id}).status_code == 302
    clerk = as_user("clerk")
    assert clerk.post("/notifications/read", data={"id": note_id}).status_code == 404
    assert "Your own message" not in clerk.get("/notifications/").get_data(as_text=True)
