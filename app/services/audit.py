"""Audit trail writer: session listeners for audited models, explicit events, the keyed hash
chain, signed checkpoints of its head, verification and re-keying.

A request writes each event sealed with a MAC: HMAC-SHA256, under the audit key
(``IMS_AUDIT_KEY``, which the database does not hold), of its fields. That is all it does: no
lock, no read of the chain. Whoever can write the database but lacks the key can neither alter an
event nor insert one that verifies.

The worker (`ims tick`, `ims worker`, every few seconds) then links the sealed events, in event
order, into the hash chain: each link, in ``audit_chain`` (a table of its own, so ``audit_event``
stays insert-only), is an HMAC of the link before it, the event's id and its MAC. An event whose
MAC does not hold is not linked. Deleting an event breaks the link after it; an event left out
of the chain while later ones are in it is reported. Until it is linked, an event is as safe as
any newest event before a checkpoint: its MAC shows alteration, not deletion.

On PostgreSQL ids are handed out before commit, so the chaining step links only up to an id below
which every writer has finished (a SHARE lock on the trail, asked for with NOWAIT so it never
queues ahead of writers, held for one statement): no event can later appear behind the chain's
head. SQLite has one writer.

Events written before migration 0026 carry their link in their own row (``prev_hash``, ``hash``:
HMAC of the hash before and the fields; a plain SHA-256 before audit keys), and the chain runs on
from the last of them. `ims audit-rekey` verifies a chain still unkeyed, or keyed with an earlier
key, and continues it under the configured key, recording the switch as an ``audit.rekey``
event; until then links go on with the chain's key and verification says so.

Checkpoints (``audit_checkpoint``, and the same line in the application log) sign the chain's
head: how many events are linked, the last one's id and its link. Verification compares the chain
with every checkpoint, so deleting the newest events, which leaves a shorter chain that still
links, is reported naming the events missing. `ims tick` writes one when the head moved since the
last (after linking the events written since and checking them), and `ims audit-verify` after a
full verification; the request path writes none.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import re
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import event, func, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.domain.errors import ConfigurationError
from app.domain.i18n import N_
from app.models.audit import KEY_ID_LENGTH, AuditChain, AuditCheckpoint, AuditEvent
from app.services.locking import write_lock

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("ims_actor", default=None)
_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("ims_reason", default=None)

GENESIS = "0" * 64
#: The action of the event that moves the chain to the configured key (`ims audit-rekey`).
REKEY_ACTION = "audit.rekey"
#: Columns never written to the trail (secrets) or too noisy to matter (login bookkeeping).
REDACTED = {"password", "api_key_hash"}
IGNORED = {"last_login", "login_count", "fail_login_count", "changed_on", "changed_by_fk"}

#: Checkpoints go to the log at INFO whatever the root logger's level: the log is their copy
#: outside the database.
log = logging.getLogger("ims.audit")
log.setLevel(logging.INFO)

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


# ---------------------------------------------------------------------------------------------
# the audit key

def key_id(key: bytes) -> str:
    """Names a key without revealing it: the start of an HMAC of a fixed text under it."""
    return hmac.new(key, b"IMS audit key id", hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]


class Keyring:
    """The audit key events are written with, and earlier keys that still verify what they
    signed (after a change of key and `ims audit-rekey`), by key id."""

    def __init__(self, current: str, previous: Iterable[str] = ()):
        if not current:
            raise ConfigurationError("IMS_AUDIT_KEY is not set: the audit trail needs a key.")
        self.current = current.encode("utf-8")
        self.current_id = key_id(self.current)
        self.keys = {key_id(k.encode("utf-8")): k.encode("utf-8") for k in previous if k}
        self.keys[self.current_id] = self.current


def keyring_from_config(config) -> Keyring:
    previous = (config.get("IMS_AUDIT_PREVIOUS_KEYS") or "").split(",")
    return Keyring(config.get("IMS_AUDIT_KEY") or "", [k.strip() for k in previous])


#: The keyring of each app's database engine: writers on threads without an app context (an
#: import's writer threads) find it through their connection.
_keyrings: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def use_keyring(engine: Engine, keyring: Keyring) -> None:
    """Events written and verified through ``engine`` use ``keyring``."""
    _keyrings[engine] = keyring


def keyring_for(bind) -> Keyring:
    """The keyring for a connection or session's database (the app's, as configured)."""
    engine = bind if isinstance(bind, Connection) else bind.get_bind()
    if isinstance(engine, Connection):  # a session bound to a connection (import writers)
        engine = engine.engine
    ring = _keyrings.get(engine)
    if ring is not None:
        return ring
    from flask import current_app, has_app_context

    if has_app_context():
        return keyring_from_config(current_app.config)
    raise ConfigurationError("No audit key is configured for this database.")


def _payload(prev_hash: str, row: dict) -> bytes:
    return "|".join([
        prev_hash,
        row["occurred_at"].astimezone(timezone.utc).isoformat(),
        row["actor"], row["action"], row["entity"], row["entity_id"] or "",
        row["before"] or "", row["after"] or "", row["reason"] or "",
    ]).encode("utf-8")


#: An HMAC per key with the key already absorbed: each event copies it (half the cost of
#: starting from the key), so an HMAC costs little more than a plain SHA-256.
_MACS: dict[bytes, hmac.HMAC] = {}


def _hmac(key: bytes, data: bytes) -> str:
    mac = _MACS.get(key)
    if mac is None:
        mac = _MACS.setdefault(key, hmac.new(key, digestmod=hashlib.sha256))
    mac = mac.copy()
    mac.update(data)
    return mac.hexdigest()


def compute_hash(prev_hash: str, row: dict, key: bytes | None = None) -> str:
    """The link of an event written before migration 0026 (in its own row): HMAC-SHA256 under
    ``key`` of the hash before and its fields, or plain SHA-256 (events from before audit keys)."""
    if key is None:
        return hashlib.sha256(_payload(prev_hash, row)).hexdigest()
    return _hmac(key, _payload(prev_hash, row))


#: What an event's MAC covers starts with this (a MAC can never pass for a chain link, whose
#: payload starts with a 64-digit hash).
_EVENT_DOMAIN = "ims-audit-event"


def event_mac(row: dict, key: bytes) -> str:
    """An event's seal, written with it: HMAC-SHA256 under the audit key of its fields."""
    return _hmac(key, _payload(_EVENT_DOMAIN, row))


def link_hash(prev_hash: str, event_id: int, mac: str, key: bytes | None) -> str:
    """An event's link in audit_chain: HMAC-SHA256 under ``key`` of the hash before it, the
    event's id and its MAC (plain SHA-256 while a chain from before audit keys awaits
    `ims audit-rekey`). The MAC stands for the fields, so the chain binds them in order."""
    data = f"{prev_hash}|{event_id}|{mac}".encode("ascii")
    return hashlib.sha256(data).hexdigest() if key is None else _hmac(key, data)


#: the trail's tables, for callers that write a sealed event in a statement of their own
AUDIT_TABLE = AuditEvent.__table__
CHAIN_TABLE = AuditChain.__table__
CHECKPOINT_TABLE = AuditCheckpoint.__table__
# Built once: SQLAlchemy caches the compiled form per statement object, so each call only binds.
_INSERT_EVENT = insert(AUDIT_TABLE)
_INSERT_LINKS = insert(CHAIN_TABLE)
#: The chain's lock: one chaining step at a time (several workers may share one PostgreSQL).
#: Requests never take it.
CHAIN_LOCK = 84150731


def _key_after(ring: Keyring, head: tuple[str | None, str | None], rekey: bool
               ) -> tuple[str | None, bytes | None]:
    """(key id, key) of the next link: the configured key for a new chain, one keyed with it,
    or the switch; a chain from before audit keys stays unkeyed until `ims audit-rekey`; a chain
    keyed with an earlier key goes on with it until then."""
    last_hash, last_key = head
    if rekey or last_hash is None or last_key == ring.current_id:
        return ring.current_id, ring.current
    if last_key is None:
        return None, None
    key = ring.keys.get(last_key)
    if key is None:
        raise ConfigurationError(
            f"The audit trail's last link was made with audit key {last_key}, which this "
            "server does not have: every server needs the same IMS_AUDIT_KEY (after changing "
            "it, list the old one in IMS_AUDIT_PREVIOUS_KEYS and run `ims audit-rekey`).")
    return last_key, key


def _content(action: str, entity: str, entity_id, before, after, reason=None,
             actor=None) -> dict:
    """An event's fields as recorded now (its time, actor and reason), before it is sealed."""
    return {
        "occurred_at": datetime.now(timezone.utc),
        "actor": (actor or current_actor())[:100],
        "action": action,
        "entity": entity,
        "entity_id": None if entity_id is None else str(entity_id),
        "before": _canonical(before),
        "after": _canonical(after),
        "reason": reason if reason is not None else _reason.get(),
    }


def _seal(ring: Keyring, row: dict) -> dict:
    """The row as written: its MAC under the current audit key; no link (the chaining step
    adds it, in audit_chain)."""
    row["key_id"] = ring.current_id
    row["mac"] = event_mac(row, ring.current)
    row["prev_hash"] = row["hash"] = None
    return row


def _append(session: Session, action: str, entity: str, entity_id, before, after, reason=None,
            actor=None) -> int:
    """Write one sealed event now; returns its id."""
    row = _seal(keyring_for(session), _content(action, entity, entity_id, before, after, reason,
                                               actor))
    return session.execute(_INSERT_EVENT.returning(AUDIT_TABLE.c.id), row).scalar_one()


# Events of a session's transaction wait in session.info until just before it commits, and are
# then sealed and written in one statement. Their time, actor and reason are those of the moment
# they were recorded. A query of the audit trail in the same session writes them first, so the
# transaction always reads its own events. Writing takes no lock and reads nothing: receipts
# taken at once do not wait for each other's events (the chain is made later, by the worker).
_PENDING = "ims_audit_pending"


def _defer(session: Session, row: dict) -> None:
    session.info.setdefault(_PENDING, []).append(row)


def write_pending(session: Session) -> None:
    """Seal and write the session's waiting events now (called before commit, before a read
    of the trail, and before an event a caller writes itself)."""
    if not session.info.get(_PENDING):
        return
    ring = keyring_for(session)
    rows = session.info.pop(_PENDING)
    session.execute(_INSERT_EVENT, [_seal(ring, row) for row in rows])


def _drop_unwritten(session: Session, transaction) -> None:
    """The session's outermost transaction ended: events still waiting belong to work that
    was rolled back (or never committed), so they are dropped with it. (A savepoint rolled
    back inside a transaction that commits keeps its events: recorded, not lost.)"""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def _write_before_commit(session: Session) -> None:
    session.flush()  # objects still dirty: their events join the ones waiting (after_flush)
    if session.info.get(_PENDING):
        write_pending(session)


def _write_before_reading(orm_execute_state) -> None:
    session = orm_execute_state.session
    if session.info.get(_PENDING) and orm_execute_state.is_select and any(
            getattr(m, "class_", None) is AuditEvent
            for m in orm_execute_state.all_mappers):
        write_pending(session)


event.listen(Session, "before_commit", _write_before_commit)
event.listen(Session, "after_transaction_end", _drop_unwritten)
event.listen(Session, "do_orm_execute", _write_before_reading)


def record(session: Session, action: str, entity: str, entity_id, before=None, after=None,
           reason: str | None = None, actor: str | None = None) -> None:
    """An explicit business event (posting, approval, reversal) of the session's transaction:
    sealed and written just before it commits (nothing if it rolls back). Personal values
    (app/services/personal.py) are recorded as tokens of erasable rows."""
    from app.services.personal import tokenise

    _defer(session, _content(
        action, entity, entity_id,
        tokenise(session, entity, entity_id,
                 None if before is None else {k: _jsonable(v) for k, v in before.items()}),
        tokenise(session, entity, entity_id,
                 None if after is None else {k: _jsonable(v) for k, v in after.items()}),
        reason, actor))


def prepare(session: Session, action: str, entity: str, entity_id, before=None, after=None,
            reason: str | None = None, actor: str | None = None) -> dict:
    """``record`` for a caller that inserts the event (into ``AUDIT_TABLE``) within a statement of
    its own, to save a round trip: returns the sealed row (the session's waiting events are
    written first). The caller writes it in this transaction; nothing more is needed."""
    write_pending(session)
    return _seal(keyring_for(session), _content(
        action, entity, entity_id,
        None if before is None else {k: _jsonable(v) for k, v in before.items()},
        None if after is None else {k: _jsonable(v) for k, v in after.items()},
        reason, actor))


# ---------------------------------------------------------------------------------------------
# chaining: the worker links sealed events into audit_chain, in event order

#: How long the chaining step tries for a moment without writers in flight before trying again
#: at its next run.
CHAIN_LOCK_TIMEOUT_MS = 200

_HEAD_LINK_Q = select(CHAIN_TABLE.c.event_id, CHAIN_TABLE.c.hash, CHAIN_TABLE.c.key_id).order_by(
    CHAIN_TABLE.c.event_id.desc()).limit(1)
_HEAD_LEGACY_Q = select(AUDIT_TABLE.c.id, AUDIT_TABLE.c.hash, AUDIT_TABLE.c.key_id).where(
    AUDIT_TABLE.c.hash.is_not(None)).order_by(AUDIT_TABLE.c.id.desc()).limit(1)
_MAX_EVENT_Q = select(func.max(AUDIT_TABLE.c.id))


def _chain_head(session: Session) -> tuple[int, str | None, str | None]:
    """(event id, hash, key id) of the chain's last link: in audit_chain, or the last event
    linked in its own row (before migration 0026); (0, None, None) for an empty chain."""
    row = session.execute(_HEAD_LINK_Q).first() or session.execute(_HEAD_LEGACY_Q).first()
    return (row[0], row[1], row[2]) if row else (0, None, None)


def _settled_horizon(session: Session, latest: int) -> int | None:
    """The highest event id below which every event is committed or rolled back for good, so
    the chain can link up to it without leaving one behind; None if no moment without a writer
    in flight came within CHAIN_LOCK_TIMEOUT_MS (try again later). Commits the session.

    PostgreSQL hands out ids before commit, so a later id may commit first. A SHARE lock on the
    trail can only be had when no transaction that wrote to it is still open; it is asked for
    with NOWAIT, again and again for a moment, so that it never queues: a writer is never held
    behind the chaining step, only for the instant the lock is held (one statement), and a long
    transaction (an import) just delays linking. SQLite has one writer at a time: what is
    visible (``latest``, the highest id just read) is settled."""
    session.commit()
    if session.get_bind().dialect.name != "postgresql":
        return latest
    deadline = time.monotonic() + CHAIN_LOCK_TIMEOUT_MS / 1000
    while True:
        try:
            session.execute(_LOCK_TRAIL_NOWAIT)
            horizon = session.scalar(_MAX_EVENT_Q) or 0
            session.commit()
            return horizon
        except OperationalError:  # a writer is in flight (lock_not_available)
            session.rollback()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)


_LOCK_TRAIL_NOWAIT = text("LOCK TABLE audit_event IN SHARE MODE NOWAIT")


@dataclass
class ChainResult:
    linked: int = 0  # events linked into the chain
    refused: list[int] = field(default_factory=list)  # events whose MAC does not hold
    waiting: bool = False  # writers in flight: the rest is linked next time


def chain_pending(session: Session, batch: int = 5000) -> ChainResult:
    """Link the events written since the chain's head into audit_chain, in event order, under
    the chain's lock (one chaining step at a time). An event whose MAC does not hold under its
    key (forged or altered in the database) is not linked: it is logged as an error, and
    verification reports it. Commits the session (the worker's, the CLI's)."""
    result = ChainResult()
    latest = session.scalar(_MAX_EVENT_Q) or 0
    if latest <= _chain_head(session)[0]:
        session.commit()
        return result  # nothing new: no lock taken
    horizon = _settled_horizon(session, latest)
    if horizon is None:
        result.waiting = True
        return result
    ring = keyring_for(session)
    t = AUDIT_TABLE.c
    while True:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK)))
        else:
            write_lock(conn)
        head_id, head_hash, head_key = _chain_head(session)
        rows = session.execute(
            select(t.id, t.occurred_at, t.actor, t.action, t.entity, t.entity_id, t.before,
                   t.after, t.reason, t.key_id, t.mac)
            .where(t.id > head_id, t.id <= horizon).order_by(t.id).limit(batch)).mappings().all()
        links = []
        for row in rows:
            key = ring.keys.get(row["key_id"]) if row["key_id"] else None
            if (row["mac"] is None or key is None
                    or not hmac.compare_digest(event_mac(row, key), row["mac"])):
                if row["id"] not in result.refused:
                    result.refused.append(row["id"])
                    log.error("audit chain: event %s is not linked: its MAC does not hold "
                              "(forged, or altered after it was written)", row["id"])
                continue
            kid, link_key = _key_after(ring, (head_hash, head_key),
                                       rekey=row["action"] == REKEY_ACTION)
            digest = link_hash(head_hash or GENESIS, row["id"], row["mac"], link_key)
            links.append({"event_id": row["id"], "prev_hash": head_hash or GENESIS,
                          "hash": digest, "key_id": kid,
                          "chained_at": datetime.now(timezone.utc)})
            head_hash, head_key = digest, kid
        if links:
            session.execute(_INSERT_LINKS, links)
        session.commit()
        result.linked += len(links)
        if len(rows) < batch or not links:
            return result


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


def _subject(obj) -> str | None:
    """Whose personal values a record holds ("fund/reference"), for the subject-access report."""
    fund, ref = getattr(obj, "fund_code", None), getattr(obj, "account_reference", None)
    return f"{fund}/{ref}" if fund and ref else None


def _after_flush(session: Session, flush_context) -> None:
    from app.services.personal import tokenise_many

    changes = []  # (action, obj, before, after)
    for obj in list(session.new):
        if type(obj) in _audited:
            _, after = _snapshot(obj, use_history=False)
            changes.append(("create", obj, None, after))
    for obj in list(session.dirty):
        if type(obj) in _audited and session.is_modified(obj, include_collections=True):
            before, after = _snapshot(obj, use_history=True)
            if before or after:
                changes.append(("update", obj, before, after))
    for obj in list(session.deleted):
        if type(obj) in _audited:
            _, before = _snapshot(obj, use_history=False)
            changes.append(("delete", obj, before, None))
    if not changes:
        return
    # personal values go to personal_data (one statement for the flush); the trail keeps tokens
    data = tokenise_many(session, [
        (entity_name(obj), _pk(obj), part, _subject(obj))
        for _, obj, before, after in changes for part in (before, after)])
    for n, (action, obj, _, _) in enumerate(changes):
        _defer(session, _content(action, entity_name(obj), _pk(obj), data[2 * n],
                                 data[2 * n + 1]))


def install_audit_listeners(scoped_session) -> None:
    """Register the audited models, hook the trail into every flush of the app's sessions, and
    give the app's database its audit keys (from the configuration)."""
    from flask import current_app
    from flask_appbuilder.security.sqla.models import Role, User

    from app.extensions import db
    from app.models import reference

    use_keyring(db.engine, keyring_from_config(current_app.config))

    for cls in (reference.Fund, reference.PaymentMethod, reference.VatCode, reference.Office,
                reference.ReferenceValidator, reference.AccountHolder, reference.Setting,
                User, Role):
        audited(cls)
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


# ---------------------------------------------------------------------------------------------
# verification

@dataclass
class Finding:
    """One thing verification says, as a message to translate (``text``, marked with N_) and
    its values; ``str()`` gives it in English (the CLI, the API, the log)."""

    text: str
    params: dict = field(default_factory=dict)
    kind: str = "chain"  # chain | checkpoint | log | unkeyed | old_key | wiped | ok
    event_id: int | None = None

    def __str__(self) -> str:
        return self.text % self.params


_UNLINKED = N_("event %(id)s does not link to the event before it: events before it were "
               "deleted, or it was altered")
_ALTERED = N_("event %(id)s was altered after it was written: its hash does not match its "
              "contents")
_FORGED = N_("event %(id)s does not match its seal (MAC): it was altered after it was written, "
              "or written by someone without the audit key")
_SKIPPED = N_("event %(id)s is not in the chain although later events are: its link was deleted, "
              "or it was inserted afterwards")
_AWAITING = N_("%(n)s newest events are not linked into the chain yet (the worker links them "
               "within seconds)")
_DOWNGRADED = N_("event %(id)s has a plain SHA-256 hash although the events before it are keyed: "
                 "it was rewritten")
_UNKNOWN_KEY = N_("event %(id)s was hashed with audit key %(key)s, which is not configured "
                  "(IMS_AUDIT_KEY, IMS_AUDIT_PREVIOUS_KEYS)")
_UNRECORDED_SWITCH = N_("event %(id)s changes the audit key without an audit.rekey event: "
                        "it was rewritten")
_NOT_KEYED = N_("the chain is not keyed: its events have plain SHA-256 hashes, which anyone who "
                "can write to the database can recompute; run `ims audit-rekey`")
_OLD_KEY = N_("the chain goes on with an earlier audit key (%(key)s); run `ims audit-rekey` to "
              "continue it with the current one")
_WIPED = N_("the audit trail is empty although %(users)s users exist, whose creation was "
            "audited: the trail was wiped")
_MISSING = N_("events %(first)s–%(last)s are missing: checkpoint %(cp)s at %(at)s recorded "
              "%(events)s events ending in event %(last)s (hash %(hash)s); the chain has "
              "%(count)s events up to there")
_MISSING_ONE = N_("event %(last)s is missing: checkpoint %(cp)s at %(at)s recorded %(events)s "
                  "events ending in event %(last)s (hash %(hash)s); the chain has %(count)s "
                  "events up to there")
_MISMATCH = N_("event %(last)s does not match checkpoint %(cp)s at %(at)s, which recorded "
               "%(events)s events ending in hash %(hash)s; the chain has %(count)s events up to "
               "there, ending in hash %(actual)s: events were deleted or rewritten")
_BAD_SIGNATURE = N_("checkpoint %(cp)s at %(at)s has a bad signature: it was forged or altered")
_CHECKPOINT_KEY = N_("checkpoint %(cp)s at %(at)s was signed with audit key %(key)s, which is not "
                     "configured (IMS_AUDIT_KEY, IMS_AUDIT_PREVIOUS_KEYS)")
_LOG_NOT_STORED = N_("checkpoint %(cp)s of the log is missing from the checkpoint table")
_LOG_DIFFERS = N_("checkpoint %(cp)s of the log differs from the one in the checkpoint table")
_MORE = N_("%(n)s more checkpoints do not match the chain")
_INTACT = N_("%(events)s events, chain intact, keyed with audit key %(key)s; %(checkpoints)s "
             "checkpoints agree")
_INTACT_EMPTY = N_("%(events)s events, chain intact")

#: At most this many checkpoint findings are listed (a rewritten chain contradicts every
#: checkpoint after the first event altered).
MAX_CHECKPOINT_FINDINGS = 20


def _short(digest: str) -> str:
    return digest[:12] + "…"


def _when(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Checkpoint:
    """A signed head of the chain, from the checkpoint table or from the log."""

    id: int
    created_at: datetime
    events: int
    last_event_id: int
    head_hash: str
    key_id: str
    signature: str

    def signed_with(self, key: bytes) -> bool:
        return hmac.compare_digest(
            _sign(key, self.created_at, self.events, self.last_event_id, self.head_hash),
            self.signature)

    def check(self, ring: Keyring) -> Finding | None:
        """Whether its signature holds under the key it names."""
        key = ring.keys.get(self.key_id)
        at = _when(self.created_at)
        if key is None:
            return Finding(_CHECKPOINT_KEY, {"cp": self.id, "at": at, "key": self.key_id},
                           "checkpoint")
        if not self.signed_with(key):
            return Finding(_BAD_SIGNATURE, {"cp": self.id, "at": at}, "checkpoint")
        return None

    def log_line(self) -> str:
        return (f"audit checkpoint {self.id} at {self.created_at.isoformat()}: {self.events} "
                f"events to event {self.last_event_id}, head {self.head_hash}, key {self.key_id}, "
                f"signature {self.signature}")


_LOG_LINE = re.compile(
    r"audit checkpoint (?P<id>\d+) at (?P<at>\S+): (?P<events>\d+) events to event (?P<last>\d+), "
    r"head (?P<hash>[0-9a-f]{64}), key (?P<key>[0-9a-f]+), signature (?P<sig>[0-9a-f]{64})")


def logged_checkpoints(lines: Iterable[str]) -> list[Checkpoint]:
    """The checkpoints in application log lines (other lines are skipped)."""
    found = {}
    for line in lines:
        m = _LOG_LINE.search(line)
        if m:
            cp = Checkpoint(int(m["id"]), datetime.fromisoformat(m["at"]), int(m["events"]),
                            int(m["last"]), m["hash"], m["key"], m["sig"])
            found[(cp.id, cp.signature)] = cp
    return list(found.values())


def _sign(key: bytes, created_at: datetime, events: int, last_event_id: int,
          head_hash: str) -> str:
    payload = "|".join(["ims-audit-checkpoint", created_at.astimezone(timezone.utc).isoformat(),
                        str(events), str(last_event_id), head_hash])
    return hmac.digest(key, payload.encode("utf-8"), "sha256").hex()


def _checkpoint_of(row) -> Checkpoint:
    return Checkpoint(row.id, row.created_at, row.events, row.last_event_id, row.head_hash,
                      row.key_id, row.signature)


class _Walk:
    """Follows the chain event by event from a known point (its start, or a checkpoint's head),
    keeping the first problem found. ``count``, ``prev``, ``last_id`` and ``key_id`` describe the
    chain walked (linked events); ``seen`` counts every event, and ``unlinked`` the sealed events
    not linked yet (the chaining step links them; only the newest may wait)."""

    def __init__(self, ring: Keyring, prev: str = GENESIS, count: int = 0, last_id: int = 0,
                 key: str | None = None):
        self.ring = ring
        self.prev, self.count, self.last_id, self.key_id = prev, count, last_id, key
        self.problem: Finding | None = None
        self.seen = 0
        self.unlinked: list[int] = []

    def feed(self, row) -> None:
        self.seen += 1
        if row["mac"] is None:  # linked in its own row (written before migration 0026)
            self._note(self._check_own_link(row))
            self._advance(row["id"], row["hash"], row["key_id"])
            return
        sealed = self._check_seal(row)
        if row["link_hash"] is None:
            if sealed is None:
                self.unlinked.append(row["id"])
            self._note(sealed)
            return
        if self.unlinked:  # an event before this one was left out of the chain
            eid = self.unlinked[0]
            self._note(Finding(_SKIPPED, {"id": eid}, event_id=eid))
        self._note(sealed or self._check_link(row))
        self._advance(row["id"], row["link_hash"], row["link_key_id"])

    def _note(self, problem: Finding | None) -> None:
        if self.problem is None:
            self.problem = problem

    def _advance(self, event_id: int, digest: str, kid: str | None) -> None:
        self.count += 1
        self.prev, self.last_id, self.key_id = digest, event_id, kid

    def _link_key(self, eid: int, kid: str | None, action: str
                  ) -> tuple[bytes | None, Finding | None]:
        """The key a link names, or what is wrong with it."""
        if kid is None:
            if self.key_id is not None:
                return None, Finding(_DOWNGRADED, {"id": eid}, event_id=eid)
            return None, None
        key = self.ring.keys.get(kid)
        if key is None:
            return None, Finding(_UNKNOWN_KEY, {"id": eid, "key": kid}, event_id=eid)
        if self.count and kid != self.key_id and action != REKEY_ACTION:
            return None, Finding(_UNRECORDED_SWITCH, {"id": eid}, event_id=eid)
        return key, None

    def _check_own_link(self, row) -> Finding | None:
        eid = row["id"]
        if row["hash"] is None:
            return Finding(_FORGED, {"id": eid}, event_id=eid)
        if row["prev_hash"] != self.prev:
            return Finding(_UNLINKED, {"id": eid}, event_id=eid)
        key, problem = self._link_key(eid, row["key_id"], row["action"])
        if problem:
            return problem
        if not hmac.compare_digest(compute_hash(self.prev, row, key), row["hash"]):
            return Finding(_ALTERED, {"id": eid}, event_id=eid)
        return None

    def _check_seal(self, row) -> Finding | None:
        eid, kid = row["id"], row["key_id"]
        key = self.ring.keys.get(kid) if kid else None
        if key is None:
            return Finding(_UNKNOWN_KEY if kid else _FORGED, {"id": eid, "key": kid},
                           event_id=eid)
        if not hmac.compare_digest(event_mac(row, key), row["mac"]):
            return Finding(_FORGED, {"id": eid}, event_id=eid)
        return None

    def _check_link(self, row) -> Finding | None:
        eid = row["id"]
        if row["link_prev"] != self.prev:
            return Finding(_UNLINKED, {"id": eid}, event_id=eid)
        key, problem = self._link_key(eid, row["link_key_id"], row["action"])
        if problem:
            return problem
        if not hmac.compare_digest(link_hash(self.prev, eid, row["mac"], key), row["link_hash"]):
            return Finding(_ALTERED, {"id": eid}, event_id=eid)
        return None

    def missing(self, cp: Checkpoint) -> Finding:
        """``cp``'s last event is not in the chain: the events after the last one walked, up to
        it, are gone."""
        first = self.last_id + 1
        return Finding(_MISSING_ONE if first == cp.last_event_id else _MISSING,
                       {"first": first, "last": cp.last_event_id, "cp": cp.id,
                        "at": _when(cp.created_at), "events": cp.events,
                        "hash": _short(cp.head_hash), "count": self.count},
                       "checkpoint", event_id=first)

    def compare(self, cp: Checkpoint) -> Finding | None:
        """The event just walked is ``cp``'s last: does the chain up to it match?"""
        if self.prev == cp.head_hash and self.count == cp.events:
            return None
        return Finding(_MISMATCH, {"last": cp.last_event_id, "cp": cp.id,
                                   "at": _when(cp.created_at), "events": cp.events,
                                   "hash": _short(cp.head_hash), "count": self.count,
                                   "actual": _short(self.prev)},
                       "checkpoint", event_id=cp.last_event_id)


@dataclass
class VerifyResult:
    valid: bool
    events: int
    broken_event_id: int | None = None
    message: str = ""
    findings: list[Finding] = field(default_factory=list)
    keyed: bool = False
    key_id: str | None = None
    checkpoints: int = 0  # checkpoints whose signature holds, compared with the chain
    last_event_id: int | None = None  # the chain's head (the last event linked)
    head_hash: str | None = None
    linked: int = 0  # events in the chain (``events`` counts every event)
    awaiting: int = 0  # the newest events, sealed, not linked yet


class _Findings:
    """Collects what verification finds, listing at most MAX_CHECKPOINT_FINDINGS about
    checkpoints."""

    def __init__(self):
        self.items: list[Finding] = []
        self.more = 0

    def add(self, finding: Finding | None) -> None:
        if finding is None:
            return
        if finding.kind in ("checkpoint", "log") and sum(
                f.kind in ("checkpoint", "log") for f in self.items) >= MAX_CHECKPOINT_FINDINGS:
            self.more += 1
        else:
            self.items.append(finding)


_WALK_COLUMNS = (*AUDIT_TABLE.c, CHAIN_TABLE.c.prev_hash.label("link_prev"),
                 CHAIN_TABLE.c.hash.label("link_hash"), CHAIN_TABLE.c.key_id.label("link_key_id"))


def _rows_after(session: Session, after_id: int, batch: int) -> Iterator[list]:
    """The events after ``after_id`` in order, each with its link (None when not linked)."""
    t = AUDIT_TABLE.c
    joined = AUDIT_TABLE.outerjoin(CHAIN_TABLE, CHAIN_TABLE.c.event_id == t.id)
    while True:
        rows = session.execute(select(*_WALK_COLUMNS).select_from(joined).where(t.id > after_id)
                               .order_by(t.id).limit(batch)).mappings().all()
        if not rows:
            return
        yield rows
        after_id = rows[-1]["id"]


def _verify(session: Session, batch: int = 5000, logged: Iterable[Checkpoint] = ()
            ) -> tuple[VerifyResult, _Walk]:
    ring = keyring_for(session)
    c = CHECKPOINT_TABLE.c
    # Checkpoints written while this walk runs may name events it has not read: leave them out.
    cp_limit = session.scalar(select(func.max(c.id))) or 0
    found = _Findings()
    extra = sorted(_logged_to_compare(session, ring, logged, found),
                   key=lambda cp: (cp.last_event_id, cp.id))
    checked = 0

    def checkpoints(lo: int, hi: int | None) -> list[Checkpoint]:
        """The checkpoints (stored, and logged ones not stored alike) whose last event is in
        (lo, hi], in chain order; ones with a bad signature are reported and left out."""
        nonlocal checked
        q = select(CHECKPOINT_TABLE).where(c.id <= cp_limit, c.last_event_id > lo)
        if hi is not None:
            q = q.where(c.last_event_id <= hi)
        cps = [_checkpoint_of(r) for r in session.execute(q.order_by(c.last_event_id, c.id))]
        cps += [cp for cp in extra if cp.last_event_id > lo
                and (hi is None or cp.last_event_id <= hi)]
        good = []
        for cp in sorted(cps, key=lambda cp: (cp.last_event_id, cp.id)):
            problem = cp.check(ring)
            found.add(problem)
            if problem is None:
                good.append(cp)
        checked += len(good)
        return good

    walk = _Walk(ring)
    for rows in _rows_after(session, 0, batch):
        cps = checkpoints(walk.last_id, rows[-1]["id"])
        i = 0
        for row in rows:
            while i < len(cps) and cps[i].last_event_id < row["id"]:
                found.add(walk.missing(cps[i]))
                i += 1
            walk.feed(row)
            while i < len(cps) and cps[i].last_event_id == row["id"]:
                found.add(walk.compare(cps[i]))
                i += 1
    for cp in checkpoints(walk.last_id, None):  # beyond the end of the chain
        found.add(walk.missing(cp))

    findings = ([walk.problem] if walk.problem else []) + found.items
    if found.more:
        findings.append(Finding(_MORE, {"n": found.more}, "checkpoint"))
    if walk.count and walk.key_id is None:
        findings.append(Finding(_NOT_KEYED, {}, "unkeyed"))
    elif walk.count and walk.key_id != ring.current_id:
        findings.append(Finding(_OLD_KEY, {"key": walk.key_id}, "old_key"))
    if not walk.seen:
        users = _users(session)
        if users:
            findings.append(Finding(_WIPED, {"users": users}, "wiped"))
    result = VerifyResult(not findings, walk.seen, findings=findings,
                          keyed=walk.key_id is not None, key_id=walk.key_id, checkpoints=checked,
                          last_event_id=walk.last_id or None,
                          head_hash=walk.prev if walk.count else None, linked=walk.count,
                          awaiting=len(walk.unlinked))
    if findings:
        result.broken_event_id = next((f.event_id for f in findings if f.event_id), None)
        result.message = "\n".join(str(f) for f in findings)
    else:
        result.findings = [summary(result)]
        if result.awaiting:
            result.findings.append(Finding(_AWAITING, {"n": result.awaiting}, "ok"))
        result.message = "\n".join(str(f) for f in result.findings)
    return result, walk


def summary(result: VerifyResult) -> Finding:
    """What a verification that found nothing says (a chain with events is keyed, or it would
    have said so)."""
    if not result.linked:
        return Finding(_INTACT_EMPTY, {"events": result.events}, "ok")
    return Finding(_INTACT, {"events": result.events, "key": result.key_id,
                             "checkpoints": result.checkpoints}, "ok")


def _users(session: Session) -> int:
    """How many users exist (each one's creation wrote an audit event)."""
    from flask_appbuilder.security.sqla.models import User

    if not inspect(session.connection()).has_table(User.__tablename__):
        return 0
    return session.scalar(select(func.count()).select_from(User))


def _logged_to_compare(session: Session, ring: Keyring, logged: Iterable[Checkpoint],
                       found: _Findings) -> list[Checkpoint]:
    """The logged checkpoints to compare with the chain: those missing from, or different in,
    the checkpoint table (reported as such); ones stored alike are compared once, as stored."""
    logged = list(logged)
    c = CHECKPOINT_TABLE.c
    stored = {}
    for n in range(0, len(logged), 500):
        ids = [cp.id for cp in logged[n:n + 500]]
        stored.update((r.id, _checkpoint_of(r)) for r in session.execute(
            select(CHECKPOINT_TABLE).where(c.id.in_(ids))))
    extra = []
    for cp in logged:
        twin = stored.get(cp.id)
        if twin == cp:
            continue
        if cp.check(ring) is None:  # a forged log line says nothing about the table
            found.add(Finding(_LOG_NOT_STORED if twin is None else _LOG_DIFFERS,
                              {"cp": cp.id}, "log"))
        extra.append(cp)
    return extra


def _tampering(findings: list[Finding]) -> list[Finding]:
    """The findings that say the trail or its checkpoints were tampered with (not that the chain
    still awaits `ims audit-rekey`)."""
    return [f for f in findings if f.kind in ("chain", "checkpoint", "log", "wiped")]


def verify_chain(session: Session, batch: int = 5000,
                 logged: Iterable[Checkpoint] = ()) -> VerifyResult:
    """Recompute every hash in order, and compare the chain with every checkpoint (and with
    checkpoints from the log, ``logged``): reports the first event whose hash or link is wrong,
    events missing from what a checkpoint recorded, checkpoints with a bad signature, and a
    chain that is not keyed. Writes nothing."""
    return _verify(session, batch, logged)[0]


# ---------------------------------------------------------------------------------------------
# checkpoints

def write_checkpoint(session: Session, events: int, last_event_id: int,
                     head_hash: str) -> Checkpoint:
    """Sign and store a checkpoint of the chain's head, commit, and log it."""
    ring = keyring_for(session)
    at = datetime.now(timezone.utc)
    values = {"created_at": at, "events": events, "last_event_id": last_event_id,
              "head_hash": head_hash, "key_id": ring.current_id,
              "signature": _sign(ring.current, at, events, last_event_id, head_hash)}
    new_id = session.execute(insert(CHECKPOINT_TABLE).values(values)).inserted_primary_key[0]
    session.commit()
    cp = Checkpoint(new_id, **values)
    log.info(cp.log_line())
    return cp


def _latest_checkpoint(session: Session, ring: Keyring, found: _Findings,
                       look_back: int = 50) -> Checkpoint | None:
    """The newest checkpoint whose signature holds (newer ones that do not are reported)."""
    c = CHECKPOINT_TABLE.c
    for row in session.execute(select(CHECKPOINT_TABLE).order_by(c.id.desc()).limit(look_back)):
        cp = _checkpoint_of(row)
        problem = cp.check(ring)
        if problem is None:
            return cp
        found.add(problem)
    return None


@dataclass
class CheckpointResult:
    ok: bool
    summary: str
    checkpoint: Checkpoint | None = None


def _link_at(session: Session, event_id: int):
    """(hash, key id) of an event's link: in audit_chain, or in its own row (before 0026)."""
    row = session.execute(select(CHAIN_TABLE.c.hash, CHAIN_TABLE.c.key_id).where(
        CHAIN_TABLE.c.event_id == event_id)).first()
    if row is None:
        t = AUDIT_TABLE.c
        row = session.execute(select(t.hash, t.key_id).where(t.id == event_id,
                                                             t.hash.is_not(None))).first()
    return row


def checkpoint(session: Session, batch: int = 5000) -> CheckpointResult:
    """The tick's job: link the events written since into the chain, check the events since the
    newest checkpoint (the whole chain if there is none) and sign the head if it moved. What is
    wrong is logged as an error and nothing is signed, except for checkpoints with a bad
    signature (the real chain's head is still signed)."""
    chained = chain_pending(session, batch)
    ring = keyring_for(session)
    found = _Findings()
    base = _latest_checkpoint(session, ring, found)
    walk = _Walk(ring)
    if base is not None:
        row = _link_at(session, base.last_event_id)
        if row is None or row.hash != base.head_hash:
            # The chain no longer holds what the checkpoint signed: name what is missing.
            problems = _tampering(verify_chain(session, batch).findings)
            session.rollback()
            return _failed(problems or [Finding("checkpoint %(cp)s no longer matches the chain",
                                                {"cp": base.id}, "checkpoint")])
        walk = _Walk(ring, base.head_hash, base.events, base.last_event_id, row.key_id)
    for rows in _rows_after(session, walk.last_id, batch):
        for r in rows:
            walk.feed(r)
        if walk.problem:
            break
    if walk.problem:
        session.rollback()
        return _failed([walk.problem, *found.items])
    for problem in found.items:
        log.error("audit checkpoint table: %s", problem)
    lines = [f"{chained.linked} events linked"]
    if chained.waiting:
        lines.append("writers in flight: the newest events wait for the next tick")
    lines += [str(f) for f in found.items]
    written_cp = None
    if not walk.count:
        session.rollback()
        lines.append("the chain is empty")
    elif base is not None and walk.last_id == base.last_event_id:
        session.rollback()
        lines.append(f"no new events since checkpoint {base.id}")
    else:
        written_cp = write_checkpoint(session, walk.count, walk.last_id, walk.prev)
        lines.append(f"checkpoint {written_cp.id}: {walk.count} events to event {walk.last_id}")
    if walk.count and walk.key_id is None:
        log.warning("audit: %s", Finding(_NOT_KEYED))
        lines.append(str(Finding(_NOT_KEYED)))
    return CheckpointResult(not found.items, "; ".join(lines), written_cp)


def _failed(problems: list[Finding]) -> CheckpointResult:
    for problem in problems:
        log.error("audit chain: %s", problem)
    return CheckpointResult(False, "audit chain BROKEN: " + "; ".join(str(p) for p in problems))


# ---------------------------------------------------------------------------------------------
# re-keying

@dataclass
class RekeyResult:
    ok: bool
    message: str
    event_id: int | None = None
    checkpoint: Checkpoint | None = None


def rekey(session: Session, accept_broken: bool = False, batch: int = 5000) -> RekeyResult:
    """`ims audit-rekey`: verify the chain and continue it under the configured key, recording
    the switch as an ``audit.rekey`` event, then sign a checkpoint. Does nothing to a chain
    already keyed with it or to an empty one (whose first link will be). A chain that does not
    verify is left alone unless ``accept_broken`` (the event then records what was wrong; the
    break stays visible to every verification)."""
    ring = keyring_for(session)
    chain_pending(session, batch)  # what was written so far goes on with the chain's key
    head_id, _, head_key = _chain_head(session)
    if not head_id:
        session.rollback()
        return RekeyResult(True, f"The audit chain is empty: its first link will be keyed with "
                                 f"audit key {ring.current_id}.")
    if head_key == ring.current_id:
        session.rollback()
        return RekeyResult(True, f"The audit trail is already keyed with audit key "
                                 f"{ring.current_id}: nothing to do.")
    result, walk = _verify(session, batch)
    problems = _tampering(result.findings)
    if problems and not accept_broken:
        session.rollback()
        return RekeyResult(False, "\n".join(str(p) for p in problems) + "\nThe audit trail was "
                           "not re-keyed (--accept-broken re-keys it all the same, recording "
                           "what is wrong).")
    reason = (f"Verified {walk.count} events; continued under audit key {ring.current_id}."
              if not problems else
              f"Continued under audit key {ring.current_id} although verification found: "
              + "; ".join(str(p) for p in problems))
    event_id = _append(session, REKEY_ACTION, "AuditTrail", None,
                       before={"scheme": "hmac-sha256" if walk.key_id else "sha256",
                               "key_id": walk.key_id},
                       after={"scheme": "hmac-sha256", "key_id": ring.current_id,
                              "events_verified": walk.count},
                       reason=reason)
    session.commit()
    # Linked with the configured key (the event is the switch); events written meanwhile by
    # others are linked before it with the chain's key, or after it with the new one.
    chain_pending(session, batch)
    walk.unlinked.clear()  # linked now: walked below, on from the head verified
    for rows in _rows_after(session, walk.last_id, batch):
        for r in rows:
            walk.feed(r)
    cp = write_checkpoint(session, walk.count, walk.last_id, walk.prev)
    return RekeyResult(True, f"{result.linked} events verified; event {event_id} records the "
                             f"switch to audit key {ring.current_id}; checkpoint {cp.id} signed.",
                       event_id, cp)


# ---------------------------------------------------------------------------------------------

def history_for(session: Session, entity: str, entity_id) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(
        AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id)
    ).order_by(AuditEvent.id.desc())))
