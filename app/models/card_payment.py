"""Card payments taken through the payment provider (online, by phone, for a payment request),
and the payment requests that clerks and other council systems create.

A CardPayment is one pending basket: its items (fund, reference, pence) are kept here, on the
server, from the moment the citizen checks out; the amount sent to the provider and posted to
the ledger is always computed from them, never from anything the citizen's browser returns.

Statuses (shared/API.md "Taking money"): created (the provider payment exists, the payer has not
finished), pending (the payer is on the provider's page or the payment is submitted), paid
(the receipt is posted), failed, cancelled, expired.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from flask_appbuilder import Model
from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow

CARD_PAYMENT_STATUSES = ("created", "pending", "paid", "failed", "cancelled", "expired")
#: statuses after which nothing changes any more
FINAL_STATUSES = ("paid", "failed", "cancelled", "expired")
OPEN_STATUSES = ("created", "pending")
CHANNELS = ("online", "moto", "request")


def _load(text: str | None) -> list:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class PaymentRequest(Model):
    """A request for payment made by an Income Clerk or by another council system through the
    API; the citizen pays it through its link (a prefilled basket)."""

    __tablename__ = "payment_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="created", index=True)
    items_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    caller_reference: Mapped[str | None] = mapped_column(String(100))
    return_url: Mapped[str | None] = mapped_column(String(1000))
    language: Mapped[str] = mapped_column(String(5), nullable=False, default="en")
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(100))
    receipt_number: Mapped[str | None] = mapped_column(String(20))

    @property
    def items(self) -> list[dict]:
        return _load(self.items_json)

    def __repr__(self) -> str:
        return f"Payment request {self.id}"


class CardPayment(Model):
    """One basket paid by card through the provider (see the module docstring)."""

    __tablename__ = "card_payment"
    __table_args__ = (
        # ims tick and the staff list look up the open ones and filter by status and date
        Index("ix_card_payment_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="created")
    channel: Mapped[str] = mapped_column(String(10), nullable=False, default="online")
    language: Mapped[str] = mapped_column(String(5), nullable=False, default="en")
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    items_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    description: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(20), nullable=False)
    provider_payment_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    provider_status: Mapped[str | None] = mapped_column(String(20))
    next_url: Mapped[str | None] = mapped_column(String(1000))
    return_path: Mapped[str | None] = mapped_column(String(500))
    card_brand: Mapped[str | None] = mapped_column(String(40))
    last_four: Mapped[str | None] = mapped_column(String(4))
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_email: Mapped[str | None] = mapped_column(String(254))
    payer_address: Mapped[str | None] = mapped_column(Text)
    payment_request_id: Mapped[int | None] = mapped_column(ForeignKey("payment_request.id"),
                                                           index=True)
    payment_request: Mapped[PaymentRequest | None] = relationship()
    receipt_number: Mapped[str | None] = mapped_column(String(20))
    posting_group_id: Mapped[int | None] = mapped_column(ForeignKey("posting_group.id"))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the day the provider pays it to the bank (its report's settled date) and its fee
    settled_date: Mapped[date | None] = mapped_column(Date)
    fee: Mapped[int | None] = mapped_column(BigInteger)
    #: the settlement (app/models/reconciliation.py CardSettlement) that includes it
    settlement_id: Mapped[int | None] = mapped_column(Integer, index=True)

    @property
    def items(self) -> list[dict]:
        return _load(self.items_json)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def __repr__(self) -> str:
        return f"Card payment {self.id} ({self.status})"
