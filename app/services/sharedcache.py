"""Rows each worker process keeps between requests, while the database says they are current.

Every request reads the same few rows: the signed-in API user with their roles, their roles'
permissions (and the Public role's), their fund scope and till rules, and the funds, payment
methods, offices and VAT codes a receipt names. A web worker keeps them in memory under the
version in ``cache_version`` (app/models/cache.py), which triggers on those tables change with
every change, whoever makes it (the pages, the APIs, `ims sync-roles`, a migration, raw SQL), in
the same transaction. So a worker answers from memory only while the version it holds is the one
committed, and a change counts from the next request in every worker, as it did when each
request read the rows itself.

The version costs no statement of its own: it is read as the pool hands a connection out, which
is also the pool's "pre-ping" (a connection that cannot answer is replaced, as pool_pre_ping
did), and that is when each request's transaction starts. Within a transaction that changes a
watched table (through the session: a flush, or a statement run by ``session.execute``) the
version is read again, so that the transaction sees its own change. A miss reads the version
again before it loads the row: what a transaction reads after a change of its own (however it
was made) is kept under the version that change made, which no one else sees unless it commits
(versions are random, never reused).

What is kept must not be changed by whoever reads it: ``Snapshot`` copies of ORM rows (their
columns and chosen relations, read-only), frozensets, tuples. Without the version table (a
database not yet migrated), nothing is kept and every read goes to the database.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, scoped_session

from app.models.cache import WATCHED_TABLES

#: the version read when the pool handed the connection out (in the pool record's info)
_CHECKOUT_KEY = "ims_cache_version"
#: session.info: [version or None, store] of the session's current transaction
_STATE_KEY = "ims_cache_state"
#: the connection was handed out with no version (no table): nothing is cached
_NO_TABLE = object()
_MISSING = object()
#: in the pool record's info: whether cache_version exists (known from a checkout)
_TABLE_KEY = "ims_cache_table"
#: a transaction changed a watched table: read the version again at the next use
_STALE = object()
#: at most this many entries per worker (users, roles, funds...): past it, start afresh
MAX_ENTRIES = 20_000
_READ = "SELECT version FROM cache_version WHERE id = 1"


class _Store:
    __slots__ = ("version", "rows")

    def __init__(self, version: int):
        self.version = version
        self.rows: dict[Hashable, Any] = {}


_stores: weakref.WeakKeyDictionary[Engine, _Store] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- the version
def install(engine: Engine) -> None:
    """Read the version whenever the pool hands out a connection of ``engine``: the pool's ping
    (a connection that is gone is replaced, as with pool_pre_ping, which this replaces)."""
    if engine in _installed:
        return
    _installed.add(engine)
    dialect = engine.dialect

    def on_checkout(dbapi_conn, record, proxy) -> None:
        try:
            version = _read_version(dialect, dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError() from exc  # the pool tries another connection
            version = _NO_TABLE  # no cache_version table (yet): nothing is cached
        record.info[_CHECKOUT_KEY] = version

    def on_checkin(dbapi_conn, record) -> None:
        if record is not None:
            record.info.pop(_CHECKOUT_KEY, None)

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)


_installed: weakref.WeakSet[Engine] = weakref.WeakSet()


def _read_version(dialect, dbapi_conn):
    postgres = dialect.name == "postgresql"
    before = dbapi_conn.autocommit if postgres else None
    if postgres and not before:
        # as SQLAlchemy's own ping: outside a transaction, so a failure leaves none aborted
        dbapi_conn.autocommit = True
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(_READ)
        row = cursor.fetchone()
    finally:
        cursor.close()
        if postgres and not before and not dbapi_conn.closed:
            dbapi_conn.autocommit = before
    return row[0] if row else _NO_TABLE


def _state(session: Session) -> list | None:
    """[version, store] of the session's transaction, or None when nothing may be cached."""
    state = session.info.get(_STATE_KEY)
    if state is not None and state[0] is not _STALE:
        return state if state[0] is not None else None
    conn = session.connection()
    info = conn.info
    if state is None:  # the transaction's first use: the version read as it began
        version = info.pop(_CHECKOUT_KEY, _MISSING)
        if version is _MISSING:  # already used: read it again if the table is there
            version = _read(conn) if info.get(_TABLE_KEY) else None
        elif version is _NO_TABLE:
            info[_TABLE_KEY] = False
            version = None
        else:
            info[_TABLE_KEY] = True
    else:  # the transaction changed a watched table: its own version
        handed_out = info.pop(_CHECKOUT_KEY, _MISSING)
        if handed_out is not _MISSING:
            info[_TABLE_KEY] = handed_out is not _NO_TABLE
        version = _read(conn) if info.get(_TABLE_KEY) else None
    if version is None:
        session.info[_STATE_KEY] = [None, None]
        return None
    state = session.info[_STATE_KEY] = [version, _store(conn.engine, version)]
    return state


def _read(conn):
    row = conn.exec_driver_sql(_READ).first()
    return row[0] if row else None


def get(session: Session, key: Hashable, load: Callable[[], Any]) -> Any:
    """The value of ``key`` kept for the current version, else ``load()`` (read through
    ``session``; its result, immutable, is kept)."""
    if isinstance(session, scoped_session):
        session = session()
    if not session._is_clean():
        # what a query would do first: the session's pending changes go to the database (a
        # change to a watched table then makes this transaction read its own version)
        session._autoflush()
    state = _state(session)
    if state is None:
        return load()
    try:
        return state[1].rows[key]
    except KeyError:
        pass
    # a miss (rare: a worker's first requests, the first after a change): what is read now is
    # kept under the version this transaction sees now (its own, if it changed a watched table
    # in a way the session did not see, such as raw SQL)
    version = _read(session.connection())
    if version is None:
        return load()
    if version != state[0]:
        state[1] = _store(session.connection().engine, version)
    state[0] = version  # (the very object: a flush during the load replaces it)
    store = state[1]
    value = load()
    if state[0] is not version:  # the load flushed a change of a watched table: not for others
        return value
    rows = store.rows
    if len(rows) >= MAX_ENTRIES:
        rows.clear()
    rows[key] = value
    return value


def _store(engine: Engine, version: int) -> _Store:
    store = _stores.get(engine)
    if store is None or store.version != version:
        store = _stores[engine] = _Store(version)
    return store


def clear() -> None:
    """Forget every kept row (tests)."""
    _stores.clear()


# --------------------------------------------------------------------------- own changes
_watched_mappers: dict = {}
_DML = re.compile(r"\s*(insert|update|delete|truncate|merge)\b", re.IGNORECASE)


def _mapper_watched(mapper) -> bool:
    watched = _watched_mappers.get(mapper)
    if watched is None:
        names = {t.name for t in mapper.tables}
        names |= {r.secondary.name for r in mapper.relationships
                  if r.secondary is not None and hasattr(r.secondary, "name")}
        watched = _watched_mappers[mapper] = bool(names & WATCHED_TABLES.keys())
    return watched


def _mark_stale(session: Session) -> None:
    state = session.info.get(_STATE_KEY)
    if state is None:
        session.info[_STATE_KEY] = [_STALE, None]
    elif state[0] is not None or state[1] is not None:
        state[0], state[1] = _STALE, None


def _after_flush(session: Session, flush_context) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _mapper_watched(inspect(obj).mapper):
            _mark_stale(session)
            return


def _do_orm_execute(state) -> None:
    if state.is_select:
        return
    stmt = state.statement
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(stmt, "table", None)
        name = getattr(table, "name", None)
        if name is None or name in WATCHED_TABLES:
            _mark_stale(state.session)
    elif hasattr(stmt, "text") and _DML.match(stmt.text):
        _mark_stale(state.session)


def _transaction_ended(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_STATE_KEY, None)


for _name, _fn in (("after_flush", _after_flush), ("do_orm_execute", _do_orm_execute),
                   ("after_transaction_end", _transaction_ended)):
    if not event.contains(Session, _name, _fn):
        event.listen(Session, _name, _fn)


# --------------------------------------------------------------------------- snapshots
class Snapshot:
    """A read-only copy of an ORM row: its column attributes, and the relations named when it
    was taken (themselves snapshots), as plain attributes. What the cache hands out instead of
    the ORM object: reads work as on the row; writing, or adding it to a session, does not."""

    __slots__ = ("__dict__",)

    def __setattr__(self, name, value):
        raise AttributeError(f"A cached {self._model.__name__} is read-only.")

    def __delattr__(self, name):
        raise AttributeError(f"A cached {self._model.__name__} is read-only.")

    def __repr__(self) -> str:
        label = self.__dict__.get("code") or self.__dict__.get("name") or self.__dict__.get("id")
        return f"<{self._model.__name__} {label} (cached)>"

    def __str__(self) -> str:
        own = self._model.__dict__.get("__repr__")
        if own is not None:
            try:
                return str(own(self))
            except Exception:  # noqa: BLE001 - a repr that needs the ORM
                pass
        return repr(self)


def snapshot(obj, relations: dict[str, dict | None] | None = None) -> Snapshot | None:
    """A Snapshot of ``obj`` (None stays None). ``relations`` names the relationships to copy
    too, each with the relations of its own rows: {"validator": {"next_validator": ...}}; a
    self-referencing chain is followed ``"*"`` deep: {"next_validator": "*"}."""
    return _snap(obj, relations or {}, {})


def _snap(obj, relations, seen: dict):
    if obj is None:
        return None
    key = id(obj)
    if key in seen:
        return seen[key]
    mapper = inspect(obj).mapper
    snap = object.__new__(Snapshot)
    seen[key] = snap
    values = {attr.key: getattr(obj, attr.key) for attr in mapper.column_attrs}
    values["_model"] = mapper.class_
    for name, sub in relations.items():
        sub = relations if sub == "*" else (sub or {})
        value = getattr(obj, name)
        if isinstance(value, (list, tuple, set)):
            values[name] = tuple(_snap(v, sub, seen) for v in value)
        else:
            values[name] = _snap(value, sub, seen)
    snap.__dict__.update(values)
    return snap
