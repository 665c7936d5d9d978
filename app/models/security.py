"""Server-side records of signed-in browser sessions, so that logging out ends a session for good.

Flask keeps the session in a signed cookie: without a record on the server, a copy of the cookie
taken before logout would still sign its holder in. Each login writes a row here and puts its
random token in the session; a session is accepted only while its row exists (logout, a password
change and an administrator's password reset delete rows). The database is shared, so every
gunicorn worker and server sees the same answer.
"""

from __future__ import annotations

from datetime import datetime

from flask_appbuilder import Model
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UTCDateTime, utcnow


class UserSession(Model):
    """One signed-in browser session. ``id`` is the SHA-256 of the token the cookie carries."""

    __tablename__ = "user_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow,
                                                 index=True)

    def __repr__(self) -> str:
        return f"session of user {self.user_id} from {self.created_at:%Y-%m-%d %H:%M}"
