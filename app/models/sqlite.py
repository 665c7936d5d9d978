"""SQLite, the embedded default, held to what PostgreSQL guarantees: foreign keys enforced, a
writer waits for the write lock instead of failing, and every posting group a transaction wrote
to must balance when it commits.

PostgreSQL checks a group's balance with a trigger at the end of each statement. SQLite has no
statement-level triggers, so a row trigger (app.models.ledger.install_ledger_triggers) notes each
group a transaction writes ledger lines to in ``ledger_unchecked_group``, and the commit below
refuses to commit while any of them does not sum to zero. The table only ever holds the groups of
the transaction under way: SQLite has one writer at a time, and the check empties it.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

#: milliseconds a connection waits for another's write lock before "database is locked"
BUSY_TIMEOUT_MS = 30_000

UNCHECKED_GROUPS = "ledger_unchecked_group"
_ANY_UNCHECKED = f"SELECT 1 FROM {UNCHECKED_GROUPS} LIMIT 1"
_UNBALANCED = (f"SELECT u.group_id, sum(l.amount) FROM {UNCHECKED_GROUPS} u "
               "JOIN ledger_line l ON l.group_id = u.group_id "
               "GROUP BY u.group_id HAVING sum(l.amount) <> 0 ORDER BY u.group_id LIMIT 1")
_CHECKED = f"DELETE FROM {UNCHECKED_GROUPS}"


@event.listens_for(Engine, "connect")
def _strict_sqlite(dbapi_connection, connection_record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # migrations/env.py turns foreign keys off around Alembic's batch table rebuilds only
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@event.listens_for(Engine, "commit")
def _groups_balance_before_commit(conn) -> None:
    """Refuse to commit (and roll back) a transaction that leaves a posting group unbalanced."""
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    if raw is None or not raw.in_transaction:
        return
    try:
        if raw.execute(_ANY_UNCHECKED).fetchone() is None:
            return
    except sqlite3.OperationalError:  # no ledger yet: a database before its first migration
        return
    bad = raw.execute(_UNBALANCED).fetchone()
    if bad is None:
        raw.execute(_CHECKED)
        return
    raw.rollback()
    group_id, net = bad
    message = f"posting group {group_id} does not balance (net {net} pence); nothing was saved"
    raise IntegrityError("COMMIT", None, sqlite3.IntegrityError(message))
