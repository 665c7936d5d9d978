"""Alembic: an empty database upgrades to head, and autogenerate then finds no difference."""

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from config import BASE_DIR


@pytest.fixture
def empty_database_url(app):
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "postgresql":
        name = f"ims_mig_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        path = os.path.join(BASE_DIR, "instance", f"mig-{uuid.uuid4().hex[:8]}.db")
        yield f"sqlite:///{path}"
        if os.path.exists(path):
            os.remove(path)


def _flask(url, *args):
    env = {**os.environ, "IMS_ENV": "testing", "TEST_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "run", *args], cwd=BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=300)


def test_upgrade_empty_database_to_head_then_no_autogenerate_diff(empty_database_url):
    up = _flask(empty_database_url, "db", "upgrade")
    assert up.returncode == 0, up.stderr[-3000:]
    engine = create_engine(empty_database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"fund", "audit_event", "ab_user", "alembic_version"} <= tables
    check = _flask(empty_database_url, "db", "check")
    assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]



def _row_counts(url):
    engine = create_engine(url)
    names = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.connect() as conn:
        counts = {t: conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{t}"').scalar() for t in names}
    engine.dispose()
    return counts


def test_make_run_setup_is_idempotent(empty_database_url):
    """What `make run` does (`ims setup --demo`: upgrade, audit-rekey, sync-roles,
    sync-workflows, seed --demo, in one process), twice: the second run changes nothing, not
    even the audit trail."""
    done = _flask(empty_database_url, "ims", "setup", "--demo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stdout.splitlines() if line.startswith("== ")] == [
        "== db upgrade", "== audit-rekey", "== sync-roles", "== sync-workflows", "== seed"]
    first = _row_counts(empty_database_url)
    assert first["workflow_definition"] >= 1
    assert first["account_holder"] >= 1000
    assert first["income_transaction"] > 200 and first["suspense_item"] > 0
    assert first["ab_user"] == 11  # the demo users (seed.DEMO_USERS and DEMO_SCOPED_USERS)
    assert first["user_fund_access"] == 11 and first["fund_group"] >= 1
    assert first["ab_permission_view_role"] > 100  # sync-roles gave the roles their permissions
    again = _flask(empty_database_url, "ims", "setup", "--demo")
    assert again.returncode == 0, again.stderr[-3000:]
    again = _row_counts(empty_database_url)
    # The second run's audit-rekey links the events the first run wrote into the chain (the
    # worker's job): the chain grows to cover the trail; nothing else changes.
    assert again.pop("audit_chain") == again["audit_event"] >= first.pop("audit_chain")
    assert again == first
    verify = _flask(empty_database_url, "ims", "audit-verify")
    assert verify.returncode == 0, verify.stdout


def test_setup_stops_at_the_first_step_that_fails(empty_database_url):
    """A database at a revision this code does not know (a newer IMS's): `ims setup` stops at
    the upgrade, naming the revision, and runs none of the steps after it."""
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    engine.dispose()
    done = _flask(empty_database_url, "ims", "setup", "--demo")
    assert done.returncode != 0
    assert "9999_from_the_future" in done.stderr
    assert "== audit-rekey" not in done.stdout
    engine = create_engine(empty_database_url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_every_revision_has_a_message():
    versions = os.path.join(BASE_DIR, "migrations", "versions")
    for name in os.listdir(versions):
        if name.endswith(".py"):
            text = open(os.path.join(versions, name), encoding="utf-8").read()
            first = text.splitlines()[0].strip('"')
            assert first and first != "empty message", name


def test_narratives_move_out_of_the_income_rows_and_back(empty_database_url):
    """0025: income_transaction.narrative moves to transaction_narrative (a row per non-empty
    narrative) and income rows become strictly append-only; the downgrade puts the narratives
    back in the column, with the guard that lets retention erase one."""
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    url = empty_database_url
    up = _flask(url, "db", "upgrade", "0020_fund_groups")
    assert up.returncode == 0, up.stderr[-3000:]
    engine = create_engine(url)
    insert = text("INSERT INTO income_transaction (id, receipt_number, fund_code, amount, "
                  "vat_amount, payment_method_code, narrative, transaction_date, created_by, "
                  "created_at, posting_group_id) VALUES (:i, 'RMIG1', 'HRA', 100, 0, 'CHQ', :n, "
                  "'2026-01-05', 'test', CURRENT_TIMESTAMP, 1)")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO posting_group (id, kind, number, created_at, created_by) "
                          "VALUES (1, 'receipt', 'RMIG1', CURRENT_TIMESTAMP, 'test')"))
        for i, narrative in ((1, "Paid by Siân Migration"), (2, None), (3, "")):
            conn.execute(insert, {"i": i, "n": narrative})
    try:
        up = _flask(url, "db", "upgrade")
        assert up.returncode == 0, up.stderr[-3000:]
        assert "narrative" not in {c["name"] for c in inspect(engine).get_columns(
            "income_transaction")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT transaction_id, narrative, fund_code "
                                     "FROM transaction_narrative ORDER BY transaction_id")
                                ).all() == [(1, "Paid by Siân Migration", "HRA")]
            for stmt in ("UPDATE income_transaction SET external_reference = NULL WHERE id = 1",
                         "DELETE FROM income_transaction WHERE id = 1"):
                with pytest.raises(DatabaseError, match="append-only"):
                    conn.execute(text(stmt))
                conn.rollback()
            with pytest.raises(DatabaseError, match="never changed"):
                conn.execute(text("UPDATE transaction_narrative SET narrative = 'x'"))
            conn.rollback()
        check = _flask(url, "db", "check")
        assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]

        down = _flask(url, "db", "downgrade", "0020_fund_groups")
        assert down.returncode == 0, down.stderr[-3000:]
        assert "transaction_narrative" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, narrative FROM income_transaction ORDER BY id")
                                ).all() == [(1, "Paid by Siân Migration"), (2, None), (3, None)]
            with pytest.raises(DatabaseError, match="append-only"):
                conn.execute(text("UPDATE income_transaction SET amount = 5 WHERE id = 1"))
            conn.rollback()
            # 0019's guard again: erasing a narrative is the one change allowed
            conn.execute(text("UPDATE income_transaction SET narrative = NULL WHERE id = 1"))
            conn.commit()
        up = _flask(url, "db", "upgrade")
        assert up.returncode == 0, up.stderr[-3000:]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM transaction_narrative")).scalar() == 0
    finally:
        engine.dispose()
