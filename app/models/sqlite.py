"""SQLite, the embedded default, held to what PostgreSQL guarantees: foreign keys enforced, a
writer waits for the write lock instead of failing, and every posting group a transaction wrote
to must balance when it commits.

PostgreSQL checks a group's balance with a trigger at the end of each statement. SQLite has no
statement-level triggers, so a row trigger (app.models.ledger.install_ledger_triggers) notes in
``ledger_commit_check`` the first ledger line the transaction under way writes, and the commit
below refuses to commit while the group of that line or of any later line does not sum to zero.
SQLite has one writer at a time and gives a new line an id above every existing one, so the
lines from that id on are the transaction's own; the check empties the marker.
"""

from __future__ import annotations

import os
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

#: milliseconds a connection waits for another's write lock before "database is locked"
BUSY_TIMEOUT_MS = 30_000

_FIRST_LINE = "SELECT first_line_id FROM ledger_commit_check"
_UNBALANCED = ("SELECT l.group_id, sum(l.amount) FROM ledger_line l WHERE l.group_id IN "
               "(SELECT group_id FROM ledger_line WHERE id >= ?) "
               "GROUP BY l.group_id HAVING sum(l.amount) <> 0 ORDER BY l.group_id LIMIT 1")
_CHECKED = "DELETE FROM ledger_commit_check"


@event.listens_for(Engine, "connect")
def _strict_sqlite(dbapi_connection, connection_record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # migrations/env.py turns foreign keys off around Alembic's batch table rebuilds only
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # the test suite's throw-away files only (tests/conftest.py): SQLite's default, FULL, keeps
    # every commit on disk before it returns, and a served database keeps it
    if os.environ.get("IMS_SQLITE_SYNCHRONOUS") in ("OFF", "NORMAL"):
        dbapi_connection.execute(f"PRAGMA synchronous = {os.environ['IMS_SQLITE_SYNCHRONOUS']}")


@event.listens_for(Engine, "commit")
def _groups_balance_before_commit(conn) -> None:
    """Refuse to commit (and roll back) a transaction that leaves a posting group unbalanced."""
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    if raw is None or not raw.in_transaction:
        return
    try:
        first = raw.execute(_FIRST_LINE).fetchone()
    except sqlite3.OperationalError:  # no ledger yet: a database before its first migration
        return
    if first is None:
        return
    bad = raw.execute(_UNBALANCED, first).fetchone()
    if bad is None:
        raw.execute(_CHECKED)
        return
    raw.rollback()
    group_id, net = bad
    message = f"posting group {group_id} does not balance (net {net} pence); nothing was saved"
    raise IntegrityError("COMMIT", None, sqlite3.IntegrityError(message))
