"""The audit trail against someone who can write to the database: TRUNCATE is refused; deleting
the newest events, rewriting events and recomputing their seals and the links after them (plain
SHA-256, or HMAC under a key other than the audit key), inserting a forged event, or forging a
checkpoint, is reported naming what is missing or altered; a forged event is never linked into
the chain; `ims audit-rekey` keys a chain from before audit keys.

Each test tampers with a database of its own holding only the audit tables (a schema of its own
on PostgreSQL, a file on SQLite), with the triggers the migrations install. An attacker with DDL
rights gets past those triggers as the tests do: dropping them on SQLite, disabling them as
superuser on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
from flask_appbuilder import Model
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from app.domain.errors import ConfigurationError
from app.models.audit import AuditChain, AuditCheckpoint, AuditEvent
from app.models.ddl import audit_append_only
from app.services import audit
from config import BASE_DIR

EVENTS = AuditEvent.__table__
CHECKPOINTS = AuditCheckpoint.__table__
CHAIN = AuditChain.__table__
GUARDED = ("audit_event", "audit_checkpoint", "audit_chain")


class Trail:
    """A database holding only the audit tables, with the app's audit keys."""

    def __init__(self, engine, cli_url: str):
        self.engine = engine
        self.cli_url = cli_url
        self.session = Session(engine)
        self.pg = engine.dialect.name == "postgresql"

    def write(self, n: int, tag: str = "e", link: bool = True) -> list[int]:
        """n events written as the app writes them, then linked by the chaining step as the
        worker does (unless not ``link``); returns the ids of all events."""
        for i in range(n):
            audit.record(self.session, "test.event", "Test", f"{tag}{i}", after={"n": i},
                         actor="tester")
        self.session.commit()
        if link:
            audit.chain_pending(self.session)
        return self.ids()

    def ids(self) -> list[int]:
        return list(self.session.scalars(select(EVENTS.c.id).order_by(EVENTS.c.id)))

    def rows(self) -> list[dict]:
        """Every event with its link (link_prev, link_hash, link_key_id; None if not linked)."""
        return [dict(r) for r in self.session.execute(
            select(*audit._WALK_COLUMNS).select_from(
                EVENTS.outerjoin(CHAIN, CHAIN.c.event_id == EVENTS.c.id))
            .order_by(EVENTS.c.id)).mappings()]

    def head(self) -> str:
        """The hash of the chain's last link."""
        return audit._chain_head(self.session)[1]

    def unguard(self) -> None:
        """What an attacker with DDL rights does first: get rid of the append-only triggers."""
        if self.pg:
            for table in GUARDED:
                self.session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for table in GUARDED:
                for op in ("update", "delete"):
                    self.session.execute(text(f"DROP TRIGGER {table}_no_{op}"))
        self.session.commit()

    def legacy(self, n: int) -> list[int]:
        """n events as the IMS wrote them before audit keys: plain SHA-256, no key id."""
        prev = audit._chain_head(self.session)[1] or audit.GENESIS
        for i in range(n):
            row = _row(f"legacy{i}", prev)
            row["key_id"] = None
            row["hash"] = audit.compute_hash(prev, row)
            self.session.execute(insert(EVENTS).values(row))
            prev = row["hash"]
        self.session.commit()
        return self.ids()

    def cli(self, command: str, *args):
        """`flask --app run ims <command>` on this database, in a process of its own."""
        return _flask(self.cli_url, "ims", command, *args)


def _row(entity_id: str, prev: str) -> dict:
    return {"occurred_at": datetime.now(timezone.utc), "actor": "tester", "action": "test.event",
            "entity": "Test", "entity_id": entity_id, "before": None,
            "after": json.dumps({"x": entity_id}), "reason": None, "prev_hash": prev}


def _flask(url: str, *args, env: dict | None = None):
    full = {**os.environ, "IMS_ENV": "testing", "TEST_DATABASE_URL": url, **(env or {})}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "run", *args], cwd=BASE_DIR,
                          env=full, capture_output=True, text=True, timeout=300)


@pytest.fixture
def trail(app):
    from app.extensions import db

    url = db.engine.url
    if url.get_backend_name() == "postgresql":
        schema = f"audit_tamper_{uuid.uuid4().hex[:8]}"
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        options = f"-csearch_path={schema}"
        engine = create_engine(url, connect_args={"options": options})
        cli_url = url.update_query_dict({"options": options}).render_as_string(
            hide_password=False)
    else:
        path = os.path.join(BASE_DIR, "instance", f"audit-tamper-{uuid.uuid4().hex[:8]}.db")
        engine = create_engine(f"sqlite:///{path}")
        cli_url = f"sqlite:///{path}"
    Model.metadata.create_all(engine, tables=[EVENTS, CHECKPOINTS, CHAIN])
    with engine.begin() as conn:
        audit_append_only(conn)
    audit.use_keyring(engine, audit.keyring_from_config(app.config))
    t = Trail(engine, cli_url)
    yield t
    t.session.close()
    engine.dispose()
    if t.pg:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    elif os.path.exists(path):
        os.remove(path)


WRONG_KEY = b"not-the-audit-key-" + b"x" * 20


def _forge(kind: str, data: bytes) -> str:
    """What an attacker without the audit key can compute: a plain SHA-256, or an HMAC under a
    key of their own."""
    if kind == "sha256":
        return hashlib.sha256(data).hexdigest()
    return hmac.new(WRONG_KEY, data, hashlib.sha256).hexdigest()


def _rechain(trail: Trail, from_id: int, kind: str, key_id=..., after='{"n":"forged"}') -> None:
    """Rewrite event ``from_id`` (its ``after``) and recompute, with ``kind``, its seal (or its
    own hash, for an event from before migration 0026) and every link after it, giving what it
    recomputes ``key_id`` (unless left out: they keep theirs)."""
    prev = None
    for row in trail.rows():
        link = row["link_hash"] if row["mac"] else row["hash"]
        if row["id"] < from_id:
            prev = link
            continue
        prev = prev or audit.GENESIS
        if row["id"] == from_id:
            row["after"] = after
        if key_id is not ...:
            row["key_id"] = row["link_key_id"] = key_id
        if row["mac"] is None:  # linked in its own row
            row["prev_hash"] = prev
            row["hash"] = _forge(kind, audit._payload(prev, row))
            trail.session.execute(text(
                "UPDATE audit_event SET after = :after, prev_hash = :prev_hash, hash = :hash, "
                "key_id = :key_id WHERE id = :id"), row)
            prev = row["hash"]
            continue
        if row["id"] == from_id:
            row["mac"] = _forge(kind, audit._payload(audit._EVENT_DOMAIN, row))
            trail.session.execute(text(
                "UPDATE audit_event SET after = :after, mac = :mac, key_id = :key_id "
                "WHERE id = :id"), row)
        if row["link_hash"] is not None:
            row["link_prev"] = prev
            row["link_hash"] = _forge(kind, f"{prev}|{row['id']}|{row['mac']}".encode())
            trail.session.execute(text(
                "UPDATE audit_chain SET prev_hash = :link_prev, hash = :link_hash, "
                "key_id = :link_key_id WHERE event_id = :id"), row)
            prev = row["link_hash"]
    trail.session.commit()


# ---------------------------------------------------------------------------------------------

def test_truncate_update_and_delete_are_refused_on_the_trail_its_chain_and_checkpoints(trail):
    ids = trail.write(3)
    audit.checkpoint(trail.session)
    statements = [("UPDATE audit_event SET actor = 'x' WHERE id = :i", {"i": ids[0]}),
                  ("DELETE FROM audit_event WHERE id = :i", {"i": ids[-1]}),
                  ("DELETE FROM audit_event", {}),
                  ("UPDATE audit_checkpoint SET events = 99", {}),
                  ("DELETE FROM audit_checkpoint", {}),
                  ("UPDATE audit_chain SET hash = 'x' WHERE event_id = :i", {"i": ids[0]}),
                  ("DELETE FROM audit_chain WHERE event_id = :i", {"i": ids[-1]})]
    if trail.pg:
        statements += [("TRUNCATE audit_event", {}), ("TRUNCATE audit_checkpoint", {}),
                       ("TRUNCATE audit_chain", {}),
                       ("TRUNCATE audit_event, audit_checkpoint, audit_chain", {})]
    for sql, params in statements:
        with pytest.raises(DatabaseError, match="append-only"):
            trail.session.execute(text(sql), params)
        trail.session.rollback()
    assert trail.ids() == ids
    assert trail.session.scalar(select(CHECKPOINTS.c.events)) == 3
    assert audit.verify_chain(trail.session).valid


def test_new_chain_is_keyed_and_verifies_against_its_checkpoints(app, trail):
    ids = trail.write(4)
    ring = audit.keyring_from_config(app.config)
    assert {r["key_id"] for r in trail.rows()} == {ring.current_id}  # sealed with the key
    assert {r["link_key_id"] for r in trail.rows()} == {ring.current_id}  # and linked with it
    first = audit.checkpoint(trail.session)
    assert first.ok and first.checkpoint.events == 4 and first.checkpoint.last_event_id == ids[-1]
    assert "no new events" in audit.checkpoint(trail.session).summary  # head did not move
    trail.write(2)
    second = audit.checkpoint(trail.session).checkpoint
    assert second.events == 6
    result = audit.verify_chain(trail.session)
    assert result.valid and result.keyed and result.key_id == ring.current_id
    assert result.checkpoints == 2 and result.events == 6
    assert "6 events, chain intact" in result.message


def test_deleting_the_newest_events_is_named(trail, caplog, tmp_path):
    ids = trail.write(12)
    with caplog.at_level(logging.INFO, logger="ims.audit"):
        cp = audit.checkpoint(trail.session).checkpoint
    assert cp.log_line() in caplog.text  # the log's copy, outside the database
    head = trail.head()
    trail.unguard()
    trail.session.execute(text("DELETE FROM audit_event WHERE id >= :i"), {"i": ids[9]})
    trail.session.execute(text("DELETE FROM audit_chain WHERE event_id >= :i"), {"i": ids[9]})
    trail.session.commit()

    result = audit.verify_chain(trail.session)
    assert not result.valid
    expected = (f"events {ids[9]}–{ids[11]} are missing: checkpoint {cp.id} at "
                f"{cp.created_at:%Y-%m-%d %H:%M:%S} UTC recorded 12 events ending in event "
                f"{ids[11]} (hash {head[:12]}…); the chain has 9 events up to there")
    assert result.message == expected
    assert result.broken_event_id == ids[9]
    cli = trail.cli("audit-verify")
    assert cli.returncode == 1
    assert expected in cli.stdout

    # The tick checks the chain against its newest checkpoint: it reports, and signs nothing.
    with caplog.at_level(logging.INFO, logger="ims.audit"):
        tick = audit.checkpoint(trail.session)
    assert not tick.ok and tick.checkpoint is None
    assert expected in tick.summary and expected in caplog.text

    # The app writes on after the deletion: the chain links again, the checkpoint still tells.
    trail.write(3, tag="after")
    result = audit.verify_chain(trail.session)
    assert not result.valid
    assert f"checkpoint {cp.id} at" in result.message
    assert not audit.checkpoint(trail.session).ok

    # Deleting the checkpoints too leaves a chain that verifies by itself; the log's copy of the
    # checkpoint does not.
    trail.session.execute(text("DELETE FROM audit_checkpoint"))
    trail.session.commit()
    assert audit.verify_chain(trail.session).valid
    log_file = tmp_path / "worker.log"
    log_file.write_text("INFO:werkzeug: noise\n" + caplog.text, encoding="utf-8")
    logged = audit.logged_checkpoints(log_file.read_text(encoding="utf-8").splitlines())
    assert [c.id for c in logged] == [cp.id]
    result = audit.verify_chain(trail.session, logged=logged)
    assert not result.valid
    assert f"checkpoint {cp.id} of the log is missing from the checkpoint table" in result.message
    assert f"checkpoint {cp.id} at" in result.message
    cli = trail.cli("audit-verify", "--log", str(log_file))
    assert cli.returncode == 1
    assert f"checkpoint {cp.id} of the log is missing" in cli.stdout


@pytest.mark.parametrize("kind, key_id, says", [
    ("sha256", ..., "does not match its seal"),
    ("sha256", None, "does not match its seal"),
    ("wrong-key", ..., "does not match its seal"),
    ("wrong-key", audit.key_id(WRONG_KEY), "which is not configured"),
], ids=["sha256", "sha256-unkeyed", "hmac-wrong-key", "hmac-wrong-key-own-id"])
def test_a_rewritten_and_rechained_event_is_named(trail, kind, key_id, says):
    ids = trail.write(10)
    cp = audit.checkpoint(trail.session).checkpoint
    trail.unguard()
    _rechain(trail, ids[3], kind, key_id)
    rows = trail.rows()
    assert [r["link_prev"] for r in rows[1:]] == [r["link_hash"] for r in rows[:-1]]  # links hold

    result = audit.verify_chain(trail.session)
    assert not result.valid
    assert result.broken_event_id == ids[3]
    assert result.message.splitlines()[0].startswith(f"event {ids[3]} ")
    assert says in result.message.splitlines()[0]
    assert f"event {ids[9]} does not match checkpoint {cp.id}" in result.message
    assert not audit.checkpoint(trail.session).ok


def test_a_relinked_chain_under_another_key_is_named(trail):
    """Events left as they were, but the links from the fourth on recomputed without the key."""
    ids = trail.write(6)
    trail.unguard()
    rows = trail.rows()
    prev = rows[2]["link_hash"]
    for row in rows[3:]:
        digest = _forge("wrong-key", f"{prev}|{row['id']}|{row['mac']}".encode())
        trail.session.execute(text("UPDATE audit_chain SET prev_hash = :p, hash = :h "
                                   "WHERE event_id = :i"), {"p": prev, "h": digest, "i": row["id"]})
        prev = digest
    trail.session.commit()
    result = audit.verify_chain(trail.session)
    assert not result.valid and result.broken_event_id == ids[3]
    assert result.message == f"event {ids[3]} was altered after it was written: its hash does " \
                             "not match its contents"


def test_a_forged_event_is_never_linked_and_is_named(trail, caplog):
    """INSERT is all it takes to add an event: without the audit key its seal cannot be right,
    so the chaining step leaves it out (and says so), and verification names it."""
    ids = trail.write(3)
    forged = {**_row("forged", audit.GENESIS), "prev_hash": None, "key_id": audit.keyring_for(
        trail.session).current_id}
    forged["mac"] = _forge("wrong-key", audit._payload(audit._EVENT_DOMAIN, forged))
    trail.session.execute(insert(EVENTS).values(forged))
    trail.session.commit()
    forged_id = trail.ids()[-1]
    with caplog.at_level(logging.ERROR, logger="ims.audit"):
        result = audit.chain_pending(trail.session)
    assert result.refused == [forged_id] and result.linked == 0
    assert f"event {forged_id} is not linked" in caplog.text
    assert trail.session.get(AuditChain, forged_id) is None
    check = audit.verify_chain(trail.session)
    assert not check.valid and check.broken_event_id == forged_id
    assert check.message == (f"event {forged_id} does not match its seal (MAC): it was altered "
                             "after it was written, or written by someone without the audit key")
    # The app writes on: its events are linked past the forged one, which stays named.
    trail.write(2, tag="after")
    assert all(r["link_hash"] for r in trail.rows() if r["id"] != forged_id)
    assert audit.verify_chain(trail.session).broken_event_id == forged_id
    assert not audit.checkpoint(trail.session).ok
    assert ids == trail.ids()[:3]


def test_an_event_left_out_of_the_chain_is_named(trail):
    """Deleting one link from the middle (the event stays): the next link no longer follows
    the chain, and the event is reported as left out."""
    ids = trail.write(5)
    trail.unguard()
    trail.session.execute(text("DELETE FROM audit_chain WHERE event_id = :i"), {"i": ids[2]})
    trail.session.commit()
    result = audit.verify_chain(trail.session)
    assert not result.valid and result.broken_event_id == ids[2]
    assert result.message.splitlines()[0] == (
        f"event {ids[2]} is not in the chain although later events are: its link was deleted, "
        "or it was inserted afterwards")


def test_unlinked_newest_events_verify_and_an_altered_one_is_named(trail):
    """Events the worker has not linked yet verify by their seal; altering one is named."""
    trail.write(2)
    ids = trail.write(3, tag="new", link=False)
    result = audit.verify_chain(trail.session)
    assert result.valid, result.message
    assert (result.events, result.linked, result.awaiting) == (5, 2, 3)
    assert "3 newest events are not linked into the chain yet" in result.message
    trail.unguard()
    trail.session.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE id = :i"),
                          {"i": ids[3]})
    trail.session.commit()
    result = audit.verify_chain(trail.session)
    assert not result.valid and result.broken_event_id == ids[3]
    assert "does not match its seal" in result.message


def test_a_forged_checkpoint_is_reported(app, trail):
    ids = trail.write(5)
    real = audit.checkpoint(trail.session).checkpoint
    rows = trail.rows()
    ring = audit.keyring_from_config(app.config)
    at = datetime.now(timezone.utc)
    # It claims the chain ended at event 3 (as if the rest were never written), under the real
    # key's id, signed with another key.
    trail.session.execute(insert(CHECKPOINTS).values(
        created_at=at, events=3, last_event_id=ids[2], head_hash=rows[2]["link_hash"],
        key_id=ring.current_id,
        signature=audit._sign(b"guessed-key-" + b"y" * 30, at, 3, ids[2], rows[2]["link_hash"])))
    trail.session.commit()
    forged = trail.session.scalar(select(CHECKPOINTS.c.id).order_by(CHECKPOINTS.c.id.desc()))

    result = audit.verify_chain(trail.session)
    assert not result.valid
    assert result.message == (f"checkpoint {forged} at {at:%Y-%m-%d %H:%M:%S} UTC has a bad "
                              "signature: it was forged or altered")
    assert result.checkpoints == 1  # the real one, which agrees

    # Altering a real checkpoint's values breaks its signature too.
    trail.unguard()
    trail.session.execute(text("UPDATE audit_checkpoint SET events = 4 WHERE id = :i"),
                          {"i": real.id})
    trail.session.commit()
    assert f"checkpoint {real.id} at" in audit.verify_chain(trail.session).message

    # The tick reports them, and still signs the real head when it moves.
    trail.write(1)
    tick = audit.checkpoint(trail.session)
    assert not tick.ok and "bad signature" in tick.summary
    assert tick.checkpoint is not None and tick.checkpoint.events == 6


def test_rekey_continues_an_unkeyed_chain_keyed(app, trail):
    ring = audit.keyring_from_config(app.config)
    trail.legacy(5)
    result = audit.verify_chain(trail.session)
    assert not result.valid and not result.keyed
    assert "the chain is not keyed" in result.message
    # Until the switch, new events continue the chain as it is (each is sealed with the key).
    trail.write(1, tag="before-rekey")
    assert trail.rows()[-1]["link_key_id"] is None
    assert trail.rows()[-1]["key_id"] == ring.current_id

    done = audit.rekey(trail.session)
    assert done.ok, done.message
    switch = trail.rows()[-1]
    assert switch["id"] == done.event_id and switch["action"] == audit.REKEY_ACTION
    assert switch["key_id"] == switch["link_key_id"] == ring.current_id
    assert json.loads(switch["after"])["events_verified"] == 6
    assert done.checkpoint.last_event_id == switch["id"] and done.checkpoint.events == 7
    assert "already keyed" in audit.rekey(trail.session).message

    ids = trail.write(2, tag="after-rekey")
    assert {r["link_key_id"] for r in trail.rows()[-2:]} == {ring.current_id}
    result = audit.verify_chain(trail.session)
    assert result.valid, result.message
    assert result.keyed and result.events == 9

    # An unkeyed event after the switch is tampering (INSERT is all it takes).
    prev = trail.head()
    sneaked = {**_row("sneaked", prev), "key_id": None}
    sneaked["hash"] = audit.compute_hash(prev, sneaked)
    trail.session.execute(insert(EVENTS).values(sneaked))
    trail.session.commit()
    sneaked_id = trail.ids()[-1]
    result = audit.verify_chain(trail.session)
    assert result.broken_event_id == sneaked_id
    assert result.message.startswith(f"event {sneaked_id} has a plain SHA-256 hash although the "
                                     "events before it are keyed")
    trail.unguard()
    trail.session.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": sneaked_id})
    trail.session.commit()
    assert audit.verify_chain(trail.session).valid

    # Rewriting the unkeyed part, even with consistent SHA-256 hashes, breaks the switch.
    _rechain(trail, trail.ids()[1], "sha256", None)
    result = audit.verify_chain(trail.session)
    assert not result.valid
    assert result.broken_event_id == switch["id"]
    assert ids[-1] == trail.ids()[-1]


def test_rekey_refuses_a_broken_chain_unless_told(trail):
    ids = trail.legacy(4)
    trail.unguard()
    trail.session.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE id = :i"),
                          {"i": ids[1]})
    trail.session.commit()
    refused = audit.rekey(trail.session)
    assert not refused.ok
    assert f"event {ids[1]} was altered after it was written" in refused.message
    assert trail.ids() == ids  # no switch written
    done = audit.rekey(trail.session, accept_broken=True)
    assert done.ok
    switch = trail.rows()[-1]
    assert switch["action"] == audit.REKEY_ACTION
    assert f"event {ids[1]} was altered" in switch["reason"]
    result = audit.verify_chain(trail.session)
    assert not result.valid and result.keyed  # the break stays on record; the chain is keyed
    assert result.broken_event_id == ids[1]


def test_cli_rekey_and_verify(trail):
    trail.legacy(3)
    before = trail.cli("audit-verify")
    assert before.returncode == 1 and "the chain is not keyed" in before.stdout
    rekeyed = trail.cli("audit-rekey")
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert "3 events verified" in rekeyed.stdout
    after = trail.cli("audit-verify")
    assert after.returncode == 0, after.stdout
    assert "4 events, chain intact, keyed with audit key" in after.stdout
    assert "checkpoint" in after.stdout and "signed" in after.stdout
    assert trail.rows()[-1]["actor"] == "audit-rekey"


def test_a_changed_key_goes_on_with_the_old_one_until_rekey(app, trail):
    old = audit.keyring_from_config(app.config)
    trail.write(3)
    audit.checkpoint(trail.session)
    new_key = "a-new-audit-key-after-rotation-0123456789"
    # A server with only the new key seals what it writes with it, but refuses to link it to
    # a chain keyed with another.
    audit.use_keyring(trail.engine, audit.Keyring(new_key))
    trail.write(1, link=False)
    with pytest.raises(ConfigurationError, match="IMS_AUDIT_KEY"):
        audit.chain_pending(trail.session)
    trail.session.rollback()
    assert trail.rows()[-1]["link_hash"] is None
    # With the old key among the previous ones, it goes on with the old key until re-keyed.
    audit.use_keyring(trail.engine, audit.Keyring(new_key, ["something-else", app.config[
        "IMS_AUDIT_KEY"]]))
    trail.write(1)
    assert [r["link_key_id"] for r in trail.rows()[-2:]] == [old.current_id] * 2
    assert trail.rows()[-1]["key_id"] == audit.key_id(new_key.encode())  # sealed with the new
    result = audit.verify_chain(trail.session)
    assert not result.valid and "earlier audit key" in result.message
    done = audit.rekey(trail.session)
    assert done.ok, done.message
    trail.write(1)
    new_id = audit.key_id(new_key.encode())
    assert [r["link_key_id"] for r in trail.rows()[-2:]] == [new_id, new_id]
    result = audit.verify_chain(trail.session)
    assert result.valid, result.message
    assert result.checkpoints == 2  # the old key's checkpoint and the switch's
    # Without the old key, its events and checkpoint no longer verify.
    audit.use_keyring(trail.engine, audit.Keyring(new_key))
    assert "which is not configured" in audit.verify_chain(trail.session).message


def test_an_emptied_trail_with_users_is_reported(trail):
    from flask_appbuilder.security.sqla.models import User

    assert audit.verify_chain(trail.session).valid  # a new database: nothing written yet
    User.__table__.create(trail.engine)
    trail.session.execute(insert(User.__table__).values(
        first_name="A", last_name="B", username="someone", email="a@example.invalid",
        active=True))
    trail.session.commit()
    result = audit.verify_chain(trail.session)
    assert not result.valid
    assert "the audit trail is empty although 1 users exist" in result.message


@pytest.fixture
def empty_database_url(app):
    from sqlalchemy.engine import make_url

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "postgresql":
        name = f"ims_audit_up_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        path = os.path.join(BASE_DIR, "instance", f"audit-up-{uuid.uuid4().hex[:8]}.db")
        yield f"sqlite:///{path}"
        if os.path.exists(path):
            os.remove(path)


def _revision_before_audit_keys() -> str:
    import importlib.util

    path = os.path.join(BASE_DIR, "migrations", "versions", "0007_audit_keyed.py")
    spec = importlib.util.spec_from_file_location("audit_keyed_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.down_revision


def test_an_upgraded_database_keeps_its_unkeyed_chain_until_rekey(empty_database_url):
    """A database from before audit keys: its events stay as they are, TRUNCATE is refused from
    the upgrade on, `ims audit-rekey` (which `make run` runs) continues the chain keyed; the
    downgrade works too."""
    before = _revision_before_audit_keys()
    up = _flask(empty_database_url, "db", "upgrade", before)
    assert up.returncode == 0, up.stderr[-3000:]
    engine = create_engine(empty_database_url)
    prev = audit.GENESIS
    with engine.begin() as conn:
        for i in range(3):  # as the IMS wrote events then: no key_id column yet
            row = _row(f"old{i}", prev)
            row["hash"] = audit.compute_hash(prev, row)
            conn.execute(text(
                "INSERT INTO audit_event (occurred_at, actor, action, entity, entity_id, before, "
                "after, reason, prev_hash, hash) VALUES (:occurred_at, :actor, :action, :entity, "
                ":entity_id, :before, :after, :reason, :prev_hash, :hash)"), row)
            prev = row["hash"]
    up = _flask(empty_database_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr[-3000:]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_event WHERE key_id IS NULL")
                            ).scalar() == 3
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute(text("TRUNCATE audit_event" if engine.dialect.name == "postgresql"
                              else "DELETE FROM audit_event"))
        conn.rollback()
    unkeyed = _flask(empty_database_url, "ims", "audit-verify")
    assert unkeyed.returncode == 1 and "the chain is not keyed" in unkeyed.stdout
    rekeyed = _flask(empty_database_url, "ims", "audit-rekey")
    assert rekeyed.returncode == 0, rekeyed.stdout + rekeyed.stderr
    verified = _flask(empty_database_url, "ims", "audit-verify")
    assert verified.returncode == 0, verified.stdout
    assert "4 events, chain intact, keyed" in verified.stdout

    down = _flask(empty_database_url, "db", "downgrade", before)
    assert down.returncode == 0, down.stderr[-3000:]
    with engine.connect() as conn:
        with pytest.raises(DatabaseError, match="append-only"):  # the guards are still there
            conn.execute(text("DELETE FROM audit_event"))
        conn.rollback()
    up = _flask(empty_database_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr[-3000:]
    engine.dispose()
