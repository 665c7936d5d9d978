"""Personal data kept apart from the append-only records, and legal holds on retention.

``personal_data`` holds the personal values (names, addresses, emails, phone numbers, bank
details, narratives that may hold names) that an append-only record would otherwise carry: the
audit trail records a token naming the row and a salted digest of the value
(``pd:<id>:<digest>``), so the chain hashes the token, not the value. Erasing a value (NULLing
``value`` and ``salt``, setting ``erased_at``) leaves every hash verifiable; while the value is
kept its digest proves it is the one the event recorded.

``legal_hold`` rows keep records from anonymisation: by account reference or by a person's name.
"""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow

#: kinds of personal value
KINDS = ("name", "address", "postcode", "email", "phone", "bank", "narrative")
#: how a legal hold matches records
HOLD_MATCHES = ("reference", "person")


class PersonalData(Model):
    """One personal value of one record (``record_type``/``record_id``), erasable."""

    __tablename__ = "personal_data"
    __table_args__ = (Index("ix_personal_data_record", "record_type", "record_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    #: the record the value belongs to (its audit entity name and id)
    record_type: Mapped[str] = mapped_column(String(50), nullable=False)
    record_id: Mapped[str | None] = mapped_column(String(50))
    #: whose it is, for the subject-access report: "fund/reference" when known
    subject_key: Mapped[str | None] = mapped_column(String(60), index=True)
    value: Mapped[str | None] = mapped_column(Text)
    #: random salt of the digest (hex); erased with the value, so the digest cannot be guessed
    salt: Mapped[str | None] = mapped_column(String(32))
    #: SHA-256 of salt and value, hex: what the audit trail's token carries
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"personal data {self.id} ({self.kind} of {self.record_type} {self.record_id})"


class LegalHold(Model):
    """Records matching ``value`` (an account reference, or a person's name) are not anonymised
    while the hold is in force (until released)."""

    __tablename__ = "legal_hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    match: Mapped[str] = mapped_column(String(10), nullable=False)  # reference | person
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(100))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        return self.released_at is None

    def __repr__(self) -> str:
        return f"legal hold {self.id} ({self.match} {self.value})"
