"""Serialising read-check-write use cases (spending, allocating, approving) on both databases.

PostgreSQL: the row whose money is spent is read ``SELECT ... FOR UPDATE``, so a second use case
waits at that read until the first commits, then reads what it left.

SQLite has no row locks, only one writer at a time, and the driver (sqlite3) opens a transaction
only at the first INSERT, UPDATE or DELETE: until then every read sees the last commit, so two
use cases could both read the same available amount and both spend it. ``write_lock`` opens the
transaction with ``BEGIN IMMEDIATE`` (SQLite's write lock, waited for up to the busy timeout)
before the checks read anything; the second use case's reads then wait until the first has
committed. A connection that has already written holds the lock until it commits.
"""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.sql import Select


def write_lock(bind: Session | scoped_session | Connection) -> None:
    """On SQLite, hold the database's write lock from now until the transaction ends (no-op on
    PostgreSQL, where callers lock rows with ``for_update``)."""
    conn = bind if isinstance(bind, Connection) else bind.connection()  # a (scoped) session
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    if not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def for_update(session: Session, stmt: Select, **options) -> Select:
    """``stmt`` reading rows to be changed by this transaction only: FOR UPDATE (with
    ``options``, e.g. ``of=``) on PostgreSQL; on SQLite the write lock, taken now."""
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(**options)
    write_lock(session)
    return stmt
