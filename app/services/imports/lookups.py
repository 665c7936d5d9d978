"""The database look-ups of a chunk, by its rows' references: account holders (and their stops)
and possible duplicates of rows that earlier imports posted."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.money import gbp
from app.models.imports import ImportBatch
from app.models.ledger import Transaction

if TYPE_CHECKING:
    from app.services.imports.rows import Decision

#: possible duplicates kept on a batch at most
MAX_DUPLICATES = 500


def is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def pg_array(values) -> str:
    """A PostgreSQL array literal of text values, for CAST(... AS varchar[]): built in one
    join, where psycopg's list adapter works element by element."""
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') if ('"' in v or "\\" in v) else v
              for v in values]
    return '{"' + '","'.join(quoted) + '"}' if quoted else "{}"


def pg_rows(session: Session, sql: str, params: dict) -> list[tuple]:
    """Run a query on the session's psycopg connection (its transaction) unprepared, so it is
    planned for these parameter values every time. psycopg prepares a statement run 5+ times,
    and PostgreSQL may then keep a generic plan made while the tables were small (full scans
    per reference, seconds a chunk). Scoped to these queries: forcing custom plans for the
    whole transaction would re-plan every foreign-key and balance-trigger check as well."""
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute(sql, params, prepare=False)
        return cur.fetchall()


def in_batches(session: Session, sql: str, values: list, extra: tuple = ()) -> list[tuple]:
    """SQLite: rows of ``sql`` with its IN ({}) list filled from ``values``, 900 at a time, run
    on the driver (no statement compiled per batch of references)."""
    conn = session.connection()
    out = []
    for i in range(0, len(values), 900):
        part = values[i:i + 900]
        out.extend(conn.exec_driver_sql(sql.format(", ".join("?" * len(part))),
                                        (*part, *extra)).all())
    return out


# PostgreSQL look-ups by the chunk's references: arrays joined with unnest(), run unprepared
# (see pg_rows). An IN list of 900 bind parameters would, once prepared, get a generic plan that
# compares every row with every parameter.
# Possible duplicates: one probe of the (reference, date, amount) index per key. By reference
# alone, a reference paid often (council tax, every month) fetches all its earlier payments for
# every chunk. OFFSET 0 keeps the probe per key: flattened into a join, PostgreSQL may prefer a
# full scan of the table for every chunk when earlier imports are few.
_PG_DUP_TX = (
    "SELECT x.transaction_date, x.account_reference, x.amount, x.import_id "
    "FROM unnest(CAST(%(dates)s AS date[]), CAST(%(refs)s AS varchar[]), "
    "CAST(%(amounts)s AS bigint[])) AS k(d, ref, amount) CROSS JOIN LATERAL ("
    "SELECT t.transaction_date, t.account_reference, t.amount, t.import_id "
    "FROM income_transaction t WHERE t.account_reference = k.ref "
    "AND t.transaction_date = k.d AND t.amount = k.amount OFFSET 0) AS x "
    "WHERE x.import_id IS NOT NULL AND x.import_id <> %(bid)s")
_PG_DUP_SUSP = (
    "SELECT x.transaction_date, x.reference_text, x.amount, x.import_id "
    "FROM unnest(CAST(%(dates)s AS date[]), CAST(%(refs)s AS varchar[]), "
    "CAST(%(amounts)s AS bigint[])) AS k(d, ref, amount) CROSS JOIN LATERAL ("
    "SELECT s.transaction_date, s.reference_text, s.amount, s.import_id "
    "FROM suspense_item s WHERE s.reference_text = k.ref "
    "AND s.transaction_date = k.d AND s.amount = k.amount OFFSET 0) AS x "
    "WHERE x.import_id IS NOT NULL AND x.import_id <> %(bid)s")
_PG_ACCOUNTS = (
    "SELECT a.fund_code, a.account_reference, a.stop_message "
    "FROM account_holder a JOIN unnest(CAST(%(refs)s AS varchar[])) AS r(ref) "
    "ON a.account_reference = r.ref")


def account_stops(session: Session, references: list[str]) -> dict[tuple[str, str], str | None]:
    """(fund code, reference) -> stop message (None: not on stop) of the account holders with
    these references, in any fund."""
    if is_pg(session):
        return {(fc, ref): stop for fc, ref, stop in pg_rows(
            session, _PG_ACCOUNTS, {"refs": pg_array(references)})}
    return {(fc, ref): stop for fc, ref, stop in in_batches(
        session, "SELECT fund_code, account_reference, stop_message "
        "FROM account_holder WHERE account_reference IN ({})", references)}


def find_duplicates(session: Session, batch_id: int, decisions: list[Decision]) -> list[dict]:
    """Rows whose date+reference+amount was imported earlier (by another import)."""
    if not decisions or not _earlier_imports_cover(
            session, batch_id, min(d.transaction_date for d in decisions),
            max(d.transaction_date for d in decisions)):
        return []
    tx_keys = {(d.transaction_date, d.reference[:30], d.amount) for d in decisions if d.reference}
    raw_keys = {(d.transaction_date, d.raw_reference.strip()[:200], d.amount) for d in decisions}
    found: set[tuple] = set()
    _collect_duplicates(session, batch_id, tx_keys, raw_keys, found)
    if not found:
        return []
    keys: dict[tuple, list[Decision]] = {}
    for d in decisions:
        keys.setdefault((d.transaction_date, d.reference[:30], d.amount), []).append(d)
        keys.setdefault((d.transaction_date, d.raw_reference.strip()[:200], d.amount), []).append(d)
    out, seen = [], set()
    for (d_, r_, a_, imp) in found:
        for d in keys.get((d_, r_, a_), []):
            if d.line not in seen:
                seen.add(d.line)
                out.append({"line": d.line, "message": f"Possible duplicate: {d_} {r_} "
                            f"{gbp(a_)} was imported before (import {imp})."})
    return sorted(out, key=lambda x: x["line"])


def _earlier_imports_cover(session: Session, batch_id: int, first: date, last: date) -> bool:
    """Whether another import that has posted rows may hold these dates (an import received
    before its dates were recorded counts as covering every date)."""
    t = ImportBatch.__table__
    return session.execute(select(t.c.id).where(
        t.c.id != batch_id, t.c.rows_done > 0,
        t.c.first_date.is_(None) | ((t.c.first_date <= last) & (t.c.last_date >= first)))
        .limit(1)).first() is not None


def _collect_duplicates(session, batch_id, tx_keys, raw_keys, found) -> None:
    """Earlier imports' transactions matching tx_keys and suspense items matching raw_keys,
    as (date, reference, amount, import id); keys are (date, reference, amount)."""
    if is_pg(session):
        for sql, keys in ((_PG_DUP_TX, tx_keys), (_PG_DUP_SUSP, raw_keys)):
            if keys:
                dates, refs, amounts = zip(*keys, strict=True)
                iso = {d: d.isoformat() for d in set(dates)}
                params = {"dates": "{" + ",".join([iso[d] for d in dates]) + "}",
                          "refs": pg_array(refs), "amounts": "{" + ",".join(map(str, amounts)) + "}",
                          "bid": batch_id}
                for row in pg_rows(session, sql, params):
                    found.add(tuple(row))
        return
    # SQLite keeps dates as text: keys go in as stored, rows come back as the ORM reads them
    date_type = Transaction.__table__.c.transaction_date.type
    dialect = session.get_bind().dialect
    stored = date_type._cached_bind_processor(dialect) or (lambda v: v)
    to_date = date_type._cached_result_processor(dialect, None) or (lambda v: v)
    conn = session.connection()
    for sql, keys in ((_DUP_TX, tx_keys), (_DUP_SUSP, raw_keys)):
        keys = list(keys)
        for i in range(0, len(keys), 300):
            part = keys[i:i + 300]
            params = [v for d, ref, amount in part for v in (ref, stored(d), amount)]
            values = ", ".join(["(?, ?, ?)"] * len(part))
            for d, ref, amount, imp in conn.exec_driver_sql(sql.format(values),
                                                            (*params, batch_id)):
                found.add((to_date(d), ref, amount, imp))


# SQLite: a join with the keys (a row-value IN list would scan the whole table)
_DUP_TX = ("SELECT t.transaction_date, t.account_reference, t.amount, t.import_id "
           "FROM (VALUES {}) AS k JOIN income_transaction t ON t.account_reference = k.column1 "
           "AND t.transaction_date = k.column2 AND t.amount = k.column3 "
           "WHERE t.import_id IS NOT NULL AND t.import_id <> ?")
_DUP_SUSP = ("SELECT s.transaction_date, s.reference_text, s.amount, s.import_id "
             "FROM (VALUES {}) AS k JOIN suspense_item s ON s.reference_text = k.column1 "
             "AND s.transaction_date = k.column2 AND s.amount = k.column3 "
             "WHERE s.import_id IS NOT NULL AND s.import_id <> ?")
