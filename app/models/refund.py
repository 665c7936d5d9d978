"""Refunds of received money (card, BACS, cheque) and the payment runs that pay BACS and cheques."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain.money import Money
from app.models.base import UTCDateTime, utcnow


class RefundStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"
    FAILED = "failed"


class RefundMethod(StrEnum):
    CARD = "card"
    BACS = "bacs"
    CHEQUE = "cheque"


#: status -> statuses it may move to (failed -> approved is a retry of a failed card payment)
TRANSITIONS: dict[str, frozenset[str]] = {
    RefundStatus.AWAITING_APPROVAL: frozenset({RefundStatus.APPROVED, RefundStatus.REJECTED}),
    RefundStatus.APPROVED: frozenset({RefundStatus.PAID, RefundStatus.FAILED}),
    RefundStatus.FAILED: frozenset({RefundStatus.APPROVED}),
    RefundStatus.REJECTED: frozenset(),
    RefundStatus.PAID: frozenset(),
}
#: statuses whose amount is held against the transaction's available amount
RESERVING = (RefundStatus.AWAITING_APPROVAL, RefundStatus.APPROVED, RefundStatus.PAID)


class RefundPaymentRun(Model):
    """A numbered batch of approved BACS and cheque refunds paid together."""

    __tablename__ = "refund_payment_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    bacs_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bacs_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cheque_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cheque_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    posting_group_id: Mapped[int | None] = mapped_column(ForeignKey("posting_group.id"))

    refunds: Mapped[list["Refund"]] = relationship(back_populates="payment_run",
                                                   order_by="Refund.id")

    @property
    def total(self) -> int:
        return self.bacs_total + self.cheque_total

    def __repr__(self) -> str:
        return f"{self.number} ({self.bacs_count} BACS, {self.cheque_count} cheques)"


class Refund(Model):
    """A request to pay back all or part of one income transaction; the workflow decides it."""

    __tablename__ = "refund"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_refund_amount"),
        CheckConstraint("method IN ('card','bacs','cheque')", name="ck_refund_method"),
        CheckConstraint("status IN ('awaiting_approval','approved','rejected','paid','failed')",
                        name="ck_refund_status"),
        Index("ix_refund_status_method", "status", "method"),
        Index("uq_refund_idempotency", "requested_by", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("income_transaction.id"),
                                                nullable=False, index=True)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False,
                                        default=RefundStatus.AWAITING_APPROVAL, index=True)
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payee_name: Mapped[str | None] = mapped_column(String(200))
    sort_code: Mapped[str | None] = mapped_column(String(8))
    account_number: Mapped[str | None] = mapped_column(String(8))
    payee_differs: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                   index=True)
    office_code: Mapped[str | None] = mapped_column(String(10))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    #: SHA-256 of the API request's canonical body, compared when the key is sent again
    idempotency_fingerprint: Mapped[str | None] = mapped_column(String(64))
    workflow_instance_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_instance.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    approval_group_id: Mapped[int | None] = mapped_column(ForeignKey("posting_group.id"))
    payment_group_id: Mapped[int | None] = mapped_column(ForeignKey("posting_group.id"))
    payment_run_id: Mapped[int | None] = mapped_column(ForeignKey("refund_payment_run.id"),
                                                       index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_by: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(30))
    provider_refund_id: Mapped[str | None] = mapped_column(String(100))
    payment_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: a card refund: the provider's settlement it was netted off (card_settlement.id), as a
    #: card payment's settlement_id
    settlement_id: Mapped[int | None] = mapped_column(Integer, index=True)

    transaction = relationship("Transaction", foreign_keys=[transaction_id])
    payment_run: Mapped[RefundPaymentRun | None] = relationship(back_populates="refunds")
    workflow_instance = relationship("WorkflowInstance", foreign_keys=[workflow_instance_id])

    @property
    def money(self) -> Money:
        return Money(self.amount)

    @property
    def masked_account(self) -> str:
        return f"****{self.account_number[-4:]}" if self.account_number else ""

    def __repr__(self) -> str:
        return f"Refund {self.id}: {Money(self.amount)} by {self.method} ({self.status})"

    __str__ = __repr__
