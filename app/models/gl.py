"""Closing the books: accounting periods (open/closed, closes and reopenings approved by the Head
of Finance) and general-ledger export batches with their layouts.

Batch membership lives in gl_export_line, not on the ledger (ledger rows are append-only): one
row per ledger line a batch exported. The partial unique index uq_gl_export_line_live (on
ledger_line_id WHERE NOT voided) is what makes "a line is in at most one batch that is not void"
a rule of the database, whatever the code does; a voided batch's rows are marked voided so its
lines go into the next batch.
"""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, partial_index, utcnow

PERIOD_STATUSES = ("open", "closed")
PERIOD_REQUEST_STATUSES = ("pending", "approved", "rejected")
BATCH_STATUSES = ("complete", "void")


class AccountingPeriod(Model):
    """A calendar month's state. A month without a row is open (rows are written when a month
    is first closed); start_date is the first day of the month."""

    __tablename__ = "accounting_period"
    __table_args__ = (CheckConstraint("status IN ('open','closed')", name="ck_accounting_period_status"),)

    start_date: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(100))
    close_requested_by: Mapped[str | None] = mapped_column(String(100))
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopened_by: Mapped[str | None] = mapped_column(String(100))

    def __repr__(self) -> str:
        return f"{self.start_date:%Y-%m} ({self.status})"


class PeriodRequest(Model):
    """A Finance Manager's request to close (or reopen) a period, approved through
    workflows/period_close_approval.bpmn by a Head of Finance other than the requester."""

    __tablename__ = "period_request"
    __table_args__ = (
        CheckConstraint("action IN ('close','reopen')", name="ck_period_request_action"),
        CheckConstraint("status IN ('pending','approved','rejected')",
                        name="ck_period_request_status"),
        # one request waiting per period at a time
        Index("uq_period_request_pending", "period_start", unique=True,
              **partial_index("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    workflow_instance_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"{self.action} {self.period_start:%Y-%m} ({self.status})"


class GlLayout(Model):
    """A versioned export layout (JSON, app/services/gl_layouts.py validates it). A new version
    is a new row; batches name the version they used, so an old batch's layout is kept."""

    __tablename__ = "gl_layout"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_gl_layout_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    definition: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)

    def __repr__(self) -> str:
        return f"{self.name} v{self.version}"


class GlExportBatch(Model):
    """One export: its lines (gl_export_line), control total, and the file as written."""

    __tablename__ = "gl_export_batch"
    __table_args__ = (CheckConstraint("status IN ('complete','void')", name="ck_gl_export_batch_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    cut_off: Mapped[date] = mapped_column(Date, nullable=False)
    layout_id: Mapped[int] = mapped_column(ForeignKey("gl_layout.id"), nullable=False)
    summarised: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="complete")
    line_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    row_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: sum of the debits of its lines (= sum of the credits: the lines are whole posting groups)
    control_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    filename: Mapped[str] = mapped_column(String(100), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False, default="text/csv")
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    trigger: Mapped[str] = mapped_column(String(10), nullable=False, default="ui")
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_by: Mapped[str | None] = mapped_column(String(100))
    void_reason: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return self.number


class GlExportLine(Model):
    """Membership: ledger line ``ledger_line_id`` was exported in batch ``batch_id``."""

    __tablename__ = "gl_export_line"
    __table_args__ = (
        Index("uq_gl_export_line_live", "ledger_line_id", unique=True,
              **partial_index("voided = false")),
    )

    batch_id: Mapped[int] = mapped_column(ForeignKey("gl_export_batch.id"), primary_key=True)
    ledger_line_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voided: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
