"""Operators' endpoints and tools: /healthz, /readyz, /metrics, request ids in JSON logs with no
personal data or secrets, and backup/restore (both databases)."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from app.models.reference import AccountHolder
from app.services import ledger as L
from tests.conftest import unique
from tests.integration.test_migrations import _flask, empty_database_url  # noqa: F401 (fixture)


# --------------------------------------------------------------------------- health, readiness
def test_healthz_answers_without_a_login(client):
    client.get("/logout/")
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


def test_readyz_checks_the_database_and_the_worker(app, client, session):
    from app.services.operations import record_tick

    client.get("/logout/")
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.json
    assert resp.json["checks"]["database"]["ok"] is True
    app.config["IMS_WORKER_STALE_SECONDS"] = 60
    try:
        session.execute(text("DELETE FROM worker_heartbeat"))
        session.commit()
        resp = client.get("/readyz")
        assert resp.status_code == 503 and resp.json["checks"]["worker"]["ok"] is False
        record_tick(session, "test: nothing due", worker="test-worker:1")
        resp = client.get("/readyz")
        assert resp.status_code == 200 and resp.json["checks"]["worker"]["ok"] is True
    finally:
        app.config["IMS_WORKER_STALE_SECONDS"] = 0


def test_readyz_wants_the_migrations_at_head(app, empty_database_url):  # noqa: F811
    from app.services.operations import readiness

    assert _flask(empty_database_url, "db", "upgrade").returncode == 0
    engine = create_engine(empty_database_url)
    try:
        with Session(engine) as s:
            assert readiness(s, app).checks["migrations"]["ok"] is True
        assert _flask(empty_database_url, "db", "downgrade", "--", "-1").returncode == 0
        with Session(engine) as s:
            result = readiness(s, app)
        assert result.ready is False and result.checks["migrations"]["ok"] is False
        assert result.checks["migrations"]["head"] != result.checks["migrations"]["current"]
    finally:
        engine.dispose()


def test_a_failing_job_is_rolled_back_and_the_tick_goes_on(app, session, monkeypatch, caplog):
    """A job that raises (say, a card provider down): what it wrote is rolled back, its line and
    the log say it failed, the jobs after it run, the tick ends with its checkpoint and
    heartbeat, and `ims tick` exits 0 (the worker's loop goes on to the next tick)."""
    from app.extensions import db
    from app.models.operations import WorkerHeartbeat
    from app.services import jobs

    ref = unique("JOB", 10)

    def exploding():
        db.session.add(AccountHolder(fund_code="HRA", account_reference=ref, name="Half-done"))
        db.session.flush()
        raise RuntimeError("the provider is down")

    ran = []
    monkeypatch.setattr(jobs, "_JOBS", [("exploding", exploding),
                                        ("after", lambda: ran.append(1) or "ran")])
    with caplog.at_level(logging.ERROR):
        result = app.test_cli_runner().invoke(args=["ims", "tick"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["exploding: failed: RuntimeError", "after: ran"] and ran == [1]
    assert lines[2].startswith("audit-checkpoint: ")
    assert any(r.exc_info and "exploding" in r.getMessage() for r in caplog.records)
    session.expire_all()
    assert session.scalar(select(AccountHolder).where(
        AccountHolder.account_reference == ref)) is None
    beat = session.scalar(select(WorkerHeartbeat).order_by(
        WorkerHeartbeat.last_tick_at.desc()).limit(1))
    assert beat.last_summary.startswith("exploding: failed: RuntimeError; after: ran")


# --------------------------------------------------------------------------- metrics
def test_metrics_are_counted_and_guarded(app, client, api):
    from app.extensions import db
    from app.services.receipts import take_receipt

    api("clerk").get("/api/v1/transactions/?page_size=1")
    take_receipt(db.session, lines=[{"fund_code": "TWS", "account_reference": unique("MT"),
                                     "amount": "2.50"}], payment_method_code="CASH",
                 actor="cashier")
    client.get("/logout/")
    resp = client.get("/metrics")  # the test client comes from 127.0.0.1: allowed by default
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    text = resp.get_data(as_text=True)
    assert 'ims_http_requests_total{method="GET",route="/api/v1/transactions/",status="200"}' in text
    assert "ims_receipts_total" in text and "ims_due_timers" in text
    assert "ims_queued_imports" in text and "ims_worker_last_tick_age_seconds" in text
    before = _sample(text, "ims_receipts_total")
    take_receipt(db.session, lines=[{"fund_code": "TWS", "account_reference": unique("MT"),
                                     "amount": "1.00"}], payment_method_code="CASH",
                 actor="cashier")
    assert _sample(client.get("/metrics").get_data(as_text=True), "ims_receipts_total") == before + 1
    elsewhere = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=elsewhere).status_code == 403
    app.config["IMS_METRICS_TOKEN"] = "metrics-token-for-tests-0123456789"
    try:
        assert client.get("/metrics", environ_base=elsewhere, headers={
            "Authorization": "Bearer wrong"}).status_code == 403
        assert client.get("/metrics", environ_base=elsewhere, headers={
            "Authorization": "Bearer metrics-token-for-tests-0123456789"}).status_code == 200
    finally:
        app.config["IMS_METRICS_TOKEN"] = ""


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


# --------------------------------------------------------------------------- request ids, logs
def test_every_response_carries_a_request_id(client):
    resp = client.get("/healthz")
    assert len(resp.headers["X-Request-ID"]) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"}).headers[
        "X-Request-ID"] == "lb-7f3a.1"
    given = client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 80})
    assert given.headers["X-Request-ID"] != "<script>" + "x" * 80  # not echoed: a fresh id


@pytest.fixture
def json_log(app):
    """Everything logged during the test, as the production JSON lines."""
    from app.observability import JsonFormatter, RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter([app.config["SECRET_KEY"], app.config["IMS_AUDIT_KEY"]]))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("ims.request").setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_logs_are_json_with_request_ids_and_hold_no_personal_data_or_secrets(app, session, api,
                                                                               json_log,
                                                                               monkeypatch):
    """A working session of a clerk and a cashier, with the demo payers' names in play (receipts
    for their accounts, a refund to a named payee, an import whose narratives name them, a search
    for a surname, a failing request): no name, and neither key, reaches the log."""
    from app.services import imports as svc

    holders = session.execute(select(AccountHolder.fund_code, AccountHolder.account_reference,
                                     AccountHolder.name).where(AccountHolder.name.is_not(None),
                                                               AccountHolder.stop_message.is_(None))
                              .order_by(AccountHolder.id).limit(5)).all()
    assert len(holders) == 5
    names = [n for _, _, n in holders]
    clerk = api("clerk")
    for fund, ref, name in holders[:3]:
        resp = clerk.post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
            {"fund_code": fund, "account_reference": ref, "amount": "3.00",
             "narrative": f"Paid by {name}"}]}, headers={"X-Request-ID": "req-receipt-1"})
        assert resp.status_code in (201, 422), resp.json
    surname = names[0].split()[-1]
    assert clerk.get(f"/api/v1/transactions/?q={surname}").status_code in (200, 400)
    clerk.post("/api/v1/refunds", json={"transaction_id": 999_999, "amount": "1.00",
                                        "reason": f"{names[1]} asked", "method": "cheque",
                                        "payee": {"name": names[1]}})
    body = ("transaction_date,account_reference,amount,narrative\n"
            + "".join(f"2026-05-0{i + 1},{unique('LG', 9)},4.00,{names[i]} PAYMENT\n"
                      for i in range(3)))
    # queued by the request, posted later by the worker's job (not in a thread of the request)
    monkeypatch.setattr(svc, "start_background", lambda app_, batch_id: None)
    resp = clerk.post("/api/v1/imports/", data={"format": "ims_csv", "file": (
        io.BytesIO(body.encode()), "names.csv")}, content_type="multipart/form-data",
        headers={"X-Request-ID": "req-import-77"})
    assert resp.status_code == 201, resp.json
    batch_id = resp.json["id"]
    assert f"{batch_id}:succeeded" in (svc.run_queued() or "")
    log = json_log.getvalue()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert lines, "something was logged"
    assert any(x["logger"] == "ims.request" and x["route"] == "/api/v1/receipts"
               and x["request_id"] == "req-receipt-1" for x in lines)
    # the worker's lines for the import carry the id of the request that received the file
    assert any(x["request_id"] == "req-import-77" and f"import {batch_id} succeeded" in x["message"]
               for x in lines)
    for secret in (app.config["SECRET_KEY"], app.config["IMS_AUDIT_KEY"]):
        assert secret not in log
    for name in names:
        assert name not in log, name
        assert name.split()[-1] not in log, name


def test_json_formatter_masks_configured_secrets():
    from app.observability import JsonFormatter

    record = logging.LogRecord("x", logging.WARNING, __file__, 1,
                               "connecting with key %s", ("s3cret-value-123",), None)
    line = JsonFormatter(["s3cret-value-123"]).format(record)
    assert "s3cret-value-123" not in line and json.loads(line)["message"].endswith("[redacted]")


# --------------------------------------------------------------------------- backup / restore
@pytest.fixture
def restore_target(app):
    """An empty database of the same kind as the test database, dropped afterwards."""
    from sqlalchemy.engine import make_url

    from config import BASE_DIR

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "postgresql":
        name = f"ims_restore_{unique('r').lower()}"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        path = os.path.join(BASE_DIR, "instance", f"restore-{unique('r')}.db")
        yield f"sqlite:///{path}"
        if os.path.exists(path):
            os.remove(path)


def test_backup_then_restore_into_a_new_database_verifies_and_balances(app, session, tmp_path,
                                                                       restore_target):
    """`ims backup` of the test database, `ims restore` into a new one: the audit trail verifies
    there (its checkpoints came along) and the trial balance is the same."""
    from app.services.audit import verify_chain

    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", "")
    path = str(tmp_path / "ims.backup")
    done = _flask(url, "ims", "backup", "--output", path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.path.getsize(path) > 10_000
    target = restore_target.replace("+psycopg", "")
    done = _flask(target, "ims", "restore", path, "--yes")
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "chain intact" in done.stdout
    verify = _flask(target, "ims", "audit-verify")
    assert verify.returncode == 0, verify.stdout
    session.rollback()
    ours = L.trial_balance(session)
    engine = create_engine(restore_target)
    try:
        with Session(engine) as s:
            theirs = L.trial_balance(s)
            assert s.scalar(select(func.count()).select_from(AccountHolder)) == \
                session.scalar(select(func.count()).select_from(AccountHolder))
            assert verify_chain(s).events == verify_chain(session).events
    finally:
        engine.dispose()
    assert theirs["balanced"] and theirs["total_debits"] == ours["total_debits"]


def test_restore_refuses_what_is_not_a_backup(app, tmp_path, restore_target):
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all")
    done = _flask(restore_target.replace("+psycopg", ""), "ims", "restore", str(junk), "--yes")
    assert done.returncode == 1 and "Restore failed" in done.stderr
