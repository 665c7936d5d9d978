"""Cash-ups (eReturns): a cashier's till for one office and day, counted, approved and banked.

A till is one cashier's cash and cheque receipts at one office on one day that no earlier
cash-up took (cash_up_receipt.transaction_id is unique: a receipt is in at most one live
cash-up; a voided cash-up releases its receipts). Approval posts Dr Cash in transit (or Bank) /
Cr Cash in hand, over/short to Cash variance, and records an expected bank credit for the bag.
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
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, partial_index, utcnow

CASH_UP_STATUSES = ("submitted", "returned", "approved", "voided")

#: denominations counted, in pence, largest first (£50 notes to 1p)
DENOMINATIONS = (5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1)


class CashUpTemplateRow(Model):
    """A row an office always counts on its cash-up (e.g. a car park machine's takings), with
    its own fund and account reference. Reference data an Administrator edits."""

    __tablename__ = "cash_up_template_row"
    __table_args__ = (UniqueConstraint("office_code", "description",
                                       name="uq_cash_up_template_row_office_description"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    office_code: Mapped[str] = mapped_column(ForeignKey("office.code"), nullable=False, index=True)
    description: Mapped[str] = mapped_column(String(100), nullable=False)
    fund_code: Mapped[str] = mapped_column(ForeignKey("fund.code"), nullable=False)
    account_reference: Mapped[str | None] = mapped_column(String(30))
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    office = relationship("Office", foreign_keys=[office_code])
    fund = relationship("Fund", foreign_keys=[fund_code])

    def __repr__(self) -> str:
        return f"{self.office_code}: {self.description}"


class CashUp(Model):
    __tablename__ = "cash_up"
    __table_args__ = (
        CheckConstraint("status IN ('submitted','returned','approved','voided')",
                        name="ck_cash_up_status"),
        CheckConstraint("cash_counted >= 0 AND cheques_total >= 0", name="ck_cash_up_counted"),
        # a bag (paying-in slip) number is used once a day by the cash-ups that are not voided
        Index("uq_cash_up_bag_day", "till_date", "bag_number", unique=True,
              **partial_index("status <> 'voided'")),
        Index("ix_cash_up_cashier_date", "cashier", "till_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    cashier: Mapped[str] = mapped_column(String(100), nullable=False)
    office_code: Mapped[str | None] = mapped_column(String(10), index=True)
    till_date: Mapped[date] = mapped_column(Date, nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="submitted")
    bag_number: Mapped[str] = mapped_column(String(30), nullable=False)
    #: what the till's receipts say (pence)
    receipted_cash: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    receipted_cheques: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: the office's template rows (e.g. car park machines), income posted on approval
    template_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: what was counted (pence)
    cash_counted: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cheques_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: counted - expected: > 0 over, < 0 short
    variance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    variance_reason: Mapped[str | None] = mapped_column(String(500))
    #: JSON {"5000": count, ...}: notes and coins counted by denomination (pence)
    denominations: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    destination: Mapped[str] = mapped_column(String(20), nullable=False, default="CASH_IN_TRANSIT")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    void_reason: Mapped[str | None] = mapped_column(String(500))
    voided_by: Mapped[str | None] = mapped_column(String(100))
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    workflow_instance_id: Mapped[int | None] = mapped_column(Integer)
    posting_group_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    cheques: Mapped[list["CashUpCheque"]] = relationship(
        back_populates="cash_up", order_by="CashUpCheque.id", cascade="all, delete-orphan")
    lines: Mapped[list["CashUpLine"]] = relationship(
        back_populates="cash_up", order_by="CashUpLine.id", cascade="all, delete-orphan")

    @property
    def expected(self) -> int:
        return self.receipted_cash + self.receipted_cheques + self.template_total

    @property
    def counted(self) -> int:
        return self.cash_counted + self.cheques_total

    def __repr__(self) -> str:
        return f"{self.number} {self.cashier} {self.till_date}"


class CashUpReceipt(Model):
    """A receipt line (income transaction) taken into a cash-up: at most one live cash-up each."""

    __tablename__ = "cash_up_receipt"

    transaction_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cash_up_id: Mapped[int] = mapped_column(ForeignKey("cash_up.id"), nullable=False, index=True)
    method_kind: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CashUpCheque(Model):
    __tablename__ = "cash_up_cheque"
    __table_args__ = (CheckConstraint("amount > 0", name="ck_cash_up_cheque_amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cash_up_id: Mapped[int] = mapped_column(ForeignKey("cash_up.id"), nullable=False, index=True)
    drawer: Mapped[str] = mapped_column(String(100), nullable=False)
    sort_code: Mapped[str] = mapped_column(String(8), nullable=False)
    cheque_number: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)

    cash_up: Mapped[CashUp] = relationship(back_populates="cheques")


class CashUpLine(Model):
    """An amount entered against one of the office's template rows."""

    __tablename__ = "cash_up_line"
    __table_args__ = (CheckConstraint("amount >= 0", name="ck_cash_up_line_amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cash_up_id: Mapped[int] = mapped_column(ForeignKey("cash_up.id"), nullable=False, index=True)
    template_row_id: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(100), nullable=False)
    fund_code: Mapped[str] = mapped_column(String(10), nullable=False)
    account_reference: Mapped[str | None] = mapped_column(String(30))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)

    cash_up: Mapped[CashUp] = relationship(back_populates="lines")


class ExpectedBankCredit(Model):
    """Money the bank should credit (a banked cash-up bag; later card settlements, agent files),
    for bank reconciliation to match against a statement line. Recorded once per source."""

    __tablename__ = "expected_bank_credit"
    __table_args__ = (
        UniqueConstraint("kind", "source_id", name="uq_expected_bank_credit_source"),
        CheckConstraint("amount > 0", name="ck_expected_bank_credit_amount"),
        CheckConstraint("fee >= 0", name="ck_expected_bank_credit_fee"),
        Index("ix_expected_bank_credit_open", "cleared", "expected_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: 'cash_up_bag', 'card_settlement', 'agent_file'
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    #: the bank account the credit should reach (NULL: the default account)
    bank_account_id: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expected_date: Mapped[date] = mapped_column(Date, nullable=False)
    reference: Mapped[str] = mapped_column(String(50), nullable=False)
    source_id: Mapped[int] = mapped_column(Integer, nullable=False)
    #: the clearing account the credit clears (Cash in transit) and its dimension (office)
    clearing_account: Mapped[str] = mapped_column(String(20), nullable=False)
    clearing_reference: Mapped[str | None] = mapped_column(String(30))
    #: fees the provider keeps (card settlements): the clearing account is cleared of
    #: amount + fee, the bank receives amount
    fee: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cleared: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the live reconciliation match that cleared it (app/models/reconciliation.py)
    match_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    @property
    def gross(self) -> int:
        return self.amount + self.fee
