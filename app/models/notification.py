"""In-app notifications: one row per recipient (requesters, approvers, payers)."""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow


class Notification(Model):
    """A message for one user, with an optional link; unread until they open or dismiss it."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_unread", "username", "read_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                 index=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the funds of the record it is about (none: about no fund); app/services/notifications.py
    funds = relationship("NotificationFund", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"{self.username}: {self.message[:40]}"


class NotificationFund(Model):
    """A fund a notification is about (the fund of the refund, write-off or suspense allocation
    it refers to; scope.CENTRAL for central work). A user sees the notification only when they
    hold every fund it is about (app/services/scope.py notification_condition)."""

    __tablename__ = "notification_fund"

    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notification.id", ondelete="CASCADE"), primary_key=True)
    fund_code: Mapped[str] = mapped_column(String(20), primary_key=True)
