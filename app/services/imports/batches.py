"""An import batch's status history, and its result as the pages and the API show it."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy.orm import Session

from app.domain.money import Money
from app.models.imports import ImportBatch, ImportStatusEvent
from app.services import audit

#: a batch "processing" with no heartbeat for this long was left by a crash: it may be resumed
STALE_AFTER = timedelta(minutes=10)


def set_status(session: Session, batch: ImportBatch, status: str, actor: str,
               message: str | None = None) -> None:
    """Move the batch to ``status``, with a history row and an audit event (no commit)."""
    before = batch.status
    batch.status = status
    session.add(ImportStatusEvent(import_id=batch.id, status=status, actor=actor,
                                  message=(message or "")[:500] or None))
    audit.record(session, "status", "ImportBatch", batch.id, before={"status": before},
                 after={"status": status, "message": message}, actor=actor)


def import_result(batch: ImportBatch) -> dict:
    """The import's totals and lines' errors and possible duplicates; a user of fund groups
    gets the totals only (a bank file's lines name every fund's references)."""
    from app.services.scope import has_all_funds

    out = _import_result(batch)
    if not has_all_funds():
        out["errors"], out["duplicates"] = [], []
    return out


def _import_result(batch: ImportBatch) -> dict:
    return {
        "id": batch.id,
        "status": batch.status,
        "format": batch.format,
        "filename": batch.filename,
        "rows_total": batch.rows_total,
        "rows_done": batch.rows_done,
        "rows_posted": batch.rows_posted,
        "rows_suspense": batch.rows_suspense,
        "rows_duplicate": batch.rows_duplicate,
        # bank statements: the settlement lines kept for reconciliation (not posted as income)
        "bank_account_id": batch.bank_account_id,
        "rows_settlement": batch.rows_settlement,
        "settlement_amount": str(Money(batch.settlement_amount)),
        "total_amount": str(Money(batch.total_amount)),
        "posted_amount": str(Money(batch.posted_amount)),
        "suspense_amount": str(Money(batch.suspense_amount)),
        "percent": (100 if batch.status in ("succeeded", "reversed") else
                    int(100 * batch.rows_done / batch.rows_total) if batch.rows_total else 0),
        "control_total": batch.control_total,
        "first_date": batch.first_date.isoformat() if batch.first_date else None,
        "last_date": batch.last_date.isoformat() if batch.last_date else None,
        "errors": json.loads(batch.errors_json or "[]"),
        "duplicates": json.loads(batch.duplicates_json or "[]"),
        "created_by": batch.created_by,
        "created_at": batch.created_at.isoformat() if batch.created_at else None,
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "history": [{"status": e.status, "at": e.at.isoformat(), "actor": e.actor,
                     "message": e.message} for e in batch.history],
    }
