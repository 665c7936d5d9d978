"""Audit trail: every reference-data/user/role change recorded, hash-chained, tamper-evident."""

import json
import subprocess
import sys

from sqlalchemy import func, select, text

from app.models.audit import AuditEvent
from app.models.reference import Fund, VatCode
from app.services.audit import reason_for, verify_chain
from tests.conftest import unique


def _events(session, entity, entity_id):
    return list(session.scalars(select(AuditEvent).where(
        AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id)).order_by(AuditEvent.id)))


def test_create_update_recorded_with_before_after_and_reason(session):
    code = unique("F")
    fund = Fund(code=code, name="Before name")
    session.add(fund)
    session.commit()
    with reason_for("renamed after restructure"):
        fund.name = "After name"
        session.commit()
    events = _events(session, "Fund", fund.id)
    assert [e.action for e in events] == ["create", "update"]
    assert json.loads(events[0].after)["code"] == code
    assert json.loads(events[1].before) == {"name": "Before name"}
    assert json.loads(events[1].after) == {"name": "After name"}
    assert events[1].reason == "renamed after restructure"
    assert events[1].occurred_at.tzinfo is not None


def test_user_and_role_changes_are_audited_without_password(app, session):
    sm = app.appbuilder.sm
    name = unique("u").lower()
    user = sm.add_user(name, "Test", "User", f"{name}@example.invalid", [sm.find_role("Cashier")],
                       password="Str0ng!Passw")
    events = _events(session, "User", user.id)
    assert events and events[0].action == "create"
    after = json.loads(events[0].after)
    assert after["password"] == "***"
    assert "Cashier" in str(after["roles"])


def test_chain_verifies_and_detects_an_edited_row(app, session):
    session.add(VatCode(code=unique("V", 6), name="Tamper test", rate=0))
    session.commit()
    assert verify_chain(session).valid
    victim = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    original = victim.after
    dialect = session.get_bind().dialect.name
    # The table refuses updates; an attacker with DDL rights disables the guard first.
    if dialect == "postgresql":
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
    else:
        session.execute(text("DROP TRIGGER audit_event_no_update"))
    session.execute(text("UPDATE audit_event SET after = :a WHERE id = :i"),
                    {"a": '{"rate":"0.99"}', "i": victim.id})
    session.commit()
    try:
        result = verify_chain(session)
        assert not result.valid
        assert result.broken_event_id == victim.id
        assert str(victim.id) in result.message
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "ims", "audit-verify"],
                             capture_output=True, text=True, env=_cli_env(app))
        assert cli.returncode == 1
        assert f"event {victim.id}" in cli.stdout
    finally:
        session.execute(text("UPDATE audit_event SET after = :a WHERE id = :i"),
                        {"a": original, "i": victim.id})
        if dialect == "postgresql":
            session.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
        session.commit()
        from app.models.ddl import audit_append_only

        with session.get_bind().begin() as conn:
            audit_append_only(conn)
    assert verify_chain(session).valid


def _cli_env(app):
    import os

    env = dict(os.environ)
    env["IMS_ENV"] = "testing"
    env["TEST_DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    return env


def test_audit_rows_cannot_be_updated_or_deleted(session):
    import pytest
    from sqlalchemy.exc import DatabaseError

    row_id = session.scalar(select(AuditEvent.id).limit(1))
    with pytest.raises(DatabaseError):
        session.execute(text("UPDATE audit_event SET actor = 'x' WHERE id = :i"), {"i": row_id})
        session.flush()
    session.rollback()
    with pytest.raises(DatabaseError):
        session.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": row_id})
        session.flush()
    session.rollback()


def test_verify_api_for_auditor_and_not_clerk(api):
    resp = api("auditor").get("/api/v1/audit/verify")
    assert resp.status_code == 200
    assert resp.json["valid"] is True, resp.json
    assert resp.json["events"] > 0
    assert resp.json["keyed"] is True
    assert "chain intact" in resp.json["message"]
    assert resp.json["linked"] + resp.json["awaiting"] == resp.json["events"]
    assert api("clerk").get("/api/v1/audit/verify").status_code == 403


def test_the_worker_links_new_events_between_ticks(app, session):
    """`ims worker` links the events requests wrote every IMS_AUDIT_CHAIN_INTERVAL seconds, not
    only at its tick."""
    import time

    from app.cli import _link_audit_events_until
    from app.models.audit import AuditChain
    from app.services import audit

    tag = unique("between")
    audit.record(session, "test.between", "Test", tag, actor="tester")
    session.commit()
    event_id = session.scalar(select(AuditEvent.id).where(AuditEvent.entity_id == tag))
    assert session.get(AuditChain, event_id) is None
    app.config["IMS_AUDIT_CHAIN_INTERVAL"] = 0.1
    try:
        _link_audit_events_until(time.monotonic() + 0.5)
    finally:
        app.config["IMS_AUDIT_CHAIN_INTERVAL"] = 2.0
    session.expire_all()
    assert session.get(AuditChain, event_id) is not None
    assert verify_chain(session).valid


def test_tick_signs_a_checkpoint_of_the_head_and_logs_it(app, session, caplog):
    import logging

    from app.services import audit

    import threading

    # an import or account sync that an earlier test started in the background (under
    # pytest-xdist this file can follow any other) would add events between the two ticks
    for thread in threading.enumerate():
        if thread.name.startswith(("import-", "account-sync-")):
            thread.join(120)
    runner = app.test_cli_runner()
    with caplog.at_level(logging.INFO, logger="ims.audit"):
        out = runner.invoke(args=["ims", "tick"])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("audit-checkpoint: "))
    result = verify_chain(session)
    assert result.valid, result.message
    newest = audit._latest_checkpoint(session, audit.keyring_for(session), audit._Findings())
    assert result.awaiting == 0 and result.linked == result.events  # the tick linked them all
    assert line.startswith("audit-checkpoint: ") and " events linked; " in line
    assert line.endswith(f"checkpoint {newest.id}: {result.events} events to event "
                         f"{result.last_event_id}")
    assert newest.log_line() in caplog.text
    assert (newest.events, newest.last_event_id, newest.head_hash) == (
        result.events, result.last_event_id, result.head_hash)
    assert result.checkpoints >= 1
    again = runner.invoke(args=["ims", "tick"]).output
    session.rollback()
    since = session.execute(select(AuditEvent.id, AuditEvent.action, AuditEvent.actor)
                            .where(AuditEvent.id > newest.last_event_id)).all()
    if "still waiting for the provider" in again:
        # an approved card refund an earlier test left with the provider down: each tick's
        # attempt is audited, so the checkpoint moves on past exactly those events
        assert {action for _, action, _ in since} == {"refund.payment_pending"}, since
        assert f"events to event {since[-1][0]}" in again, again
    else:
        assert again.count("no new events since checkpoint") == 1, (again, since)


def test_production_refuses_to_start_without_its_own_audit_key(tmp_path):
    import os

    import pytest

    from app import _check_production, create_app
    from app.domain.errors import ConfigurationError
    from config import DEFAULT_AUDIT_KEY, ProductionConfig

    secret = "s" * 64

    class FakeApp:
        config = {"IMS_ENV": "production", "SECRET_KEY": secret}

    for bad in (None, "", "short-key", DEFAULT_AUDIT_KEY, secret):
        FakeApp.config["IMS_AUDIT_KEY"] = bad
        with pytest.raises(ConfigurationError, match="IMS_AUDIT_KEY"):
            _check_production(FakeApp())
    FakeApp.config["IMS_AUDIT_KEY"] = "a" * 32
    _check_production(FakeApp())

    unset = type("NoAuditKey", (ProductionConfig,), {"SECRET_KEY": secret, "IMS_AUDIT_KEY": ""})
    with pytest.raises(ConfigurationError, match="IMS_AUDIT_KEY"):
        create_app(unset)
    env = {k: v for k, v in os.environ.items() if k != "IMS_AUDIT_KEY"}
    env.update(IMS_ENV="production", SECRET_KEY=secret,
               DATABASE_URL=f"sqlite:///{tmp_path / 'prod.db'}")
    started = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "ims", "audit-verify"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert started.returncode != 0
    assert "IMS_AUDIT_KEY must be set" in started.stderr


def test_record_page_shows_its_history(as_user, session):
    client = as_user("admin")
    fund = session.scalar(select(Fund).where(Fund.code == "CTAX"))
    resp = client.get(f"/fundview/show/{fund.id}")
    assert resp.status_code == 200
    assert b"History" in resp.data
    assert b"seed" in resp.data  # the seed created it


def test_auditor_browses_trail_with_filters(as_user):
    client = as_user("auditor")
    resp = client.get("/auditeventview/list/?_flt_0_entity=Fund")
    assert resp.status_code == 200
    assert b"Fund" in resp.data
    verified = client.get("/auditeventview/verify/", follow_redirects=True)
    assert verified.status_code == 200
    assert b"chain intact, keyed with audit key" in verified.data


def test_an_event_page_shows_its_seal_and_its_link(app, as_user, session):
    from app.services import audit

    tag = unique("show")
    audit.record(session, "test.show", "Test", tag, actor="tester")
    session.commit()
    event = session.scalar(select(AuditEvent).where(AuditEvent.entity_id == tag))
    client = as_user("auditor")
    page = client.get(f"/auditeventview/show/{event.id}")
    assert page.status_code == 200
    assert b"Seal (MAC)" in page.data and event.mac.encode() in page.data
    audit.chain_pending(session)
    link = session.get(audit.AuditChain, event.id)
    page = client.get(f"/auditeventview/show/{event.id}")
    assert link.hash.encode() in page.data and link.prev_hash.encode() in page.data


def test_concurrent_writers_and_the_chaining_step_keep_one_unbroken_chain(app, session):
    """Writers in parallel transactions write sealed events while the chaining step runs again
    and again beside them: afterwards every event is linked exactly once, in event order, no two
    links claim the same predecessor, and the chain verifies."""
    import threading
    import time

    from app.extensions import db
    from app.models.audit import AuditChain
    from app.services import audit

    tag = unique("chain")
    errors = []
    barrier = threading.Barrier(5)
    done = threading.Event()

    def writer(i):
        with app.app_context():
            try:
                barrier.wait()
                for n in range(5):
                    audit.record(db.session, "test.concurrent", "Test", f"{tag}-{i}-{n}",
                                 after={"n": n}, actor="tester")
                    time.sleep(0.002)
                    audit.record(db.session, "test.concurrent", "Test", f"{tag}-{i}-{n}b",
                                 after={"n": n}, actor="tester")
                    db.session.commit()
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    def chainer():
        with app.app_context():
            try:
                barrier.wait()
                while not done.is_set():
                    audit.chain_pending(db.session)
                    time.sleep(0.005)
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    chaining = threading.Thread(target=chainer)
    for t in [*threads, chaining]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    chaining.join()
    assert not errors, errors
    assert not audit.chain_pending(session).refused
    ids = session.scalars(select(AuditEvent.id).where(
        AuditEvent.action == "test.concurrent", AuditEvent.entity_id.like(f"{tag}-%"))).all()
    assert len(ids) == 40
    links = session.execute(select(AuditChain.event_id, AuditChain.prev_hash)
                            .where(AuditChain.event_id.in_(ids))).all()
    assert sorted(e for e, _ in links) == sorted(ids)  # each linked, once
    assert len({prev for _, prev in links}) == 40  # no two claim the same predecessor
    result = verify_chain(session)
    assert result.valid, result.message
    assert result.awaiting == 0 and result.linked == result.events


def test_writers_do_not_wait_for_each_other_and_the_chain_waits_for_writers(app, session):
    """PostgreSQL hands out event ids before commit. A writer whose transaction is still open
    does not hold up another writer (no chain lock on the request path); the chaining step does
    not link past the open writer's event (it would be left behind the head), and links both, in
    id order, once it commits."""
    import threading
    import time

    import pytest
    from sqlalchemy import text

    from app.extensions import db
    from app.models.audit import AuditChain
    from app.services import audit

    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids are settled at commit")
    audit.chain_pending(session)
    tag = unique("inflight")
    from sqlalchemy.orm import Session as PlainSession

    slow = PlainSession(db.engine)
    fast = PlainSession(db.engine)
    try:
        audit.record(slow, "test.slow", "Test", tag, actor="tester")
        audit.write_pending(slow)  # written, not committed: its id is taken
        slow_id = slow.scalar(select(func.max(AuditEvent.id)))
        # The chaining step tries for a moment without writers in flight (there is none: the
        # slow one is open); meanwhile a writer is not held behind it, nor behind the open one.
        audit.record(fast, "test.visible", "Test", tag + "v", actor="tester")
        fast.commit()  # something new to link, behind the open writer's event
        tries = []
        chainer = PlainSession(db.engine)
        trying = threading.Thread(target=lambda: tries.append(audit.chain_pending(chainer)))
        trying.start()
        time.sleep(0.05)
        fast.execute(text("SET LOCAL lock_timeout = '50ms'"))
        audit.record(fast, "test.fast", "Test", tag, actor="tester")
        fast.commit()  # would fail on the lock timeout if it queued behind anything
        trying.join()
        chainer.close()
        assert tries[0].waiting and tries[0].linked == 0
        fast_id = session.scalar(select(AuditEvent.id).where(AuditEvent.entity_id == tag,
                                                             AuditEvent.action == "test.fast"))
        assert fast_id > slow_id
        waited = audit.chain_pending(session)
        assert waited.waiting and not session.get(AuditChain, fast_id)
        slow.commit()
        linked = audit.chain_pending(session)
        assert not linked.waiting and linked.linked >= 3
        mine = session.scalars(select(AuditEvent.id).where(AuditEvent.entity_id.in_(
            [tag, tag + "v"])).order_by(AuditEvent.id)).all()
        assert mine[0] == slow_id and mine[-1] == fast_id and len(mine) == 3
        chain = session.scalars(select(AuditChain).where(AuditChain.event_id >= slow_id)
                                .order_by(AuditChain.event_id)).all()
        assert [c.event_id for c in chain][:3] == mine
        assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:]))  # in id order
        assert verify_chain(session).valid
    finally:
        slow.close()
        fast.close()


def test_a_prepared_event_is_written_by_its_caller(session):
    """audit.prepare seals an event the caller inserts in a statement of its own (the session's
    waiting events are written first); the chaining step links them all in order."""
    from app.models.audit import AuditChain
    from app.services import audit

    tag = unique("prep")
    audit.record(session, "test.before", "Test", tag, actor="tester")
    row = audit.prepare(session, "test.prepared", "Test", tag, after={"n": 1}, actor="tester")
    assert row["mac"] and row["hash"] is None
    audit.record(session, "test.other", "Test", tag, actor="tester")
    session.connection().execute(audit.AUDIT_TABLE.insert(), row)
    session.commit()
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == tag)
                              .order_by(AuditEvent.id)).all()
    assert actions == ["test.before", "test.prepared", "test.other"]
    audit.prepare(session, "test.dropped", "Test", tag, actor="tester")
    session.rollback()  # nothing was written
    audit.chain_pending(session)
    ids = session.scalars(select(AuditEvent.id).where(AuditEvent.entity_id == tag)).all()
    assert session.scalar(select(func.count()).select_from(AuditChain).where(
        AuditChain.event_id.in_(ids))) == 3
    assert verify_chain(session).valid


def test_events_wait_for_commit_and_go_with_a_rollback(session):
    """A use case's events are chained and written just before it commits (so the chain's lock
    is held from then to the commit only), in the order recorded and with the time recorded; a
    read of the trail in the same transaction sees them; a rollback drops them with the work."""
    import datetime as dt

    from app.services import audit

    tag = unique("wait")
    before = dt.datetime.now(dt.timezone.utc)
    audit.record(session, "test.first", "Test", tag, actor="tester")
    audit.record(session, "test.second", "Test", tag, actor="tester")
    assert len(session.info.get("ims_audit_pending")) == 2  # waiting in the session, unwritten
    seen = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == tag)
                           .order_by(AuditEvent.id)).all()
    assert seen == ["test.first", "test.second"]  # the transaction reads its own events
    session.commit()
    rows = session.execute(select(AuditEvent.action, AuditEvent.occurred_at).where(
        AuditEvent.entity_id == tag).order_by(AuditEvent.id)).all()
    assert [a for a, _ in rows] == ["test.first", "test.second"]
    assert all(at >= before - dt.timedelta(seconds=1) for _, at in rows)

    gone = unique("gone")
    audit.record(session, "test.rolled_back", "Test", gone, actor="tester")
    session.rollback()
    audit.record(session, "test.kept", "Test", gone, actor="tester")
    session.commit()
    assert session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity_id == gone)).all() == ["test.kept"]
    assert verify_chain(session).valid


def test_reference_data_changed_at_commit_is_audited(session):
    """An object still dirty when commit is called is flushed before the waiting events are
    written, so its change is audited too."""
    fund = session.scalar(select(Fund).where(Fund.code == "TWS"))
    old = fund.name
    fund.name = old + " (renamed)"
    session.commit()  # no explicit flush before the commit
    fund.name = old
    session.commit()
    names = [json.loads(a or "{}").get("name") for a in session.scalars(
        select(AuditEvent.after).where(AuditEvent.entity == "Fund",
                                       AuditEvent.entity_id == str(fund.id),
                                       AuditEvent.action == "update")
        .order_by(AuditEvent.id.desc()).limit(2))]
    assert names == [old, old + " (renamed)"]
