"""Append-only audit trail: events sealed with a MAC as they are written, the hash chain that a
background step links them into (a table of its own), and the signed checkpoints of its head."""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow

#: Length of a key id: the start of an HMAC of a fixed text under the key (names the key without
#: revealing it).
KEY_ID_LENGTH = 16


class AuditEvent(Model):
    """One change: who did what to which record, before/after, why.

    ``mac`` is HMAC-SHA256, under the audit key named by ``key_id``, of the event's fields: whoever
    writes the database without the key can neither alter an event nor insert one that
    verifies. The request writes the event with its MAC only (no lock, no read of the chain);
    the worker then links it into the hash chain, whose entries are in ``audit_chain``.

    Events written before the chain moved to its own table (migration 0026) have no MAC: they
    carry their link in ``prev_hash`` and ``hash`` (HMAC-SHA256 under ``key_id`` of the fields
    and the hash before; without a key id, a plain SHA-256 from before audit keys). The chain
    runs through them first, then on through ``audit_chain``.
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
    prev_hash: Mapped[str | None] = mapped_column(String(64))  # events before 0026 only
    hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # events before 0026 only
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    mac: Mapped[str | None] = mapped_column(String(64))
    #: the event's link in the chain (None until the worker links it; events from before
    #: migration 0026 carry theirs in prev_hash and hash)
    link: Mapped[AuditChain | None] = relationship(
        "AuditChain", primaryjoin="foreign(AuditChain.event_id) == AuditEvent.id",
        viewonly=True, uselist=False, lazy="select")

    @property
    def chain_hash(self) -> str | None:
        return self.link.hash if self.link is not None else self.hash

    @property
    def chain_prev_hash(self) -> str | None:
        return self.link.prev_hash if self.link is not None else self.prev_hash

    def __repr__(self) -> str:
        return f"#{self.id} {self.action} {self.entity} {self.entity_id}"


class AuditChain(Model):
    """An event's place in the hash chain, written by the chaining step (`ims tick`, the worker)
    in event order, never by a request: ``hash`` is HMAC-SHA256 under the audit key named by
    ``key_id`` of the hash before it, the event's id and its MAC. Append-only like the trail."""

    __tablename__ = "audit_chain"

    # no foreign key: verification, which walks the events with their entries, is the check
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    chained_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    def __repr__(self) -> str:
        return f"chain #{self.event_id}"


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
