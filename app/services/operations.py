"""What operators need of the database: readiness (reachable, migrated to head, a worker ticking),
the workers' heartbeats, the queue figures metrics export, and backups and restores.

Backups: PostgreSQL through ``pg_dump --format=custom`` / ``pg_restore`` (the client tools of the
server's major version), SQLite through its online backup API (a consistent copy while the app
runs). Either way a backup holds every table, the audit trail and its signed checkpoints
included, so a restored database verifies (``ims audit-verify``) as the original did.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.domain.errors import ConfigurationError, ValidationError
from app.models.base import utcnow
from app.models.imports import ImportBatch
from app.models.operations import WorkerHeartbeat
from app.models.workflow import WorkflowInstance

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- workers
def record_tick(session: Session, summary: str, worker: str | None = None) -> None:
    """The worker finished a tick (its own transaction; commits)."""
    worker = (worker or WORKER_ID)[:200]
    now = utcnow()
    row = session.get(WorkerHeartbeat, worker)
    if row is None:
        session.add(WorkerHeartbeat(worker=worker, started_at=now, last_tick_at=now, ticks=1,
                                    last_summary=summary[:1000]))
    else:
        row.last_tick_at = now
        row.ticks += 1
        row.last_summary = summary[:1000]
    session.commit()


def last_tick(session: Session) -> datetime | None:
    return session.scalar(select(func.max(WorkerHeartbeat.last_tick_at)))


# --------------------------------------------------------------------------- readiness
@dataclass
class Readiness:
    ready: bool
    checks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


_HEAD: dict = {}


def migration_head(app) -> str | None:
    """The newest migration in the code (read once per process)."""
    if "head" not in _HEAD:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", os.path.join(os.path.dirname(app.root_path),
                                                            "migrations"))
        _HEAD["head"] = ScriptDirectory.from_config(cfg).get_current_head()
    return _HEAD["head"]


def readiness(session: Session, app) -> Readiness:
    """Database reachable, migrations at head, a worker seen within IMS_WORKER_STALE_SECONDS."""
    checks: dict = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - reported, never raised: this is the health check
        session.rollback()
        checks["database"] = {"ok": False, "error": exc.__class__.__name__}
        return Readiness(False, checks)
    try:
        current = session.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # noqa: BLE001 - no alembic_version: never migrated (or create_all in tests)
        session.rollback()
        current = []
    head = migration_head(app)
    at_head = head in current
    if not current and app.config.get("TESTING"):
        at_head = True  # the test database is built from the models, not by migrations
    checks["migrations"] = {"ok": at_head, "current": current[0] if current else None,
                            "head": head}
    stale = int(app.config.get("IMS_WORKER_STALE_SECONDS") or 0)
    try:
        seen = last_tick(session)
    except Exception:  # noqa: BLE001 - a schema behind the code has no heartbeats to read
        session.rollback()
        seen = None
    if stale <= 0:
        checks["worker"] = {"ok": True, "required": False,
                            "last_tick": seen.isoformat() if seen else None}
    else:
        age = (utcnow() - seen).total_seconds() if seen else None
        checks["worker"] = {"ok": age is not None and age <= stale,
                            "last_tick": seen.isoformat() if seen else None,
                            "age_seconds": round(age) if age is not None else None,
                            "limit_seconds": stale}
    session.rollback()
    return Readiness(all(c["ok"] for c in checks.values()), checks)


def queue_figures(session: Session) -> dict:
    """The gauges metrics export: due timers, queued imports, approved card refunds not yet paid,
    and each worker's last tick."""
    from app.models.refund import Refund, RefundMethod, RefundStatus

    now = utcnow()
    due = session.scalar(select(func.count()).select_from(WorkflowInstance).where(
        WorkflowInstance.status == "running", WorkflowInstance.next_timer_at.is_not(None),
        WorkflowInstance.next_timer_at <= now)) or 0
    queued = session.scalar(select(func.count()).select_from(ImportBatch).where(
        ImportBatch.status == "received")) or 0
    refunds = session.scalar(select(func.count()).select_from(Refund).where(
        Refund.status == RefundStatus.APPROVED, Refund.method == RefundMethod.CARD)) or 0
    workers = {w: t.timestamp() for w, t in session.execute(
        select(WorkerHeartbeat.worker, WorkerHeartbeat.last_tick_at)).all()}
    session.rollback()
    newest = max(workers.values()) if workers else None
    return {"due_timers": due, "queued_imports": queued, "pending_refund_payments": refunds,
            "workers": workers,
            "worker_age": (now.timestamp() - newest) if newest is not None else None}


# --------------------------------------------------------------------------- backup / restore
def _pg_url(url) -> str:
    """A libpq connection URL (SQLAlchemy's driver suffix removed)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigurationError(f"{name} was not found: install PostgreSQL's client tools of the "
                                 f"server's major version (Debian: postgresql-client).")
    return path


def backup(database_url: str, path: str) -> dict:
    """Write a backup of the database at ``database_url`` to ``path``; returns what was written."""
    url = make_url(database_url)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    if url.get_backend_name() == "postgresql":
        done = subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner",  # noqa: S603
                               "--file", path, _pg_url(url)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ValidationError(f"pg_dump failed: {done.stderr.strip()[-500:]}")
    elif url.get_backend_name() == "sqlite":
        source = sqlite3.connect(url.database)
        target = sqlite3.connect(path)
        try:
            with target:
                source.backup(target)
        finally:
            target.close()
            source.close()
    else:
        raise ValidationError(f"Backups of {url.get_backend_name()} databases are not supported.")
    return {"path": path, "bytes": os.path.getsize(path),
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def restore(database_url: str, path: str) -> None:
    """Replace the database at ``database_url`` with the backup at ``path``.

    PostgreSQL: into an existing (empty or to-be-replaced) database, objects dropped first.
    SQLite: the file is written whole from the backup."""
    if not os.path.isfile(path):
        raise ValidationError(f"No backup at {path}.")
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        done = subprocess.run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner",  # noqa: S603
                               "--single-transaction", "--exit-on-error", "--dbname", _pg_url(url),
                               path], capture_output=True, text=True)
        if done.returncode != 0:
            raise ValidationError(f"pg_restore failed: {done.stderr.strip()[-500:]}")
    elif url.get_backend_name() == "sqlite":
        with open(path, "rb") as fh:
            if not fh.read(16).startswith(b"SQLite format 3"):
                raise ValidationError(f"{path} is not a SQLite backup.")
        source = sqlite3.connect(path)
        target = sqlite3.connect(url.database)
        try:
            with target:
                source.backup(target)
        finally:
            target.close()
            source.close()
    else:
        raise ValidationError(f"Restores into {url.get_backend_name()} databases are not supported.")


def default_backup_path(instance_path: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(instance_path, "backups", f"ims-{stamp}.backup")
