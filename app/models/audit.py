"""Append-only, hash-chained audit trail and the signed checkpoints of its head."""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow

#: Length of a key id: the start of an HMAC of a fixed text under the key (names the key without
#: revealing it).
KEY_ID_LENGTH = 16


class AuditEvent(Model):
    """One change: who did what to which record, before/after, why, chained by hash.

    ``hash`` is HMAC-SHA256 under the audit key named by ``key_id`` of the event's fields and the
    hash of the event before it; events written before the trail was keyed have no ``key_id``
    and a plain SHA-256 (`ims audit-rekey` continues such a chain keyed).
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                  index=True)
    actor: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(50), nullable=False, index=True)
    entity: Mapped[str] = mapped_column(String(50), nullable=False)
    entity_id: Mapped[str | None] = mapped_column(String(50))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))

    def __repr__(self) -> str:
        return f"#{self.id} {self.action} {self.entity} {self.entity_id}"


class AuditCheckpoint(Model):
    """The chain's head at a moment (how many events, the last one's id and hash), signed with
    the audit key. Append-only like the trail; the same line goes to the application log.

    Verification compares the chain with every checkpoint: events deleted from the end, or a
    chain rewritten, no longer match what a checkpoint recorded.
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    events: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_event_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    head_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH), nullable=False)
    signature: Mapped[str] = mapped_column(String(64), nullable=False)

    def __repr__(self) -> str:
        return f"checkpoint {self.id}: {self.events} events to event {self.last_event_id}"
