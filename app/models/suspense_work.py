"""Working suspense down: allocations (with their lines), notes, write-offs and ageing runs.

Financial rows are never edited in place once posted: an allocation or write-off moves through
its statuses (awaiting_approval -> posted / rejected; write-offs awaiting_approval -> approved ->
posted / rejected) and the ledger postings are separate append-only rows.
"""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow

ALLOCATION_STATUSES = ("awaiting_approval", "posted", "rejected")
WRITE_OFF_STATUSES = ("awaiting_approval", "approved", "rejected", "posted")
#: statuses whose amount still counts against the item / transaction
ALLOCATION_HOLDING = ("awaiting_approval", "posted")
WRITE_OFF_HOLDING = ("awaiting_approval", "approved", "posted")


class SuspenseAllocation(Model):
    """A request to allocate (part of) a suspense item to one or more fund/account lines."""

    __tablename__ = "suspense_allocation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suspense_item_id: Mapped[int] = mapped_column(ForeignKey("suspense_item.id"), nullable=False,
                                                  index=True)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    note: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    workflow_instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    posting_group_id: Mapped[int | None] = mapped_column(Integer, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    office_code: Mapped[str | None] = mapped_column(String(10))

    lines: Mapped[list["SuspenseAllocationLine"]] = relationship(
        back_populates="allocation", order_by="SuspenseAllocationLine.id",
        cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"Allocation {self.id} of suspense item {self.suspense_item_id}"


class SuspenseAllocationLine(Model):
    __tablename__ = "suspense_allocation_line"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("suspense_allocation.id"),
                                               nullable=False, index=True)
    fund_code: Mapped[str] = mapped_column(String(10), nullable=False)
    account_reference: Mapped[str | None] = mapped_column(String(30))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(Integer, index=True)

    allocation: Mapped[SuspenseAllocation] = relationship(back_populates="lines")


class SuspenseNote(Model):
    """A clerk's note on a suspense item (the item's working history)."""

    __tablename__ = "suspense_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suspense_item_id: Mapped[int] = mapped_column(ForeignKey("suspense_item.id"), nullable=False,
                                                  index=True)
    author: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    text: Mapped[str] = mapped_column(Text, nullable=False)


class WriteOff(Model):
    """A write-off of a suspense item (unclaimed money) or of a residual balance on a transaction."""

    __tablename__ = "write_off"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suspense_item_id: Mapped[int | None] = mapped_column(ForeignKey("suspense_item.id"), index=True)
    transaction_id: Mapped[int | None] = mapped_column(Integer, index=True)
    fund_code: Mapped[str | None] = mapped_column(String(10))
    account_reference: Mapped[str | None] = mapped_column(String(30))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                   index=True)
    workflow_instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    posting_group_id: Mapped[int | None] = mapped_column(Integer, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_comment: Mapped[str | None] = mapped_column(Text)
    approvers: Mapped[str | None] = mapped_column(String(300))
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ageing_run_id: Mapped[int | None] = mapped_column(Integer)

    @property
    def source(self) -> str:
        return "suspense" if self.suspense_item_id else "transaction"

    def __repr__(self) -> str:
        return f"Write-off {self.id}"


class SuspenseAgeingRun(Model):
    """One run of the daily ageing job: the items older than the configured age at that time."""

    __tablename__ = "suspense_ageing_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    cutoff_date: Mapped[date] = mapped_column(Date, nullable=False)
    age_weeks: Mapped[int] = mapped_column(Integer, nullable=False)
    item_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    item_ids: Mapped[str] = mapped_column(Text, nullable=False, default="")
