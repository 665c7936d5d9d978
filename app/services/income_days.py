"""Past days' income summed once, so the dashboard's month costs a few dozen summary rows and
today's transactions, not the month's transactions (app/models/income_day.py).

``summarise`` (a worker job, every tick) sums each day of the last ``WINDOW_DAYS`` before
today that is not summarised yet or has changed since (``income_day_change``, filled by
triggers), all funds at once. ``split`` tells the dashboard which days of its window it may read
from the summaries: those summarised with no change waiting. Every other day (today always, and
any day a backdated posting, an import or a reversal touched since the worker last ran) the
dashboard sums from the transactions as before, so its figures are exact whether or not the
worker keeps up; the worker only makes them cheap.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable

from sqlalchemy import and_, delete, exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from app.models.base import utcnow
from app.models.income_day import IncomeDay, IncomeDayChange, IncomeDayReceipts, IncomeDaySummarised
from app.models.ledger import PostingGroup, Transaction

#: days before today kept summed: the dashboard's 30 and a margin
WINDOW_DAYS = 40
_SUMMARY_TABLES = (IncomeDay.__table__, IncomeDayReceipts.__table__, IncomeDaySummarised.__table__)


def income_conditions(*conditions) -> tuple:
    """Money in (receipts and imports), not reallocations, not reversed, and ``conditions``."""
    rev = aliased(PostingGroup)
    return (Transaction.source_transaction_id.is_(None),
            # "IS NOT NULL" lets PostgreSQL build a hash of the few reversals from the partial
            # index uq_posting_group_reverses_id and anti-join the window's rows against it
            # (18 ms for 41,000 rows at 1M) instead of probing the index once per row (53 ms)
            ~exists(select(rev.id).where(rev.reverses_id == Transaction.posting_group_id,
                                         rev.reverses_id.is_not(None))),
            *conditions)


def receipt_condition():
    """A receipt's income: its number has the receipt prefix (ledger.post_group numbers every
    receipt from PREFIXES["receipt"]; no other kind uses that prefix)."""
    from app.services.ledger import PREFIXES

    return Transaction.receipt_number.like(PREFIXES["receipt"] + "%")


def days_condition(column, days: Collection[dt.date]):
    """``column`` in ``days``: one range when they run without a gap (an index range scan)."""
    days = sorted(days)
    if days and (days[-1] - days[0]).days == len(days) - 1:
        return and_(column >= days[0], column <= days[-1])
    return column.in_(days)


def split(session: Session, date_from: dt.date, today: dt.date) -> list[dt.date]:
    """The days of [date_from, today) whose summaries hold: summarised, and not changed since
    (in one statement, so one snapshot answers both)."""
    S, C = IncomeDaySummarised, IncomeDayChange
    return list(session.scalars(
        select(S.day).where(S.day >= date_from, S.day < today,
                            ~exists(select(C.id).where(C.day == S.day)))))


def summed(session: Session, days: Collection[dt.date], fund_codes: frozenset[str] | None
           ) -> tuple[list[tuple[str, str, int, int]], int]:
    """For ``days`` (summarised): (fund, method, amount, payments) rows, and the number of
    receipts with a line in ``fund_codes`` (None: any fund)."""
    if not days:
        return [], 0
    D, R = IncomeDay, IncomeDayReceipts
    stmt = (select(D.fund_code, D.payment_method_code, func.sum(D.amount), func.sum(D.payments))
            .where(days_condition(D.day, days))
            .group_by(D.fund_code, D.payment_method_code))
    if fund_codes is not None:
        stmt = stmt.where(D.fund_code.in_(sorted(fund_codes)))
    rows = [(f, m, int(a or 0), int(n or 0)) for f, m, a, n in session.execute(stmt)]
    receipts = 0
    for funds, count in session.execute(select(R.funds, func.sum(R.receipts))
                                        .where(days_condition(R.day, days)).group_by(R.funds)):
        if fund_codes is None or not fund_codes.isdisjoint(funds.split(",")):
            receipts += int(count or 0)
    return rows, receipts


def summarise(session: Session, today: dt.date | None = None) -> int:
    """Sum every day of the window not summed, or changed since it was; commit. Returns the
    number of days summed."""
    today = today or dt.date.today()
    start = today - dt.timedelta(days=WINDOW_DAYS)
    C, S = IncomeDayChange.__table__, IncomeDaySummarised.__table__
    # the changes seen now are consumed (a posting not yet committed keeps its row for later);
    # the days are summed below from a later snapshot, which holds every consumed change
    changed = set(session.scalars(delete(C).returning(C.c.day)))
    done = set(session.scalars(select(S.c.day).where(S.c.day >= start, S.c.day < today)))
    window = {start + dt.timedelta(days=k) for k in range(WINDOW_DAYS)}
    todo = sorted((window - done) | (changed & window))
    outside = changed - window  # today or later, or older: no longer trusted if summed before
    for table in _SUMMARY_TABLES:
        session.execute(delete(table).where(table.c.day < start))
        for chunk in _chunks(sorted(outside | set(todo)), 500):
            session.execute(delete(table).where(table.c.day.in_(chunk)))
    for chunk in _chunks(todo, 500):
        _sum_days(session, chunk)
    session.commit()
    return len(todo)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _sum_days(session: Session, days: list[dt.date]) -> None:
    T = Transaction
    in_days = days_condition(T.transaction_date, days)
    session.execute(insert(IncomeDay.__table__).from_select(
        ["day", "fund_code", "payment_method_code", "amount", "payments"],
        select(T.transaction_date, T.fund_code, T.payment_method_code, func.sum(T.amount),
               func.count())
        .where(*income_conditions(in_days))
        .group_by(T.transaction_date, T.fund_code, T.payment_method_code)))
    funds: dict[tuple[dt.date, int], set[str]] = {}
    for day, group_id, fund in session.execute(
            select(T.transaction_date, T.posting_group_id, T.fund_code).distinct()
            .where(*income_conditions(in_days, receipt_condition()))):
        funds.setdefault((day, group_id), set()).add(fund)
    counts = Counter((day, ",".join(sorted(codes))) for (day, _), codes in funds.items())
    if counts:
        session.execute(insert(IncomeDayReceipts.__table__), [
            {"day": day, "funds": key, "receipts": n} for (day, key), n in sorted(counts.items())])
    now = utcnow()
    session.execute(insert(IncomeDaySummarised.__table__),
                    [{"day": day, "summarised_at": now} for day in days])


def _job() -> str | None:
    from app.extensions import db

    n = summarise(db.session)
    return f"{n} day(s) summed" if n else None


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("income-days", _job)


_register_job()
