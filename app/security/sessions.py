"""Signed-in browser sessions recorded on the server, so that logout ends them everywhere.

A login writes a UserSession row and puts its random token in the (signed cookie) session; the
session's user is loaded only while that row exists and is younger than
PERMANENT_SESSION_LIFETIME. Logout deletes the row, so a copy of the cookie taken earlier signs
nobody in, on any worker or server sharing the database. Changing a password ends the user's
other sessions; an administrator's reset ends all of them.

Like FAB's own security manager, these functions commit: a login or logout is a unit of work of
its own.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from flask import current_app, session
from sqlalchemy import delete, select

from app.extensions import db
from app.models.base import utcnow
from app.models.security import UserSession

#: the key of the session token in Flask's session
SESSION_KEY = "_ims_session"
#: when this session last made a request (epoch seconds), for the inactivity timeout
SEEN_KEY = "_ims_seen"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _oldest_live():
    return utcnow() - current_app.permanent_session_lifetime


def start(user_id: int) -> None:
    """Record a new session for ``user_id`` and keep its token in this request's session.
    Also forgets sessions older than the session lifetime (their cookies have expired)."""
    token = secrets.token_urlsafe(32)
    s = db.session
    s.execute(delete(UserSession).where(UserSession.created_at < _oldest_live()))
    s.add(UserSession(id=_digest(token), user_id=int(user_id), created_at=utcnow()))
    s.commit()
    session[SESSION_KEY] = token
    session[SEEN_KEY] = int(time.time())


def idle_expired() -> bool:
    """Whether this session made no request for IMS_SESSION_IDLE_MINUTES (it is then ended);
    otherwise notes this request (at most every 30 seconds, so most responses do not rewrite
    the cookie)."""
    minutes = int(current_app.config.get("IMS_SESSION_IDLE_MINUTES") or 0)
    now = int(time.time())
    seen = session.get(SEEN_KEY)
    if minutes > 0 and isinstance(seen, int) and now - seen > minutes * 60:
        end_current()
        session["_ims_idle_ended"] = True
        return True
    if not isinstance(seen, int) or now - seen >= 30:
        session[SEEN_KEY] = now
    return False


def is_live(user_id: int) -> bool:
    """Whether this request's session token names a live session of ``user_id``."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return False
    found = db.session.scalar(select(UserSession.id).where(
        UserSession.id == _digest(token), UserSession.user_id == int(user_id),
        UserSession.created_at >= _oldest_live()))
    return found is not None


def end_current() -> None:
    """End this request's session (logout): its cookie, wherever copied, signs nobody in."""
    token = session.pop(SESSION_KEY, None)
    if isinstance(token, str) and token:
        db.session.execute(delete(UserSession).where(UserSession.id == _digest(token)))
        db.session.commit()


def end_all(user_id: int, *, except_current: bool = False) -> None:
    """End every session of ``user_id`` (optionally all but this request's own)."""
    stmt = delete(UserSession).where(UserSession.user_id == int(user_id))
    token = session.get(SESSION_KEY) if except_current else None
    if isinstance(token, str) and token:
        stmt = stmt.where(UserSession.id != _digest(token))
    db.session.execute(stmt)
    db.session.commit()


def on_login(sender, user, **_extra) -> None:
    """Flask-Login's user_logged_in signal (form logins; API logins use tokens, not sessions)."""
    start(user.id)


def on_logout(sender, user=None, **_extra) -> None:
    """Flask-Login's user_logged_out signal."""
    end_current()
