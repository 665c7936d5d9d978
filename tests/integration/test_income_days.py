"""The dashboard's daily sums (app/services/income_days.py): the worker sums past days once, the
dashboard reads them only while they hold, and its figures are always the ones summed from the
transactions — for all funds and for a user of some funds, after backdated receipts, receipts
across funds, reversals, and with receipts posted while the worker sums (threads, both
databases)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from app.models.fund_group import FundGroup
from app.models.income_day import IncomeDay, IncomeDayChange
from app.models.ledger import PostingGroup
from app.models.reference import Fund
from app.security import roles as R
from app.services import income_days as D
from app.services import search as S
from app.services.ledger import reverse_group
from app.services.receipts import take_receipt
from tests.conftest import unique
from tests.scope.test_fund_scope import _user

TODAY = dt.date.today()


def _day(n: int) -> str:
    return (TODAY - dt.timedelta(days=n)).isoformat()


def _receipt(session, day: int, *lines: tuple[str, str], method="CASH"):
    return take_receipt(session, payment_method_code=method, actor="cashier",
                        transaction_date=_day(day),
                        lines=[{"fund_code": f, "account_reference": "ID1", "amount": a}
                               for f, a in lines])


@pytest.fixture(scope="module")
def funds(app):
    """Funds A and B, a group holding A, and a clerk of that group."""
    from app.extensions import db
    from app.services.audit import set_actor

    with app.app_context():
        s = db.session
        set_actor("seed")
        tag = unique("", 5)
        a = Fund(code=f"DA{tag}", name=f"Day fund A {tag}", vat_code="O")
        b = Fund(code=f"DB{tag}", name=f"Day fund B {tag}", vat_code="O")
        s.add_all([a, b])
        s.flush()
        group = FundGroup(name=f"Days {tag}", funds=[a])
        s.add(group)
        s.commit()
        name = f"dayclerk{tag.lower()}"
        _user(app, s, name, [R.CLERK], [group.id])
        set_actor(None)
        out = {"A": a.code, "B": b.code, "clerk": name}
        db.session.remove()
    return out


@contextmanager
def _signed_in(app, user: str):
    """A request of ``user`` (their fund scope), leaving nothing of them in ``g`` after."""
    from flask import g
    from flask_login import login_user

    try:
        with app.test_request_context():
            login_user(app.appbuilder.sm.find_user(user))
            yield
    finally:
        for key in ("_login_user", "user", "_ims_fund_scope"):
            g.pop(key, None)


def _both(app, session, user: str | None) -> tuple[dict, dict]:
    """(dashboard with the daily sums, dashboard from the transactions) for ``user`` (None: no
    user, all funds)."""
    if user is None:
        return S.dashboard(session, TODAY), S.dashboard(session, TODAY, summaries=False)
    with _signed_in(app, user):
        return S.dashboard(session, TODAY), S.dashboard(session, TODAY, summaries=False)


def _assert_same(app, session, funds):
    for user in (None, funds["clerk"]):
        summed, live = _both(app, session, user)
        assert summed == live, user


def test_summed_days_give_the_figures_of_the_transactions(app, session, funds):
    A, B = funds["A"], funds["B"]
    _receipt(session, 3, (A, "10.00"))
    _receipt(session, 3, (A, "1.00"), (B, "2.00"))  # one receipt across both funds
    old = _receipt(session, 10, (B, "7.00"), method="CHQ")
    _receipt(session, 0, (A, "4.00"))
    _receipt(session, 35, (A, "99.00"))  # summed, but outside the dashboard's 30 days
    assert D.summarise(session, TODAY) >= 3
    held = set(D.split(session, TODAY - dt.timedelta(days=29), TODAY))
    assert {TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=10)} <= held
    assert TODAY not in held  # today is always summed from its transactions
    row = session.get(IncomeDay, (TODAY - dt.timedelta(days=3), A, "CASH"))
    assert (row.amount, row.payments) == (11_00, 2)
    _assert_same(app, session, funds)

    # the clerk of A counts the receipt across A and B once, and sees none of B's money
    with _signed_in(app, funds["clerk"]):
        mine = S.dashboard(session, TODAY)
    assert {r["code"] for r in mine["month_by_fund"]} == {A}
    assert mine["month_total"] == 10_00 + 1_00 + 4_00
    assert mine["month_receipts"] == 3 and mine["today_receipts"] == 1

    # a backdated receipt and a reversal change summed days: the dashboard sums those days from
    # the transactions until the worker sums them again, and is right throughout
    before, _ = _both(app, session, None)
    _receipt(session, 3, (B, "5.00"))
    reverse_group(session, session.get(PostingGroup, old.group.id), actor="manager",
                  reason="keyed twice")
    session.commit()
    held = set(D.split(session, TODAY - dt.timedelta(days=29), TODAY))
    assert not {TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=10)} & held
    after, _ = _both(app, session, None)
    assert after["month_total"] - before["month_total"] == 5_00 - 7_00
    assert after["month_receipts"] == before["month_receipts"]  # one more, one reversed
    _assert_same(app, session, funds)
    D.summarise(session, TODAY)
    held = set(D.split(session, TODAY - dt.timedelta(days=29), TODAY))
    assert {TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=10)} <= held
    assert session.scalar(select(func.count()).select_from(IncomeDayChange)) == 0
    _assert_same(app, session, funds)
    assert _both(app, session, None)[0] == after


def test_the_dashboard_reads_the_sums_of_the_days_that_hold(app, session, funds):
    """A summed day's figures come from income_day (a row changed by hand shows), and a day
    whose income changed since does not (the change's row sends it back to the transactions)."""
    A = funds["A"]
    _receipt(session, 20, (A, "3.00"), method="CARD")
    D.summarise(session, TODAY)
    day = TODAY - dt.timedelta(days=20)
    true = S.dashboard(session, TODAY)["month_total"]
    session.get(IncomeDay, (day, A, "CARD")).amount += 1_000_000
    session.commit()
    assert S.dashboard(session, TODAY)["month_total"] == true + 1_000_000
    session.add(IncomeDayChange(day=day))  # as the triggers write for a posting to that day
    session.commit()
    assert S.dashboard(session, TODAY)["month_total"] == true
    D.summarise(session, TODAY)  # sums the day again: the hand-made figure is gone
    assert S.dashboard(session, TODAY)["month_total"] == true
    assert session.get(IncomeDay, (day, A, "CARD")).amount < 1_000_000


def test_receipts_posted_while_the_worker_sums_are_all_counted(app, session, funds):
    """Four cashiers post receipts to past days of the month while the worker sums days over
    and over: no receipt is lost from, or counted twice in, the dashboard, before and after the
    worker's last run."""
    from app.extensions import db

    A, B = funds["A"], funds["B"]
    D.summarise(session, TODAY)
    before = S.dashboard(session, TODAY, summaries=False)
    stop = threading.Event()
    errors: list[str] = []

    def cashier(seed: int):
        rng = random.Random(seed)
        with app.app_context():
            try:
                for _ in range(12):
                    _receipt(db.session, rng.randint(1, 25), (rng.choice((A, B)), "1.00"))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            finally:
                db.session.remove()

    def worker():
        with app.app_context():
            try:
                while not stop.is_set():
                    D.summarise(db.session, TODAY)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            finally:
                db.session.remove()

    sums = threading.Thread(target=worker)
    sums.start()
    cashiers = [threading.Thread(target=cashier, args=(i,)) for i in range(4)]
    for t in cashiers:
        t.start()
    for t in cashiers:
        t.join(180)
    stop.set()
    sums.join(60)
    assert not errors, errors
    session.expire_all()
    for label in ("before the worker's last run", "after it"):
        summed = S.dashboard(session, TODAY)
        assert summed == S.dashboard(session, TODAY, summaries=False), label
        assert summed["month_total"] - before["month_total"] == 48 * 100, label
        assert summed["month_receipts"] - before["month_receipts"] == 48, label
        D.summarise(session, TODAY)
