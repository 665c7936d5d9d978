"""Accounting periods: closing (Head of Finance approval, four-eyes), postings into a closed
period go to the first open one (and say so), an explicit date in a closed period is refused,
reopening, and no close while a posting into the period is in flight — on both databases."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import func, select

from app.domain.errors import Conflict, Forbidden, ValidationError
from app.models.gl import AccountingPeriod, PeriodRequest
from app.models.ledger import PostingGroup
from app.models.workflow import WorkflowTask
from app.services import imports as IM
from app.services import ledger as L
from app.services import periods as P
from app.services import workflow as wf
from app.services.receipts import take_receipt
from tests.conftest import unique
from tests.integration.test_imports import _receive


def close(session, month: str, actor="head"):
    P.apply_change(session, P.parse_period(month), "close", actor=actor, requested_by="manager")
    session.commit()


def reopen(session, month: str):
    P.apply_change(session, P.parse_period(month), "reopen", actor="head", reason="test")
    session.commit()


def receipt(session, date: str, amount="10.00", **kw):
    return take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": unique("P"),
                                         "amount": amount}],
                        payment_method_code="CASH", actor="cashier", transaction_date=date, **kw)


def ready_task(session, req_id):
    session.expire_all()
    req = session.get(PeriodRequest, req_id)
    return session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == req.workflow_instance_id, WorkflowTask.status == "ready"))


def test_receipt_dated_in_a_closed_period_posts_on_the_first_open_day(session):
    close(session, "2003-05")
    close(session, "2003-06")
    result = receipt(session, "2003-05-10")
    assert result.accounting_date == dt.date(2003, 7, 1)
    assert result.transactions[0].transaction_date == dt.date(2003, 5, 10)
    assert "2003-05-10" in result.period_message and "2003-07-01" in result.period_message
    ok = receipt(session, "2003-04-30")
    assert ok.accounting_date == dt.date(2003, 4, 30) and ok.period_message is None


def test_explicit_accounting_date_in_a_closed_period_is_refused(session):
    close(session, "2003-09")
    before = session.scalar(select(func.count()).select_from(PostingGroup))
    with pytest.raises(ValidationError) as exc:
        receipt(session, "2003-09-03", accounting_date="2003-09-03")
    assert "accounting_date" in exc.value.errors
    assert "closed period" in exc.value.message
    assert session.scalar(select(func.count()).select_from(PostingGroup)) == before
    ok = receipt(session, "2003-09-03", accounting_date="2003-10-01")
    assert ok.accounting_date == dt.date(2003, 10, 1)


def test_corrections_post_on_todays_date_or_the_next_open_period(session):
    """Reversals (and journals, refunds, write-offs: all through ledger.post_group) use the
    posting date; with this month closed they go to the first day of next month."""
    result = receipt(session, dt.date.today().isoformat())
    this_month = dt.date.today().replace(day=1)
    P.apply_change(session, this_month, "close", actor="head")
    session.commit()
    try:
        rev = L.reverse_group(session, result.group, actor="clerk", reason="wrong fund")
        session.commit()
        assert rev.accounting_date == P.next_month(this_month)
        assert P.moved_message(rev.requested_accounting_date, rev.accounting_date)
    finally:
        reopen(session, this_month.isoformat())


def test_close_twice_and_other_bad_requests(session):
    close(session, "2004-01")
    with pytest.raises(Conflict, match="already closed"):
        close(session, "2004-01")
    with pytest.raises(Conflict, match="already closed"):
        P.request_change(session, "2004-01", "close", actor="manager")
    with pytest.raises(ValidationError, match="has not ended"):
        P.request_change(session, dt.date.today().strftime("%Y-%m"), "close", actor="manager")
    with pytest.raises(ValidationError, match="YYYY-MM"):
        P.request_change(session, "Jan 2004", "close", actor="manager")
    with pytest.raises(Conflict, match="only a closed period"):
        P.request_change(session, "2004-02", "reopen", actor="manager", reason="x")
    with pytest.raises(ValidationError, match="reason"):
        P.request_change(session, "2004-01", "reopen", actor="manager")


def test_close_and_reopen_through_the_head_of_finance(session):
    req = P.request_change(session, "2004-03", "close", actor="manager", reason="month end")
    assert req.status == "pending" and req.workflow_instance_id
    with pytest.raises(Conflict, match="already waiting"):
        P.request_change(session, "2004-03", "close", actor="manager2")
    task = ready_task(session, req.id)
    assert task.role == "Head of Finance"
    with pytest.raises(Forbidden):
        wf.complete_task(session, task.id, "manager", "approve", "mine")
    wf.complete_task(session, task.id, "head", "approve", "checked")
    session.expire_all()
    assert session.get(AccountingPeriod, dt.date(2004, 3, 1)).status == "closed"
    assert session.get(PeriodRequest, req.id).status == "approved"
    assert receipt(session, "2004-03-15").accounting_date == dt.date(2004, 4, 1)
    # reopening: also the Head of Finance's approval
    again = P.request_change(session, "2004-03", "reopen", actor="manager", reason="late invoice")
    wf.complete_task(session, ready_task(session, again.id).id, "head", "approve", "ok")
    session.expire_all()
    assert session.get(AccountingPeriod, dt.date(2004, 3, 1)).status == "open"
    assert receipt(session, "2004-03-15").accounting_date == dt.date(2004, 3, 15)
    from app.models.audit import AuditEvent

    actions = set(session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity == "AccountingPeriod", AuditEvent.entity_id == "2004-03")))
    assert {"period.close_request", "period.closed", "period.reopen_request",
            "period.reopened"} <= actions


def test_requester_who_is_head_of_finance_cannot_approve(session):
    req = P.request_change(session, "2004-05", "close", actor="head")
    task = ready_task(session, req.id)
    with pytest.raises(Forbidden, match="four-eyes"):
        wf.complete_task(session, task.id, "head", "approve", "self")
    session.rollback()
    assert session.get(PeriodRequest, req.id).status == "pending"


def test_import_rows_dated_in_a_closed_period_go_to_the_next_open_one(app, session):
    close(session, "2005-02")
    tag = unique("Y", 7)
    csv_text = ("transaction_date,account_reference,amount,narrative,fund_code\n"
                f"2005-02-14,{tag}1,12.34,closed,TWS\n"
                f"2005-03-02,{tag}2,5.00,open,TWS\n")
    batch = IM.process_import(session, _receive(app, session, csv_text).id, actor="clerk")
    assert batch.status == "succeeded", batch.errors_json
    dates = dict(session.execute(select(PostingGroup.number, PostingGroup.accounting_date)
                                 .where(PostingGroup.import_id == batch.id)).all())
    assert sorted(dates.values()) == [dt.date(2005, 3, 1), dt.date(2005, 3, 2)]


def test_no_close_while_a_posting_into_the_period_is_in_flight(app, session):
    """A posting holds the period (PostgreSQL: shared advisory lock; SQLite: the write lock)
    until it commits; the close waits for it, and the next posting goes to the next period."""
    from app.extensions import db

    events: list[str] = []
    posted = threading.Event()
    groups: dict[str, int] = {}

    def posting():
        with app.app_context():
            try:
                s = db.session
                g = L.post_group(s, "receipt", [L.Leg(L.BANK, 500), L.Leg(L.FUND, -500, "TWS", "X")],
                                 actor="cashier", accounting_date=dt.date(2006, 8, 20))
                groups["first"] = g.id
                posted.set()
                time.sleep(1.0)
                events.append("posting committed")
                s.commit()
            finally:
                posted.set()
                db.session.remove()

    def closing():
        with app.app_context():
            try:
                posted.wait(30)
                P.apply_change(db.session, dt.date(2006, 8, 1), "close", actor="head")
                db.session.commit()
                events.append("period closed")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=posting), threading.Thread(target=closing)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert events == ["posting committed", "period closed"]
    session.expire_all()
    assert session.get(PostingGroup, groups["first"]).accounting_date == dt.date(2006, 8, 20)
    later = L.post_group(session, "receipt", [L.Leg(L.BANK, 500), L.Leg(L.FUND, -500, "TWS", "X")],
                         actor="cashier", accounting_date=dt.date(2006, 8, 21))
    session.commit()
    assert later.accounting_date == dt.date(2006, 9, 1)
