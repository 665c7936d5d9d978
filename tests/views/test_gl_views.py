"""GL export and accounting period pages: run, list, download, void; close page; roles."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.models.gl import GlExportBatch, PeriodRequest
from app.services import periods as P
from app.services.receipts import take_receipt
from tests.conftest import unique
from tests.integration.test_gl_export import flush_all


def test_run_download_and_void_from_the_page(as_user, session):
    flush_all(session)
    take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": unique("V"),
                                  "amount": "8.50"}], payment_method_code="CASH",
                 actor="cashier", transaction_date="2013-03-03")
    c = as_user("manager")
    page = c.get("/gl-exports/")
    assert page.status_code == 200 and b"gl-run-form" in page.data
    r = c.post("/gl-exports/run", data={"cut_off": "2013-03-03", "layout": "unit4_gl07"},
               follow_redirects=True)
    assert r.status_code == 200 and "control total £8.50" in r.get_data(as_text=True)
    batch = session.scalar(select(GlExportBatch).order_by(GlExportBatch.id.desc()))
    dl = c.get(f"/gl-exports/{batch.id}/download")
    assert dl.status_code == 200 and dl.data.startswith(b"batch_id,interface")
    bad = c.post("/gl-exports/run", data={"cut_off": "2999-01-01", "layout": "unit4_gl07"},
                 follow_redirects=True)
    assert "in the future" in bad.get_data(as_text=True)
    r = c.post(f"/gl-exports/{batch.id}/void", data={"reason": "test"}, follow_redirects=True)
    assert "is void" in r.get_data(as_text=True)
    a = as_user("auditor")
    page = a.get("/gl-exports/")
    assert page.status_code == 200 and b"gl-run-form" not in page.data
    assert a.get(f"/gl-exports/{batch.id}/download").status_code == 200
    assert a.post("/gl-exports/run", data={"cut_off": "2013-03-03",
                                           "layout": "unit4_gl07"}).status_code in (302, 403)
    assert as_user("clerk").get("/gl-exports/").status_code in (302, 403)


def test_close_page_and_request(as_user, session):
    c = as_user("manager")
    page = c.get("/periods/")
    assert page.status_code == 200
    detail = c.get("/periods/2013-06")
    text = detail.get_data(as_text=True)
    assert detail.status_code == 200 and "close-checks" in text and "reconciliation" in text
    r = c.post("/periods/2013-06/request", data={"action": "close", "reason": "month end"},
               follow_redirects=True)
    assert "waiting for the Head of Finance" in r.get_data(as_text=True)
    assert session.scalar(select(PeriodRequest).where(
        PeriodRequest.period_start == dt.date(2013, 6, 1))).status == "pending"
    r = c.post("/periods/2013-06/request", data={"action": "close"}, follow_redirects=True)
    assert "already waiting" in r.get_data(as_text=True)
    assert c.get("/periods/nonsense", follow_redirects=True).status_code == 200
    assert as_user("auditor").post("/periods/2013-07/request",
                                   data={"action": "close"}).status_code in (302, 403)


def test_receipt_page_says_when_it_posted_into_the_next_period(as_user, session):
    P.apply_change(session, dt.date(2013, 9, 1), "close", actor="head")
    session.commit()
    c = as_user("cashier")
    r = c.post("/receipts/new", data={
        "payment_method_code": "CASH", "transaction_date": "2013-09-09",
        "fund_code": "TWS", "account_reference": unique("W"), "amount": "2.00"},
        follow_redirects=True)
    text = r.get_data(as_text=True)
    assert "closed period 2013-09" in text and "2013-10-01" in text, text[:3000]


def test_pages_in_welsh(as_user):
    c = as_user("manager")
    c.get("/lang/cy")
    try:
        assert "Cyfanswm rheoli" in c.get("/gl-exports/").get_data(as_text=True)
        page = c.get("/periods/2013-01").get_data(as_text=True)
        assert "Cyn cau" in page and "Eitemau banc heb eu cysoni" in page
    finally:
        c.get("/lang/en")
