"""Reference data: funds, payment methods, VAT codes, offices, validators, account holders, settings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from flask_appbuilder import Model
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,

    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.domain.money import Money
from app.models.base import UTCDateTime

METHOD_KINDS = ("cash", "cheque", "card", "bank_transfer", "direct_debit", "post_office",
                "journal", "transfer", "refund", "write_off")
CHARACTER_CLASSES = ("any", "alpha", "numeric", "alphanumeric", "alpha_space", "numeric_space",
                     "alphanumeric_space")
CHECK_DIGIT_SCHEMES = ("weighted_sum", "luhn", "dynix")


class VatCode(Model):
    __tablename__ = "vat_code"
    __table_args__ = (CheckConstraint("rate >= 0 AND rate < 1", name="ck_vat_code_rate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    rate: Mapped[Decimal] = mapped_column(Numeric(6, 4), nullable=False)
    #: where this code's VAT goes in the general ledger (GL exports; net goes to the fund's)
    gl_code: Mapped[str | None] = mapped_column(String(30))

    def __repr__(self) -> str:
        from app.domain.money import percent

        return f"{self.code} ({percent(self.rate)})"


class ReferenceValidator(Model):
    """Field-based rules for account references: length, class, regex, mask and check digit."""

    __tablename__ = "reference_validator"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    min_length: Mapped[int | None] = mapped_column(Integer)
    max_length: Mapped[int | None] = mapped_column(Integer)
    character_class: Mapped[str] = mapped_column(String(20), nullable=False, default="any")
    regex: Mapped[str | None] = mapped_column(String(200))
    input_mask: Mapped[str | None] = mapped_column(String(50))
    check_digit_scheme: Mapped[str | None] = mapped_column(String(20))
    modulus: Mapped[int | None] = mapped_column(Integer)
    weights: Mapped[str | None] = mapped_column(String(200))
    source_substitution: Mapped[str | None] = mapped_column(String(200))
    result_substitutions: Mapped[str | None] = mapped_column(String(200))
    subtract: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    next_validator_id: Mapped[int | None] = mapped_column(ForeignKey("reference_validator.id"))
    next_validator: Mapped["ReferenceValidator | None"] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return self.name


class Fund(Model):
    __tablename__ = "fund"
    __table_args__ = (CheckConstraint("maximum_amount IS NULL OR maximum_amount > 0",
                                      name="ck_fund_maximum_amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    gl_code: Mapped[str | None] = mapped_column(String(30))
    #: the fund's cost centre in the general ledger (GL exports; blank: the setting
    #: gl.default_cost_centre)
    cost_centre: Mapped[str | None] = mapped_column(String(30))
    vat_code: Mapped[str | None] = mapped_column(ForeignKey("vat_code.code"))
    vat: Mapped[VatCode | None] = relationship(foreign_keys=[vat_code])
    vat_override: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    maximum_amount: Mapped[int | None] = mapped_column(BigInteger)
    account_must_exist: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    validator_id: Mapped[int | None] = mapped_column(ForeignKey("reference_validator.id"))
    validator: Mapped[ReferenceValidator | None] = relationship()
    credit_notes_allowed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The citizen payment portal (/pay): whether the fund is offered there, and its public texts,
    # each with a Welsh version (the staff portal shows the Welsh name on Welsh pages too).
    offered_online: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                 server_default=false())
    public_name: Mapped[str | None] = mapped_column(String(100))
    public_name_cy: Mapped[str | None] = mapped_column(String(100))
    reference_label: Mapped[str | None] = mapped_column(String(100))
    reference_label_cy: Mapped[str | None] = mapped_column(String(100))
    reference_help: Mapped[str | None] = mapped_column(String(300))
    reference_help_cy: Mapped[str | None] = mapped_column(String(300))
    public_stop_message: Mapped[str | None] = mapped_column(String(300))
    public_stop_message_cy: Mapped[str | None] = mapped_column(String(300))
    ask_payer_name: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                 server_default=false())
    ask_payer_email: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                  server_default=false())
    ask_payer_address: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                    server_default=false())

    @property
    def maximum(self) -> Money | None:
        return None if self.maximum_amount is None else Money(self.maximum_amount)

    def text(self, field: str, language: str | None = None) -> str | None:
        """A public text in ``language`` ("en"/"cy"; the page's when None): the Welsh version on a
        Welsh page when it is set, else the English one."""
        language = language or _page_language()
        if language == "cy":
            value = getattr(self, f"{field}_cy", None)
            if value:
                return value
        return getattr(self, field, None)

    def local_name(self, language: str | None = None) -> str:
        """The staff portal's name: on a Welsh page the fund's Welsh display name when it has one
        (the same field the portal shows), else its name."""
        language = language or _page_language()
        return (self.public_name_cy if language == "cy" and self.public_name_cy else None) or self.name

    def public_title(self, language: str | None = None) -> str:
        """The name citizens see: the public display name (Welsh on a Welsh page), else the name."""
        language = language or _page_language()
        return self.text("public_name", language) or self.local_name(language)

    def __repr__(self) -> str:
        return f"{self.code} – {self.local_name()}"


def _page_language() -> str:
    """The current page's language ("en" outside a request)."""
    from flask import has_request_context

    if not has_request_context():
        return "en"
    from flask_babel import get_locale

    locale = get_locale()
    return locale.language if locale is not None else "en"


class PaymentMethod(Model):
    __tablename__ = "payment_method"
    __table_args__ = (
        CheckConstraint("minimum_amount IS NULL OR minimum_amount >= 0", name="ck_pm_minimum"),
        CheckConstraint("maximum_amount IS NULL OR maximum_amount > 0", name="ck_pm_maximum"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    refundable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    minimum_amount: Mapped[int | None] = mapped_column(BigInteger)
    maximum_amount: Mapped[int | None] = mapped_column(BigInteger)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    def __repr__(self) -> str:
        return f"{self.code} – {self.name}"


class Office(Model):
    __tablename__ = "office"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)

    def __repr__(self) -> str:
        return f"{self.code} – {self.name}"


class AccountHolder(Model):
    """A payer's account within a fund (council tax account, rent account, PCN...)."""

    __tablename__ = "account_holder"
    __table_args__ = (UniqueConstraint("fund_code", "account_reference",
                                       name="uq_account_holder_fund_reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fund_code: Mapped[str] = mapped_column(ForeignKey("fund.code"), nullable=False, index=True)
    fund: Mapped[Fund] = relationship(foreign_keys=[fund_code])
    account_reference: Mapped[str] = mapped_column(String(30), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    address: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[str | None] = mapped_column(String(10))
    stop_message: Mapped[str | None] = mapped_column(String(200))
    #: who set the stop: "file" (an account-holder sync; the next file without it clears it) or
    #: "staff" (kept when a file sets none)
    stop_source: Mapped[str | None] = mapped_column(String(10))
    #: sounds-alike key (Soundex) of the surname, for the search on both databases
    phonetic_key: Mapped[str | None] = mapped_column(String(4), index=True)
    balance: Mapped[int | None] = mapped_column(BigInteger)
    balance_date: Mapped[date | None] = mapped_column(Date)
    #: set when a complete file no longer lists the account (accounts are never deleted)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sync_id: Mapped[int | None] = mapped_column(Integer)

    @property
    def on_stop(self) -> bool:
        return bool(self.stop_message)

    def __repr__(self) -> str:
        return f"{self.fund_code}/{self.account_reference} {self.name}"


class Setting(Model):
    """Named system settings, e.g. which fund is the suspense fund (one each, enforced by key)."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(String(300))

    def __repr__(self) -> str:
        return f"{self.key}={self.value}"


def _stop_set_by_staff(target, value, oldvalue, initiator):
    """A stop set or cleared through the ORM (the staff pages, the API) is staff's; the sync
    writes its own stops with statements of its own, which do not come here."""
    target.stop_source = "staff" if value else None


def _name_set(target, value, oldvalue, initiator):
    from app.domain.phonetic import name_key

    target.phonetic_key = name_key(value)


event.listen(AccountHolder.stop_message, "set", _stop_set_by_staff)
event.listen(AccountHolder.name, "set", _name_set)
