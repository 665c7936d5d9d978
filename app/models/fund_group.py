"""Fund groups: who sees which funds (LocalGov IMS §3.16).

An Administrator defines groups of funds and gives users one or more groups, or "all funds".
Everything fund-scoped a user sees and does is limited to the funds of their groups
(app/services/scope.py is the one place that works out which). A user with no group and without
"all funds" sees no fund-scoped data. The tables sit beside FAB's ab_user rather than adding
columns to it.
"""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import UTCDateTime, utcnow
from app.models.reference import Fund

fund_group_fund = Table(
    "fund_group_fund", Model.metadata,
    Column("group_id", Integer, ForeignKey("fund_group.id", ondelete="CASCADE"),
           primary_key=True),
    Column("fund_id", Integer, ForeignKey("fund.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)

user_fund_group = Table(
    "user_fund_group", Model.metadata,
    Column("user_id", Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", Integer, ForeignKey("fund_group.id", ondelete="CASCADE"),
           primary_key=True, index=True),
)


class FundGroup(Model):
    """A named set of funds (say "Parking": PCN and CPK) given to users."""

    __tablename__ = "fund_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(String(300))
    funds: Mapped[list[Fund]] = relationship(secondary=fund_group_fund, order_by=Fund.code)

    def __repr__(self) -> str:
        return self.name


class UserFundAccess(Model):
    """One row per user whose fund access has been set: ``all_funds`` and who set it when.

    A user without a row has no "all funds" (users created after the fund-groups migration);
    the migration gave every user who existed then a row with all_funds true.
    """

    __tablename__ = "user_fund_access"

    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         primary_key=True)
    all_funds: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                            server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(100))
