"""What operators watch: each worker's last tick (readiness, metrics)."""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow


class WorkerHeartbeat(Model):
    """One row per worker process (host and pid), updated at the end of every tick."""

    __tablename__ = "worker_heartbeat"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)  # "host:pid"
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_tick_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    ticks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_summary: Mapped[str | None] = mapped_column(String(1000))
