"""Import batches (bank and payment-agent files), their status history, bank CSV profiles,
per-fund reference patterns and processing rules."""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow

IMPORT_FORMATS = ("ims_csv", "bank_csv", "camt053", "mt940", "allpay")
IMPORT_STATUSES = ("received", "processing", "succeeded", "failed", "reversed")


class BankProfile(Model):
    """How to read one bank's CSV export: columns, date format, sign convention, rows to skip.

    Columns are named by their header text, or by 1-based position when the file has no header.
    """

    __tablename__ = "bank_profile"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    delimiter: Mapped[str] = mapped_column(String(1), nullable=False, default=",")
    has_header: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    skip_rows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    date_column: Mapped[str] = mapped_column(String(50), nullable=False)
    date_format: Mapped[str] = mapped_column(String(30), nullable=False, default="%d/%m/%Y")
    #: "signed" (credits positive), "signed_negative" (credits negative) or "split" (credit/debit columns)
    sign_convention: Mapped[str] = mapped_column(String(20), nullable=False, default="signed")
    amount_column: Mapped[str | None] = mapped_column(String(50))
    credit_column: Mapped[str | None] = mapped_column(String(50))
    debit_column: Mapped[str | None] = mapped_column(String(50))
    reference_column: Mapped[str] = mapped_column(String(50), nullable=False)
    narrative_column: Mapped[str | None] = mapped_column(String(50))
    fund_column: Mapped[str | None] = mapped_column(String(50))
    payment_method_code: Mapped[str] = mapped_column(String(10), nullable=False, default="BACS")
    #: the running balance after each line (statement opening and closing balances for
    #: reconciliation); None: the file has none
    balance_column: Mapped[str | None] = mapped_column(String(50))

    def __repr__(self) -> str:
        return self.name


class FundReferencePattern(Model):
    """A regular expression that recognises a fund's references (data, not code)."""

    __tablename__ = "fund_reference_pattern"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fund_code: Mapped[str] = mapped_column(ForeignKey("fund.code"), nullable=False, index=True)
    fund = relationship("Fund", foreign_keys=[fund_code])
    pattern: Mapped[str] = mapped_column(String(200), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    description: Mapped[str | None] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"{self.fund_code}: {self.pattern}"


class ProcessingRule(Model):
    """A named rule run on every imported row (lowest priority number first).

    ``conditions``: one group per line, groups OR-ed; within a line conditions joined by AND,
    e.g. ``reference starts_with "PCN" AND amount between 10.00 20.00``.
    """

    __tablename__ = "processing_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    #: None = every import type; else one of IMPORT_FORMATS
    import_type: Mapped[str | None] = mapped_column(String(20))
    conditions: Mapped[str] = mapped_column(Text, nullable=False, default="")
    set_fund_code: Mapped[str | None] = mapped_column(String(10))
    set_reference: Mapped[str | None] = mapped_column(String(100))
    set_narrative: Mapped[str | None] = mapped_column(String(200))
    stop_processing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    #: "settlement": the bank-statement line clears expected money (a card settlement, a banked
    #: bag, an agent's file) and is reconciled, not posted as income; None: a citizen's payment
    set_line_kind: Mapped[str | None] = mapped_column(String(20))

    def __repr__(self) -> str:
        return self.name


class ImportBatch(Model):
    """One uploaded file and what became of it."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    format: Mapped[str] = mapped_column(String(20), nullable=False)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("bank_profile.id"))
    profile = relationship(BankProfile)
    filename: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    #: sha256 while the batch counts against duplicates (NULL once failed): unique
    active_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    stored_path: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="received", index=True)
    rows_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_posted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_suspense: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: bank statements: the account, and the settlement lines kept for reconciliation
    bank_account_id: Mapped[int | None] = mapped_column(Integer)
    rows_settlement: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    settlement_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    posted_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    suspense_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: the last file line whose row is committed (a re-run resumes after it)
    last_line_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # the file's earliest and latest transaction dates (duplicate look-ups skip imports outside them)
    first_date: Mapped[date | None] = mapped_column(Date)
    last_date: Mapped[date | None] = mapped_column(Date)
    control_total: Mapped[str | None] = mapped_column(String(200))
    errors_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    duplicates_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    office_code: Mapped[str | None] = mapped_column(String(10))
    created_by: Mapped[str] = mapped_column(String(100), nullable=False, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversed_by: Mapped[str | None] = mapped_column(String(100))
    reversal_reason: Mapped[str | None] = mapped_column(String(500))
    #: the request that received the file, so the worker's log lines for it carry the same id
    request_id: Mapped[str | None] = mapped_column(String(64))

    history = relationship("ImportStatusEvent", order_by="ImportStatusEvent.id",
                           back_populates="batch")

    def __repr__(self) -> str:
        return f"Import {self.id} ({self.filename})"


class ImportStatusEvent(Model):
    """received → processing → succeeded/failed → reversed, with who and when."""

    __tablename__ = "import_status_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"), nullable=False,
                                           index=True)
    batch = relationship(ImportBatch, back_populates="history")
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), nullable=False, default="system")
    message: Mapped[str | None] = mapped_column(String(500))
