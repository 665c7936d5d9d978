"""The audit trail as the Auditor reads it: events filtered by date, user, record type, action
and record id, newest first, one page at a time (reads only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.audit import AuditEvent

PAGE_SIZE = 50


@dataclass
class AuditFilter:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    actor: str | None = None
    entity: str | None = None
    action: str | None = None
    entity_id: str | None = None


def _where(q, f: AuditFilter):
    if f.date_from:
        q = q.where(AuditEvent.occurred_at >= dt.datetime.combine(f.date_from, dt.time.min,
                                                                  tzinfo=dt.timezone.utc))
    if f.date_to:
        q = q.where(AuditEvent.occurred_at < dt.datetime.combine(
            f.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc))
    if f.actor:
        q = q.where(AuditEvent.actor == f.actor)
    if f.entity:
        q = q.where(AuditEvent.entity == f.entity)
    if f.action:
        q = q.where(AuditEvent.action == f.action)
    if f.entity_id:
        q = q.where(AuditEvent.entity_id == f.entity_id)
    return q


def search(session: Session, f: AuditFilter, page: int = 0) -> tuple[list[AuditEvent], bool]:
    """One page of matching events, newest first, and whether an older page exists."""
    rows = list(session.scalars(_where(select(AuditEvent), f).order_by(AuditEvent.id.desc())
                                .offset(page * PAGE_SIZE).limit(PAGE_SIZE + 1)))
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def count(session: Session, f: AuditFilter) -> int:
    return session.scalar(_where(select(func.count()).select_from(AuditEvent), f)) or 0


def choices(session: Session) -> dict[str, list[str]]:
    """The users, record types and actions the trail holds (for the filter lists)."""
    def distinct(col):
        return [v for v in session.scalars(select(col).distinct().order_by(col)) if v]

    return {"actors": distinct(AuditEvent.actor), "entities": distinct(AuditEvent.entity),
            "actions": distinct(AuditEvent.action)}
