"""The citizen payment portal's baskets, held on the server (the browser keeps only the token).

Amounts sent to the provider come from here, never from the browser."""

from __future__ import annotations

import json
from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow


class PortalBasket(Model):
    __tablename__ = "portal_basket"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    #: [{"fund_code", "reference", "amount"}] (amount in pence)
    items_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    #: {"name", "email", "address"} as the payer gave them
    payer_json: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                 index=True)

    @property
    def items(self) -> list[dict]:
        try:
            value = json.loads(self.items_json or "[]")
        except ValueError:
            return []
        return value if isinstance(value, list) else []

    @items.setter
    def items(self, value: list[dict]) -> None:
        self.items_json = json.dumps(value)
        self.updated_at = utcnow()

    @property
    def payer(self) -> dict:
        try:
            value = json.loads(self.payer_json or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @payer.setter
    def payer(self, value: dict) -> None:
        self.payer_json = json.dumps(value)
        self.updated_at = utcnow()

    def __repr__(self) -> str:
        return f"Basket {self.id}"
