"""Running imports outside the request: in a thread of the web process (the page polls its
progress), as the `ims tick` job (queued imports, and crashed ones resumed), and again on request
after a failure."""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound
from app.models.base import utcnow
from app.models.imports import ImportBatch
from app.services.imports.batches import STALE_AFTER, set_status
from app.services.imports.processing import process_import

log = logging.getLogger(__name__)


def start_background(app, batch_id: int) -> threading.Thread:
    """Process the import in a thread of this process (the page polls its progress)."""

    def target():
        from app.extensions import db
        from app.services.audit import set_actor

        with app.app_context():
            try:
                batch = db.session.get(ImportBatch, batch_id)
                set_actor(batch.created_by if batch else "worker")
                process_import(db.session, batch_id)
            except Exception:  # logged; the batch shows failed or resumes on the next tick
                log.exception("background import %s", batch_id)
            finally:
                db.session.remove()

    th = threading.Thread(target=target, name=f"import-{batch_id}", daemon=True)
    th.start()
    return th


def run_queued() -> str | None:
    """`ims tick` job: process imports still queued, and resume crashed ones."""
    from app.extensions import db

    session = db.session
    stale = utcnow() - STALE_AFTER
    ids = session.scalars(select(ImportBatch.id).where(
        (ImportBatch.status == "received") | ((ImportBatch.status == "processing") & (
            ImportBatch.heartbeat_at.is_(None) | (ImportBatch.heartbeat_at < stale))))
        .order_by(ImportBatch.id)).all()
    session.rollback()
    done = []
    for batch_id in ids:
        batch = process_import(session, batch_id)
        done.append(f"{batch_id}:{batch.status}")
    return f"imports {', '.join(done)}" if done else None


def retry_import(session: Session, batch_id: int, *, actor: str) -> ImportBatch:
    """Re-queue a failed (or stuck) import; processing resumes after the last committed line."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    if batch.status not in ("failed", "processing") or not batch.stored_path \
            or not os.path.exists(batch.stored_path):
        raise Conflict("Only a failed import whose file passed its checks can be run again.")
    if batch.active_sha256 is None:
        other = session.scalar(select(ImportBatch.id).where(ImportBatch.active_sha256 == batch.sha256))
        if other:
            raise Conflict(f"The same file was imported again as import {other}.")
        batch.active_sha256 = batch.sha256
    batch.heartbeat_at = None
    set_status(session, batch, "received", actor, "queued again")
    session.commit()
    return batch


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("imports", run_queued)


_register_job()
