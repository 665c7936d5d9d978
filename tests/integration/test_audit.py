"""Audit trail: every reference-data/user/role change recorded, hash-chained, tamper-evident."""

import json
import subprocess
import sys

from sqlalchemy import select, text

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
    assert api("clerk").get("/api/v1/audit/verify").status_code == 403


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
    assert line == (f"audit-checkpoint: checkpoint {newest.id}: {result.events} events to event "
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


def test_concurrent_writers_keep_one_unbroken_chain(app, session):
    """Writers in parallel transactions each take the chain's lock (an advisory lock on
    PostgreSQL, the write lock on SQLite) before reading the last hash; every event still links
    to the one written before it."""
    import threading
    import time

    from app.extensions import db
    from app.services import audit

    tag = unique("chain")
    errors = []
    barrier = threading.Barrier(4)

    def writer(i):
        with app.app_context():
            try:
                barrier.wait()
                for n in range(5):
                    audit.record(db.session, "test.concurrent", "Test", f"{tag}-{i}-{n}",
                                 after={"n": n}, actor="tester")
                    time.sleep(0.002)  # hold the lock a moment so the others queue behind it
                    audit.record(db.session, "test.concurrent", "Test", f"{tag}-{i}-{n}b",
                                 after={"n": n}, actor="tester")
                    db.session.commit()
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = session.execute(select(AuditEvent.prev_hash, AuditEvent.hash).where(
        AuditEvent.action == "test.concurrent", AuditEvent.entity_id.like(f"{tag}-%"))).all()
    assert len(rows) == 40
    assert len({prev for prev, _ in rows}) == 40  # no two events claim the same predecessor
    assert verify_chain(session).valid


def test_a_prepared_event_is_written_by_its_caller_before_any_other(session):
    """audit.prepare links an event the caller inserts in a statement of its own; until it says
    the row is written no other event may be chained (that would fork the chain): one recorded
    meanwhile waits, and is chained after it at commit."""
    import pytest

    from app.services import audit

    tag = unique("prep")
    row = audit.prepare(session, "test.prepared", "Test", tag, after={"n": 1}, actor="tester")
    audit.record(session, "test.other", "Test", tag, actor="tester")
    with pytest.raises(RuntimeError):
        audit.write_pending(session)
    session.connection().execute(audit.AUDIT_TABLE.insert(), row)
    audit.written(session, row)
    audit.record(session, "test.after", "Test", tag, actor="tester")
    session.commit()
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == tag)
                              .order_by(AuditEvent.id)).all()
    assert actions == ["test.prepared", "test.other", "test.after"]
    audit.prepare(session, "test.dropped", "Test", tag, actor="tester")
    session.rollback()  # nothing was written; the next event links to the real end of the chain
    audit.record(session, "test.after_rollback", "Test", tag, actor="tester")
    session.commit()
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
    assert not session.connection().info.get("ims_audit_last")  # nothing chained yet, no lock
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
