"""Suspense items: money received that could not be matched to a fund or a valid reference."""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, partial_index, utcnow

SUSPENSE_STATUSES = ("unallocated", "part_allocated", "allocated", "written_off", "withdrawn")


class SuspenseItem(Model):
    """One unmatched receipt (Dr Bank / Cr Suspense), keeping the raw reference and narrative.

    ``remaining_amount`` is derived by the allocations feature; until it exists it equals amount.
    """

    __tablename__ = "suspense_item"
    __table_args__ = (
        # the imports' duplicate look-up by date, reference and amount (and reference search)
        Index("ix_suspense_item_reference_date_amount", "reference_text", "transaction_date",
              "amount"),
        # most items are nobody's: only the assigned ones are indexed (a look-up by assignee)
        Index("ix_suspense_item_assigned_to", "assigned_to",
              **partial_index("assigned_to IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reference_text: Mapped[str | None] = mapped_column(String(200))
    narrative: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(500))
    fund_code: Mapped[str | None] = mapped_column(String(10))
    transaction_date: Mapped[date] = mapped_column(Date, nullable=False, index=True)
    import_id: Mapped[int | None] = mapped_column(Integer, index=True)
    line_number: Mapped[int | None] = mapped_column(Integer)
    posting_group_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="unallocated",
                                        index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # maintained by app.services.suspense under the item's row lock (FOR UPDATE):
    #: pence held by allocations / write-offs awaiting approval
    reserved_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0,
                                                 server_default="0")
    #: pence allocated or written off and posted to the ledger
    cleared_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0,
                                                server_default="0")
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def remaining_amount(self) -> int:
        fn = REMAINING_AMOUNT[0]
        return self.amount if fn is None else fn(self)

    def __repr__(self) -> str:
        return f"Suspense {self.id} {self.reference_text or ''}"


#: The allocations feature may install fn(item) -> remaining pence here.
REMAINING_AMOUNT: list = [None]
