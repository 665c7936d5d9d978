"""Audit trail writer: session listeners for audited models, explicit events, chain verification."""

from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models.audit import AuditEvent
from app.services.locking import write_lock

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("ims_actor", default=None)
_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("ims_reason", default=None)

GENESIS = "0" * 64
#: Columns never written to the trail (secrets) or too noisy to matter (login bookkeeping).
REDACTED = {"password", "api_key_hash"}
IGNORED = {"last_login", "login_count", "fail_login_count", "changed_on", "changed_by_fk"}

_audited: set[type] = set()


def audited(cls):
    """Class decorator / registrar: changes to instances of cls are written to the trail.

    Column attributes get active history, so the value before a change is known even when the
    attribute had expired (after a commit) before it was set.
    """
    _audited.add(cls)
    for attr in inspect(cls).column_attrs:
        getattr(cls, attr.key).impl.active_history = True
    return cls


def set_actor(name: str | None):
    """Set who acts in code without a request (CLI, workers). Returns a reset token."""
    return _actor.set(name)


class reason_for:
    """Context manager: attach a reason to the audit events written inside it."""

    def __init__(self, reason: str | None):
        self.reason = reason

    def __enter__(self):
        self._token = _reason.set(self.reason)

    def __exit__(self, *exc):
        _reason.reset(self._token)


def current_actor() -> str:
    name = _actor.get()
    if name:
        return name
    try:
        from flask import g, has_request_context

        if has_request_context():
            user = getattr(g, "user", None)
            if user is None:
                from flask_login import current_user

                user = current_user
            if user is not None and getattr(user, "is_authenticated", False):
                return user.username
            return "anonymous"
    except Exception:  # pragma: no cover - outside Flask entirely
        pass
    return "system"


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple, set)):
        return sorted(str(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _canonical(data) -> str | None:
    if data is None:
        return None
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(prev_hash: str, row: dict) -> str:
    payload = "|".join([
        prev_hash,
        row["occurred_at"].astimezone(timezone.utc).isoformat(),
        row["actor"], row["action"], row["entity"], row["entity_id"] or "",
        row["before"] or "", row["after"] or "", row["reason"] or "",
    ])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_LAST_HASH = "ims_audit_last_hash"
_PREPARED = "ims_audit_prepared_hash"


def _forget_last_hash(conn, *args) -> None:
    conn.info.pop(_LAST_HASH, None)
    conn.info.pop(_PREPARED, None)


for _name in ("commit", "rollback", "rollback_savepoint"):
    event.listen(Engine, _name, _forget_last_hash)


#: the trail's table, for callers that write a prepared event in a statement of their own
AUDIT_TABLE = AuditEvent.__table__
# Built once: SQLAlchemy caches the compiled form per statement object, so each call only binds.
_LAST_HASH_Q = select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
_INSERT_EVENT = insert(AUDIT_TABLE)
#: PostgreSQL: take the chain's lock, then read the last hash, in one round trip. They are two
#: statements (no parameters, so the simple query protocol runs them in turn): under READ COMMITTED
#: the read takes its own snapshot after the lock is granted, so it sees the event written by
#: whoever held the lock before. (One statement doing both would read with a snapshot taken
#: before it waited for the lock.)
_PG_LOCK_THEN_LAST_HASH = ("SELECT pg_advisory_xact_lock(84150731); "  # the chain's lock key
                           "SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1")


def _lock_and_last_hash(conn) -> str | None:
    """Take the chain's lock for this transaction and return the last event's hash (or None)."""
    if conn.dialect.name != "postgresql":  # SQLite: the write lock, held to commit, orders it
        write_lock(conn)
        return conn.execute(_LAST_HASH_Q).scalar()
    result = conn.exec_driver_sql(_PG_LOCK_THEN_LAST_HASH)
    try:
        cursor = result.cursor  # positioned on the lock's result; the hash is the next one
        if not cursor.nextset():
            raise RuntimeError("The audit chain lock query returned no hash result.")
        row = cursor.fetchone()
    finally:
        result.close()
    return row[0] if row else None


def _next_row(conn, action: str, entity: str, entity_id, before, after, reason=None,
              actor=None) -> dict:
    """The row of the next event at the end of the chain (not written).

    The first event of a transaction takes the chain's lock (an advisory lock on PostgreSQL; SQLite
    has one writer at a time) and reads the last hash; later events in the same transaction reuse
    the hash they just wrote, so each costs one INSERT. Commit and rollback forget the cache.
    """
    if conn.info.get(_PREPARED):
        raise RuntimeError("An audit event was prepared but not written: writing another one "
                           "would fork the chain.")
    prev = conn.info.get(_LAST_HASH)
    if prev is None:
        prev = _lock_and_last_hash(conn)
    row = {
        "occurred_at": datetime.now(timezone.utc),
        "actor": (actor or current_actor())[:100],
        "action": action,
        "entity": entity,
        "entity_id": None if entity_id is None else str(entity_id),
        "before": _canonical(before),
        "after": _canonical(after),
        "reason": reason if reason is not None else _reason.get(),
    }
    row["prev_hash"] = prev or GENESIS
    row["hash"] = compute_hash(row["prev_hash"], row)
    return row


def _append(conn, action: str, entity: str, entity_id, before, after, reason=None, actor=None):
    """Write one event at the end of the chain."""
    row = _next_row(conn, action, entity, entity_id, before, after, reason, actor)
    conn.execute(_INSERT_EVENT, row)
    conn.info[_LAST_HASH] = row["hash"]


def record(session: Session, action: str, entity: str, entity_id, before=None, after=None,
           reason: str | None = None, actor: str | None = None) -> None:
    """Write an explicit business event (posting, approval, reversal) in the session's transaction."""
    _append(session.connection(), action, entity, entity_id,
            None if before is None else {k: _jsonable(v) for k, v in before.items()},
            None if after is None else {k: _jsonable(v) for k, v in after.items()},
            reason, actor)


def prepare(session: Session, action: str, entity: str, entity_id, before=None, after=None,
            reason: str | None = None, actor: str | None = None) -> dict:
    """``record`` for a caller that inserts the event (into ``AUDIT_TABLE``) within a statement of
    its own, to save a round trip. Returns the row, linked to the end of the chain under the
    chain's lock. The caller must write it next, in this transaction, then call ``written``;
    until then no other event can be recorded on the connection (that would fork the chain).
    Commit and rollback drop an unwritten row (nothing was written, the chain is whole)."""
    conn = session.connection()
    row = _next_row(conn, action, entity, entity_id,
                    None if before is None else {k: _jsonable(v) for k, v in before.items()},
                    None if after is None else {k: _jsonable(v) for k, v in after.items()},
                    reason, actor)
    conn.info[_PREPARED] = row["hash"]
    return row


def written(session: Session, row: dict) -> None:
    """The prepared ``row`` was inserted: it is now the end of the chain."""
    conn = session.connection()
    if conn.info.get(_PREPARED) != row["hash"]:
        raise RuntimeError("This audit event was not the one prepared on this connection.")
    del conn.info[_PREPARED]
    conn.info[_LAST_HASH] = row["hash"]


def entity_name(obj) -> str:
    return type(obj).__name__


def _snapshot(obj, use_history: bool):
    """Column values (and many-to-many collections) before (history) or after a change."""
    state = inspect(obj)
    before, after = {}, {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in IGNORED:
            continue
        hist = state.attrs[key].history
        now = getattr(obj, key, None)
        if use_history and hist.has_changes():
            old = hist.deleted[0] if hist.deleted else None
            before[key] = "***" if key in REDACTED else _jsonable(old)
            after[key] = "***" if key in REDACTED else _jsonable(now)
        elif not use_history:
            after[key] = "***" if key in REDACTED else _jsonable(now)
    for rel in state.mapper.relationships:
        if rel.uselist and rel.secondary is not None:
            hist = state.attrs[rel.key].history
            if use_history and hist.has_changes():
                unchanged = list(hist.unchanged or [])
                before[rel.key] = _jsonable(unchanged + list(hist.deleted or []))
                after[rel.key] = _jsonable(unchanged + list(hist.added or []))
            elif not use_history:
                after[rel.key] = _jsonable(getattr(obj, rel.key) or [])
    return before, after


def _pk(obj):
    ident = inspect(obj).mapper.primary_key_from_instance(obj)
    if not ident or all(i is None for i in ident):
        return None
    return ident[0] if len(ident) == 1 else "/".join(str(i) for i in ident)


def _after_flush(session: Session, flush_context) -> None:
    conn = None
    for obj in list(session.new):
        if type(obj) in _audited:
            conn = conn or session.connection()
            _, after = _snapshot(obj, use_history=False)
            _append(conn, "create", entity_name(obj), _pk(obj), None, after)
    for obj in list(session.dirty):
        if type(obj) in _audited and session.is_modified(obj, include_collections=True):
            before, after = _snapshot(obj, use_history=True)
            if before or after:
                conn = conn or session.connection()
                _append(conn, "update", entity_name(obj), _pk(obj), before, after)
    for obj in list(session.deleted):
        if type(obj) in _audited:
            conn = conn or session.connection()
            _, before = _snapshot(obj, use_history=False)
            _append(conn, "delete", entity_name(obj), _pk(obj), before, None)


def install_audit_listeners(scoped_session) -> None:
    """Register the audited models and hook the trail into every flush of the app's sessions."""
    from flask_appbuilder.security.sqla.models import Role, User

    from app.models import reference

    for cls in (reference.Fund, reference.PaymentMethod, reference.VatCode, reference.Office,
                reference.ReferenceValidator, reference.AccountHolder, reference.Setting,
                User, Role):
        audited(cls)
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


@dataclass
class VerifyResult:
    valid: bool
    events: int
    broken_event_id: int | None = None
    message: str = ""


def verify_chain(session: Session, batch: int = 5000) -> VerifyResult:
    """Recompute every hash in order; report the first event whose hash or link is wrong."""
    prev = GENESIS
    count = 0
    last_id = 0
    cols = AuditEvent.__table__.c
    while True:
        rows = session.execute(
            select(AuditEvent.__table__).where(cols.id > last_id).order_by(cols.id).limit(batch)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            count += 1
            if row["prev_hash"] != prev:
                return VerifyResult(False, count, row["id"],
                                    f"event {row['id']} does not link to the event before it")
            if compute_hash(prev, dict(row)) != row["hash"]:
                return VerifyResult(False, count, row["id"],
                                    f"event {row['id']} was altered after it was written")
            prev = row["hash"]
            last_id = row["id"]
    return VerifyResult(True, count, None, f"{count} events, chain intact")


def history_for(session: Session, entity: str, entity_id) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(
        AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id)
    ).order_by(AuditEvent.id.desc())))
