"""Each past day's income, summed by the worker, so the dashboard reads a month without reading
the month's transactions (app/services/income_days.py).

Derived rows, never ledger records: they can be dropped and rebuilt from income_transaction at
any time, and the dashboard never trusts one that may be stale.

- ``income_day``: per day, fund and payment method, the income's sum and number of payments
  (income: transactions that are not reallocations, of groups not reversed).
- ``income_day_receipts``: per day and set of funds, how many receipts had lines on that day in
  exactly those funds (so a user who sees some funds counts the receipts touching any of them,
  each once).
- ``income_day_summarised``: the days whose rows above are complete.
- ``income_day_change``: days whose income may have changed since they were summed. Triggers
  (below) add a row in the same transaction as any new income row (a receipt, an import, a
  backdated posting, whatever writes it) and as any reversal of a group with income; the
  dashboard reads a summarised day only while no such row names it, and the worker consumes
  the rows when it sums the days again. Inserts only, no unique key: concurrent postings never
  wait on each other here.
"""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Date, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.ddl import database_object


class IncomeDay(Model):
    __tablename__ = "income_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    fund_code: Mapped[str] = mapped_column(String(10), primary_key=True)
    payment_method_code: Mapped[str] = mapped_column(String(10), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    payments: Mapped[int] = mapped_column(Integer, nullable=False)


class IncomeDayReceipts(Model):
    __tablename__ = "income_day_receipts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    #: the funds of the receipts counted, sorted and joined with commas
    funds: Mapped[str] = mapped_column(Text, primary_key=True)
    receipts: Mapped[int] = mapped_column(Integer, nullable=False)


class IncomeDaySummarised(Model):
    __tablename__ = "income_day_summarised"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    summarised_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class IncomeDayChange(Model):
    __tablename__ = "income_day_change"
    __table_args__ = (Index("ix_income_day_change_day", "day"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, nullable=False)


@database_object
def income_day_triggers(conn) -> None:
    """A row in income_day_change for the date of every new income row and, when a group is
    reversed, for the dates of its income rows. PostgreSQL: one trigger per statement (an
    import's COPY of a chunk adds a row per date, not per transaction); SQLite: per row, adding
    a date not already waiting.

    Only SQLite may skip a date already waiting: its writers take turns, so the worker's
    transaction (which deletes the waiting rows, then sums) never has a posting between the two.
    On PostgreSQL a posting could see a row the worker has deleted but not yet committed, skip
    its own, and commit after the worker's sums were read: its day would look summed and not be.
    """
    from sqlalchemy import inspect

    if not inspect(conn).has_table("income_day_change"):
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_income_day_changed() RETURNS trigger AS $$
            BEGIN
              IF TG_TABLE_NAME = 'income_transaction' THEN
                INSERT INTO income_day_change (day)
                  SELECT DISTINCT transaction_date FROM ims_new_rows;
              ELSE
                INSERT INTO income_day_change (day)
                  SELECT DISTINCT t.transaction_date
                  FROM ims_new_rows g JOIN income_transaction t ON t.posting_group_id = g.reverses_id
                  WHERE g.reverses_id IS NOT NULL;
              END IF;
              RETURN NULL;
            END; $$ LANGUAGE plpgsql;
        """)
        for table in ("income_transaction", "posting_group"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_income_day ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_income_day AFTER INSERT ON {table}
                REFERENCING NEW TABLE AS ims_new_rows FOR EACH STATEMENT
                EXECUTE FUNCTION ims_income_day_changed()
            """)
    else:
        conn.exec_driver_sql("""
            CREATE TRIGGER IF NOT EXISTS income_transaction_income_day AFTER INSERT
            ON income_transaction BEGIN
              INSERT INTO income_day_change (day) SELECT NEW.transaction_date
              WHERE NOT EXISTS (SELECT 1 FROM income_day_change WHERE day = NEW.transaction_date);
            END
        """)
        conn.exec_driver_sql("""
            CREATE TRIGGER IF NOT EXISTS posting_group_income_day AFTER INSERT ON posting_group
            WHEN NEW.reverses_id IS NOT NULL BEGIN
              INSERT INTO income_day_change (day) SELECT DISTINCT transaction_date
              FROM income_transaction WHERE posting_group_id = NEW.reverses_id;
            END
        """)
