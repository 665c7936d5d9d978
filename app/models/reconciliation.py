"""Bank reconciliation: bank accounts (reference data), statements with the lines reconciliation
needs, card settlements, matches of statement lines to expected credits, and sign-offs.

* A **bank account** has its own ledger dimension: BANK ledger lines carry ``ledger_reference``
  in ``account_reference`` (NULL for the default account, which holds every Bank posting made
  before bank accounts existed: migration 0018_bank_accounts).
* A **statement** is tied to one bank account; it keeps its opening and closing balances and the
  lines that are not citizens' payments: settlement credits (a card provider's settlement, a
  banked bag, an agent's file total; classified by the processing rules) and debit lines (bank
  charges, returned items, chargebacks). Citizens' payments are posted as income by the import
  (their import batch is the statement's ``import_id``).
* A **match** ties one or more statement lines to one or more expected credits whose amounts add
  up (a card fee may make up the difference) and posts Dr Bank / Cr the clearing account(s);
  unmatching reverses that posting. ``statement_line.match_id`` and
  ``expected_bank_credit.match_id`` hold the live match: each is matched at most once.
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, partial_index, utcnow

LINE_KINDS = ("settlement", "debit")
MATCH_STATUSES = ("matched", "unmatched")
SIGN_OFF_STATUSES = ("prepared", "signed_off", "rejected")


class BankAccount(Model):
    """One of the council's bank accounts (reference data an Administrator edits)."""

    __tablename__ = "bank_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    sort_code: Mapped[str] = mapped_column(String(8), nullable=False)
    account_number: Mapped[str] = mapped_column(String(8), nullable=False)
    #: the general ledger's code for this account (GL export)
    ledger_account_code: Mapped[str] = mapped_column(String(30), nullable=False)
    #: the dimension its BANK ledger lines carry (NULL: the default account's)
    ledger_reference: Mapped[str | None] = mapped_column(String(30), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    def __repr__(self) -> str:
        return f"{self.name} ({self.sort_code} {self.account_number})"


class BankStatement(Model):
    __tablename__ = "bank_statement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_account_id: Mapped[int] = mapped_column(ForeignKey("bank_account.id"), nullable=False,
                                                 index=True)
    #: the import that read the file (its citizens' payments were posted by it)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("import_batch.id"), unique=True)
    statement_date: Mapped[date] = mapped_column(Date, nullable=False, index=True)
    first_date: Mapped[date | None] = mapped_column(Date)
    opening_balance: Mapped[int | None] = mapped_column(BigInteger)
    closing_balance: Mapped[int | None] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    bank_account = relationship(BankAccount)
    lines: Mapped[list["StatementLine"]] = relationship(back_populates="statement",
                                                        order_by="StatementLine.id")


class StatementLine(Model):
    """A statement line reconciliation works on: a settlement credit (amount > 0) or a debit
    (amount < 0). ``match_id`` is its live match (NULL: unmatched)."""

    __tablename__ = "statement_line"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_statement_line_amount"),
        CheckConstraint("kind IN ('settlement','debit')", name="ck_statement_line_kind"),
        Index("ix_statement_line_open", "bank_account_id", "transaction_date",
              **partial_index("match_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("bank_statement.id"), nullable=False,
                                              index=True)
    bank_account_id: Mapped[int] = mapped_column(ForeignKey("bank_account.id"), nullable=False)
    line_number: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    transaction_date: Mapped[date] = mapped_column(Date, nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reference: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    narrative: Mapped[str | None] = mapped_column(String(500))
    match_id: Mapped[int | None] = mapped_column(Integer, index=True)

    statement: Mapped[BankStatement] = relationship(back_populates="lines")


class CardSettlement(Model):
    """A card provider's payments settled on one day, paid to the bank as one credit net of
    fees and of the card refunds it paid out that day (an expected bank credit of kind
    ``card_settlement``)."""

    __tablename__ = "card_settlement"
    __table_args__ = (Index("uq_card_settlement_day", "provider", "settled_date", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), nullable=False)
    settled_date: Mapped[date] = mapped_column(Date, nullable=False)
    payments: Mapped[int] = mapped_column(Integer, nullable=False)
    gross: Mapped[int] = mapped_column(BigInteger, nullable=False)
    fees: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: card refunds the provider paid out of this settlement: how many, and their total
    refund_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                              server_default="0")
    refunds: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0,
                                         server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class ReconMatch(Model):
    """Statement lines matched to expected credits (their amounts add up, with any card fee),
    posted once; unmatching reverses the posting and releases both sides."""

    __tablename__ = "recon_match"
    __table_args__ = (
        CheckConstraint("status IN ('matched','unmatched')", name="ck_recon_match_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_account_id: Mapped[int] = mapped_column(ForeignKey("bank_account.id"), nullable=False,
                                                 index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="matched")
    lines_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    items_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: card fees posted to CARD_FEES (items' gross - lines' total)
    fee_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    #: why: the proposal's reason, or the clerk's (a fee the provider did not report needs one)
    reason: Mapped[str | None] = mapped_column(String(500))
    posting_group_id: Mapped[int | None] = mapped_column(Integer)
    reversal_group_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    unmatched_by: Mapped[str | None] = mapped_column(String(100))
    unmatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unmatch_reason: Mapped[str | None] = mapped_column(String(500))
    #: JSON lists of the statement line and expected credit ids (kept after unmatching)
    line_ids: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    item_ids: Mapped[str] = mapped_column(Text, nullable=False, default="[]")


class ReconSignOff(Model):
    """A reconciliation of one bank account as at a date: prepared by one person, signed off
    by a Finance Manager who is not the preparer."""

    __tablename__ = "recon_sign_off"
    __table_args__ = (
        CheckConstraint("status IN ('prepared','signed_off','rejected')",
                        name="ck_recon_sign_off_status"),
        Index("ix_recon_sign_off_account_date", "bank_account_id", "as_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_account_id: Mapped[int] = mapped_column(ForeignKey("bank_account.id"), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    statement_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="prepared")
    statement_balance: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ledger_balance: Mapped[int] = mapped_column(BigInteger, nullable=False)
    explained: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unexplained: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: JSON: the reconciliation as prepared (items both sides)
    snapshot: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    prepared_by: Mapped[str] = mapped_column(String(100), nullable=False)
    prepared_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(String(500))
