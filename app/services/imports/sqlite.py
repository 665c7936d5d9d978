"""The SQLite writer: a staged chunk written straight into the ledger tables with multi-row
VALUES statements on the driver, under SQLite's write lock.

SQLite allows one writer at a time: the processing loop (app.services.imports.processing) runs
one writer thread, which posts a chunk while the parsing thread prepares the next (sqlite3
releases the GIL while SQLite runs a statement).
"""

from __future__ import annotations

import functools
import sqlite3

from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.models.ledger import Transaction
from app.services.clearing import import_debit

#: rows per committed chunk at most, and at least this many progress steps per file: larger
#: chunks than PostgreSQL's, as each commit writes out and syncs the pages the chunk changed,
#: and one writer cannot overlap commits as PostgreSQL's do
CHUNK, STEPS = 10000, 10
WRITERS = 1


def after_first_chunk(ws) -> None:
    """Nothing to do (PostgreSQL refreshes its planner statistics here)."""


def stage(session: Session, rows) -> tuple[list, list, list, list]:
    """The staged rows as the flat VALUES lists of _GROUPS, _TX, _SUSPENSE and _NARRATIVES (one
    value per placeholder), seq being the row's place in the chunk. Dates as SQLite keeps them
    (text), converted once per date."""
    to_text = Transaction.__table__.c.transaction_date.type._cached_bind_processor(
        session.get_bind().dialect) or (lambda v: v)
    dates: dict = {}
    groups: list = []
    txs: list = []
    held: list = []
    narratives: list = []
    for seq, (line, is_held, number, fund, ref, amount, vat_code, vat, method, narrative, d,
              ext, ref_text, reason) in enumerate(rows):
        sd = dates.get(d)
        if sd is None:
            sd = dates[d] = to_text(d)
        if is_held:
            groups += (seq, "suspense", number, d)
            held += (seq, amount, ref_text, narrative, reason, fund, sd, line)
        else:
            groups += (seq, "import", number, d)
            txs += (seq, number, fund, ref, amount, vat_code, vat, method, sd, ext)
            if narrative:
                narratives += (seq, narrative, fund, sd)  # the transaction's fund and date
    return groups, txs, held, narratives


# The same postings as the PostgreSQL writer's: multi-row VALUES (bound in C, one step, so one
# GIL release per statement), ids after the tables' max(id) read under the write lock (posted rows
# come first: a posted row's transaction id is tbase + seq). Constants are bound once, before
# the VALUES (positional parameters number in the order they appear).
_GROUPS = (4, "INSERT INTO posting_group (id, kind, number, created_at, created_by, "
              "office_code, import_id, accounting_date) SELECT ? + column1, column2, column3, "
              "?, ?, ?, ?, column4 FROM (VALUES {})")
_TX = (10, "INSERT INTO income_transaction (id, posting_group_id, receipt_number, "
           "fund_code, account_reference, amount, vat_code, vat_amount, "
           "payment_method_code, transaction_date, external_reference, "
           "office_code, created_by, created_at, import_id) "
           "SELECT ? + column1, ? + column1, column2, column3, column4, column5, column6, "
           "column7, column8, column9, column10, ?, ?, ?, ? FROM (VALUES {})")
# a posted row's narrative (erasable, out of the append-only income row), when it has one,
# with its transaction's fund and date (for the scoped search and its sort)
_NARRATIVES = (4, "INSERT INTO transaction_narrative (transaction_id, narrative, fund_code, "
                  "transaction_date) SELECT ? + column1, column2, column3, column4 "
                  "FROM (VALUES {})")
_SUSPENSE = (8, "INSERT INTO suspense_item (id, posting_group_id, amount, reference_text, "
                "narrative, reason, fund_code, transaction_date, line_number, import_id, "
                "status, created_at) SELECT ? + column1, ? + column1, column2, column3, "
                "column4, column5, column6, column7, column8, ?, 'unallocated', ? "
                "FROM (VALUES {})")
# Ledger lines from the rows just written (a range of ids): the chunk's BANK lines, then its FUND
# (or SUSPENSE) lines, each in id order, so that each group's debit comes before its credit with
# no sort (one statement interleaving them sorted every pair of lines)
_LINES = ("INSERT INTO ledger_line (group_id, account, fund_code, account_reference, amount, "
          "transaction_id) SELECT posting_group_id, {} FROM {} WHERE id BETWEEN ? AND ? "
          "ORDER BY id")
_TX_LINES = (
    _LINES.format("?, NULL, ?, amount, NULL", "income_transaction"),
    _LINES.format("'FUND', fund_code, account_reference, -amount, id", "income_transaction"))
_SUSPENSE_LINES = (
    _LINES.format("?, NULL, ?, amount, NULL", "suspense_item"),
    _LINES.format("'SUSPENSE', ?, NULL, -amount, NULL", "suspense_item"))
# Takes SQLite's write lock first, then reads where the chunk's ids start: one statement
# (UPDATE ... RETURNING, which ledger.next_number relies on as well), so one round trip
_LOCK = ("UPDATE import_batch SET heartbeat_at = ? WHERE id = ? RETURNING "
         "(SELECT coalesce(max(id), 0) FROM posting_group), "
         "(SELECT coalesce(max(id), 0) FROM income_transaction), "
         "(SELECT coalesce(max(id), 0) FROM suspense_item)")
_BALANCE = ("SELECT coalesce(sum(amount), 0), count(*) FROM ledger_line "
            "WHERE group_id BETWEEN ? AND ?")


#: rows per multi-row VALUES statement at most. Every statement of a table has this many
#: rows (the last padded with NULL rows, which the insert skips), so each table has one statement
#: text: the driver caches prepared statements by text, and one per chunk size would keep
#: hundreds of large statements in memory over a big file.
ROWS_PER_STATEMENT = 2000


@functools.cache
def _insert_sql(sql: str, width: int, n: int) -> str:
    return sql.format(", ".join(["(" + ", ".join("?" * width) + ")"] * n)) + \
        " WHERE column1 IS NOT NULL"


def _insert_values(cur, statement: tuple[int, str], values: list, consts: tuple) -> None:
    """Run a multi-row VALUES insert over ``values`` (``width`` values a row), in statements of
    one size: as many rows as SQLite's limit on bound parameters allows, at most
    ROWS_PER_STATEMENT."""
    if not values:  # e.g. a chunk without narratives
        return
    width, sql = statement
    getlimit = getattr(cur.connection, "getlimit", None)  # Python 3.11+
    limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999
    per = min((limit - len(consts)) // width, ROWS_PER_STATEMENT)
    stmt = _insert_sql(sql, width, per)
    size = per * width
    for i in range(0, len(values), size):
        part = values[i:i + size]
        if len(part) < size:
            part = part + [None] * (size - len(part))
        cur.execute(stmt, (*consts, *part))


def post_chunk(session, batch, ctx, staged, now, actor) -> None:
    """The chunk's rows go straight into the ledger tables in a few statements, run on the
    driver: sqlite3 releases the GIL while SQLite works, and each statement's return waits for
    the GIL again while the parsing thread runs."""
    conn = session.connection()
    stamp = Transaction.__table__.c.created_at.type._cached_bind_processor(conn.dialect)
    now = stamp(now) if stamp else now
    groups, txs, held, narratives = staged.rows
    # Bank (the statement's account's dimension), or Agent clearing for an agent's file
    debit = import_debit(batch.import_type, batch.bank_reference)
    n_posted = staged.counts[0]
    cur = conn.connection.dbapi_connection.cursor()
    try:
        gbase, tbase, sbase = cur.execute(_LOCK, (now, batch.id)).fetchone()
        gbase, tbase, sbase = gbase + 1, tbase + 1, sbase + 1
        office = batch.office_code
        # accounting dates (4th of each group's values, dates until here): the transaction
        # date, or the first day of the first open period when it is closed; read under the
        # write lock just taken, so no period closes until this chunk commits
        from app.services import periods

        used = periods.resolve_many(session, set(groups[3::4]))
        to_text = Transaction.__table__.c.transaction_date.type._cached_bind_processor(
            conn.dialect) or (lambda v: v)
        texts = {d: to_text(u) for d, u in used.items()}
        groups = list(groups)
        groups[3::4] = [texts[d] for d in groups[3::4]]
        _insert_values(cur, _GROUPS, groups, (gbase, now, actor, office, batch.id))
        _insert_values(cur, _TX, txs, (tbase, gbase, office, actor, now, batch.id))
        _insert_values(cur, _NARRATIVES, narratives, (tbase,))
        _insert_values(cur, _SUSPENSE, held, (sbase - n_posted, gbase, batch.id, now))
        if n_posted:
            ids = (tbase, tbase + n_posted - 1)
            cur.execute(_TX_LINES[0], (*debit, *ids))
            cur.execute(_TX_LINES[1], ids)
        if staged.n > n_posted:
            ids = (sbase, sbase + staged.n - n_posted - 1)
            cur.execute(_SUSPENSE_LINES[0], (*debit, *ids))
            cur.execute(_SUSPENSE_LINES[1], (ctx.suspense_fund, *ids))
        # every row got its two lines and the chunk balances (the commit checks each group too:
        # app/models/sqlite.py)
        net, count = cur.execute(_BALANCE, (gbase, gbase + staged.n - 1)).fetchone()
    finally:
        cur.close()
    if net != 0 or count != 2 * staged.n:
        raise ValidationError("Internal error: the import postings do not balance.")


#: the writer's page cache (KiB), so a chunk's changes stay in memory until its commit.
#: Spilling them to the file mid-transaction would take the exclusive lock early and block the
#: parsing thread's look-ups until the commit.
WRITER_CACHE_KIB = 65536


def prepare_connection(wc):
    """Set up a writer's connection; returns what undoes it before the connection goes back
    to the pool."""
    raw = wc.connection.dbapi_connection  # the driver's: no SQLAlchemy transaction begun
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    return lambda: raw.execute(f"PRAGMA cache_size = {int(before)}")
