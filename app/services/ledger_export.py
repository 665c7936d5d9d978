"""Daily ledger export for the council's general ledger (`ims export-ledger --date D`)."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.money import Money
from app.models.ledger import LedgerLine, PostingGroup
from app.models.reference import Fund

HEADER = ["posting_group", "kind", "posted_at", "posted_by", "office", "account", "gl_code",
          "fund_code", "account_reference", "debit", "credit", "reverses"]
LONDON = ZoneInfo("Europe/London")


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The council's day (Europe/London) as a UTC interval."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=LONDON)
    end = start + dt.timedelta(days=1)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def ledger_rows(session: Session, day: dt.date, batch: int = 5000) -> Iterator[list[str]]:
    """Every ledger line posted on ``day``, in posting order, as CSV-ready rows (streamed)."""
    start, end = _day_bounds(day)
    gl = dict(session.execute(select(Fund.code, Fund.gl_code)).all())
    query = (select(PostingGroup.number, PostingGroup.kind, PostingGroup.created_at,
                    PostingGroup.created_by, PostingGroup.office_code, PostingGroup.reverses_id,
                    LedgerLine.account, LedgerLine.fund_code, LedgerLine.account_reference,
                    LedgerLine.amount)
             .join(LedgerLine, LedgerLine.group_id == PostingGroup.id)
             .where(PostingGroup.created_at >= start, PostingGroup.created_at < end)
             .order_by(PostingGroup.id, LedgerLine.id)
             .execution_options(yield_per=batch))
    numbers: dict[int, str] = {}
    for row in session.execute(query):
        reversed_number = ""
        if row.reverses_id:
            if row.reverses_id not in numbers:
                numbers[row.reverses_id] = session.scalar(
                    select(PostingGroup.number).where(PostingGroup.id == row.reverses_id)) or ""
            reversed_number = numbers[row.reverses_id]
        gl_code = gl.get(row.fund_code) if row.account == "FUND" else row.account
        yield [row.number, row.kind, row.created_at.isoformat(), row.created_by,
               row.office_code or "", row.account, gl_code or "", row.fund_code or "",
               row.account_reference or "",
               str(Money(row.amount)) if row.amount > 0 else "",
               str(Money(-row.amount)) if row.amount < 0 else "", reversed_number]


def write_ledger_csv(session: Session, day: dt.date, out) -> tuple[int, int, int]:
    """Write the day's lines to ``out``; returns (lines, total debits, total credits) in pence."""
    writer = csv.writer(out)
    writer.writerow(HEADER)
    lines = debits = credits = 0
    for row in ledger_rows(session, day):
        writer.writerow(row)
        lines += 1
        debits += Money.parse(row[9]).pence if row[9] else 0
        credits += Money.parse(row[10]).pence if row[10] else 0
    return lines, debits, credits
