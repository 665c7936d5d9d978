"""Sign-in records of issue 20: each user's second factor and single sign-on link, their
recovery codes, the groups their identity provider last claimed for them, their recent sign-ins,
and the till settings of a user (default office and the payment methods they may take).

Kept apart from FAB's ``ab_user`` table: one row of ``user_signin`` per user who has one.
"""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow


class UserSignin(Model):
    """A user's sign-in settings (one row per user who has any)."""

    __tablename__ = "user_signin"

    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         primary_key=True)
    #: the TOTP secret (base32), sealed (app/security/secret_box.py: Fernet); confirmed once
    #: ``totp_enabled_at`` is set
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the last time step a code was accepted for (a code is accepted once)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    #: wrong codes in a row, and until when further codes are refused
    totp_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    totp_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: "issuer|sub" of the identity provider's account this user signs in as (None: local)
    sso_subject: Mapped[str | None] = mapped_column(String(300), unique=True)
    #: an integration's account: API tokens by password only, never a browser sign-in
    service_account: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    #: the office a receipt is taken at unless the user chooses another
    default_office_code: Mapped[str | None] = mapped_column(
        ForeignKey("office.code", ondelete="SET NULL"))

    def __repr__(self) -> str:
        return f"sign-in settings of user {self.user_id}"


class UserRecoveryCode(Model):
    """A one-time recovery code (SHA-256 of it: the codes are random, 50 bits and more)."""

    __tablename__ = "user_recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserIdpGroup(Model):
    """A group name the identity provider claimed for the user at their last single sign-on
    (replaced at each one). The fund-group scoping maps these names to fund groups."""

    __tablename__ = "user_idp_group"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_user_idp_group"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class SigninEvent(Model):
    """One attempt to sign in (form, single sign-on, second factor, API token): kept so that a
    user sees their recent sign-ins; refusals are also written to the audit trail."""

    __tablename__ = "signin_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                                index=True)
    username: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    #: password | sso | totp | recovery | api
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    #: ok | refused
    outcome: Mapped[str] = mapped_column(String(10), nullable=False)
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(200))


class UserPaymentMethod(Model):
    """A payment method a user may take (LocalGov IMS's UserMethodOfPayment). A user with none
    listed may take every method a receipt accepts."""

    __tablename__ = "user_payment_method"
    __table_args__ = (UniqueConstraint("user_id", "payment_method_code",
                                       name="uq_user_payment_method"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    payment_method_code: Mapped[str] = mapped_column(
        ForeignKey("payment_method.code", ondelete="CASCADE"), nullable=False)
