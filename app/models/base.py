"""Shared column helpers for models."""

from datetime import datetime, timezone

from sqlalchemy import DateTime, text
from sqlalchemy.types import TypeDecorator


def partial_index(condition: str) -> dict:
    """Index keyword arguments: a partial index of the rows meeting condition (both databases)."""
    cond = text(condition)
    return {"postgresql_where": cond, "sqlite_where": cond}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
