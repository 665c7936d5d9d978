"""Notifications: in-app messages for users or whole roles, and e-mail when SMTP is configured.

``notify(session, usernames_or_roles, message, link)`` adds one Notification per recipient inside
the caller's transaction (it flushes, never commits). ``about=(type, id)`` names the record it
is about (a refund, write-off or suspense allocation: the workflow subject types); the record's
funds are kept with it and a user sees it only when they hold them all (fund groups,
app/services/scope.py), whatever role it was sent to. E-mails are queued on the session and sent
only after that transaction commits, so a rolled-back use case never mails anybody. Sending is
skipped when MAIL_SERVER is empty.
"""

from __future__ import annotations

import logging
import os
import smtplib
from collections.abc import Iterable
from email.message import EmailMessage

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.models.base import utcnow
from app.models.notification import Notification, NotificationFund
from app.security import roles as R

log = logging.getLogger(__name__)

_QUEUE = "ims_mail_queue"


def _users_with_role(session: Session, role_name: str) -> list[tuple[str, str | None]]:
    from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

    return list(session.execute(
        select(User.username, User.email)
        .join(assoc_user_role, assoc_user_role.c.user_id == User.id)
        .join(Role, Role.id == assoc_user_role.c.role_id)
        .where(Role.name == role_name, User.active.is_(True))
        .order_by(User.username)).all())


def _user_email(session: Session, username: str) -> tuple[str, str | None] | None:
    from flask_appbuilder.security.sqla.models import User

    row = session.execute(select(User.username, User.email).where(
        User.username == username, User.active.is_(True))).first()
    return (row[0], row[1]) if row is not None else None


def recipients(session: Session, usernames_or_roles: Iterable[str] | str,
               exclude: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """(username, email) for each named user and each active member of each named role."""
    if isinstance(usernames_or_roles, str):
        usernames_or_roles = [usernames_or_roles]
    skip = set(exclude or ())
    out: dict[str, str | None] = {}
    for name in usernames_or_roles:
        if not name:
            continue
        found = _users_with_role(session, name) if name in R.ROLES else []
        if not found and name not in R.ROLES:
            user = _user_email(session, name)
            found = [user] if user is not None else []
        for username, email in found:
            if username not in skip:
                out.setdefault(username, email)
    return sorted(out.items())


def subject_funds(session: Session, about) -> list[str]:
    """The funds of the record ``about`` = (subject type, id) (none: about no fund)."""
    if not about:
        return []
    from app.services.scope import subject_funds as funds_of

    subject_type, subject_id = about
    return sorted(funds_of(session, subject_type, subject_id) or ())


def notify(session: Session, usernames_or_roles: Iterable[str] | str, message: str,
           link: str | None = None, *, exclude: Iterable[str] = (),
           subject: str | None = None, about: tuple[str, object] | None = None
           ) -> list[Notification]:
    """Notify users (by username) and roles (every active member); flushes, does not commit.

    ``exclude`` names users who must not be told (e.g. the person who acted). Unknown names are
    ignored. ``subject`` is the e-mail's subject line; ``about`` = (subject type, id) the record
    the message is about, whose funds limit who sees it. Returns the notifications added.
    """
    added = []
    funds = subject_funds(session, about)
    for username, email in recipients(session, usernames_or_roles, exclude):
        note = Notification(username=username, message=message, link=link, created_at=utcnow(),
                            funds=[NotificationFund(fund_code=code) for code in funds])
        session.add(note)
        added.append(note)
        if email:
            session.info.setdefault(_QUEUE, []).append(
                (email, subject or message[:120], message, link))
    session.flush()
    return added


def _scoped(session: Session, username: str) -> tuple:
    """WHERE clauses: ``username``'s notifications that are about none but their own funds."""
    from app.services import scope as SC

    current = SC._current_user()
    codes = SC.allowed_fund_codes() if current is not None and current.username == username \
        else SC.codes_for_username(session, username)
    cond = SC.notification_condition(Notification, codes)
    return (Notification.username == username, *(() if cond is None else (cond,)))


def unread_count(session: Session, username: str) -> int:
    return int(session.scalar(select(func.count(Notification.id)).where(
        *_scoped(session, username), Notification.read_at.is_(None))) or 0)


def for_user(session: Session, username: str, limit: int = 200,
             unread_only: bool = False) -> list[Notification]:
    q = select(Notification).where(*_scoped(session, username))
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    return list(session.scalars(q.order_by(Notification.created_at.desc(),
                                           Notification.id.desc()).limit(limit)))


def mark_read(session: Session, username: str, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, every) notification of ``username`` read; commits.

    Raises NotFound for an id that is not the user's own (or is about another group's funds).
    """
    try:
        mine = _scoped(session, username)
        q = update(Notification).where(*mine, Notification.read_at.is_(None))
        if notification_id is not None:
            if session.scalar(select(Notification.id).where(
                    Notification.id == notification_id, *mine)) is None:
                raise NotFound("No such notification.")
            q = q.where(Notification.id == notification_id)
        n = session.execute(q.values(read_at=utcnow())
                            .execution_options(synchronize_session=False)).rowcount
        session.commit()
        return n
    except Exception:
        session.rollback()
        raise


# --------------------------------------------------------------------------- e-mail
def _mail_settings() -> dict | None:
    try:
        from flask import current_app, has_app_context
    except ImportError:  # pragma: no cover
        return None
    if not has_app_context():
        return None
    cfg = current_app.config

    def setting(key, default=""):
        value = cfg.get(key)
        return os.environ.get(key, default) if value in (None, "") else value

    server = str(setting("MAIL_SERVER")).strip()
    if not server:
        return None
    host, _, port = server.partition(":")
    return {"host": host, "port": int(port or setting("MAIL_PORT", "25") or 25),
            "sender": setting("MAIL_FROM", "ims@localhost") or "ims@localhost",
            "username": setting("MAIL_USERNAME") or None,
            "password": setting("MAIL_PASSWORD") or None,
            "starttls": str(setting("MAIL_USE_TLS")).lower() in ("1", "true", "yes", "on"),
            "base_url": str(setting("IMS_BASE_URL")).rstrip("/")}


def send_mail(settings: dict, messages: list[tuple[str, str, str, str | None]]) -> int:
    """Send (to, subject, body, link) messages over one SMTP connection; returns how many."""
    with smtplib.SMTP(settings["host"], settings["port"], timeout=10) as smtp:
        if settings.get("starttls"):
            smtp.starttls()
        if settings.get("username"):
            smtp.login(settings["username"], settings["password"] or "")
        for to, subject, body, link in messages:
            msg = EmailMessage()
            msg["From"] = settings["sender"]
            msg["To"] = to
            msg["Subject"] = subject
            text = body
            if link:
                text += "\n\n" + (settings.get("base_url") or "") + link
            msg.set_content(text)
            smtp.send_message(msg)
    return len(messages)


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    queued = session.info.pop(_QUEUE, None)
    if not queued:
        return
    settings = _mail_settings()
    if settings is None:
        return
    try:
        send_mail(settings, queued)
    except Exception:  # mail is a courtesy: the in-app notification is already saved
        log.exception("could not send %d notification e-mail(s)", len(queued))


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction) -> None:
    session.info.pop(_QUEUE, None)


# --------------------------------------------------------------------------- workflow operator
def _op_notify_approvers(ctx, data: dict) -> dict:
    """Tell the holders of ``current_role`` that a request awaits them (not the requester)."""
    role = data.get("current_role") or ""
    if not role:
        return {}
    from app.domain.money import gbp

    amount = data.get("amount_pence")
    what = str(data.get("subject_type") or "request").replace("_", " ")
    text = f"A {what} of {gbp(int(amount))} awaits approval by a {role}." if amount is not None \
        else f"A {what} awaits approval by a {role}."
    if data.get("escalated_from") and R.NEXT_ROLE_UP.get(data["escalated_from"]) == role:
        text += f" (Escalated: not approved in time by a {data['escalated_from']}.)"
    about = (data["subject_type"], data.get("subject_id")) if data.get("subject_type") else None
    notify(ctx.session, [role], text, "/tasks/",
           exclude=[data.get("requester") or ""], about=about)
    return {}


def _register_operator() -> None:
    from app.workflow_engine import register_operator

    register_operator("notify_approvers", _op_notify_approvers, (),
                      "Notify every holder of current_role (in the app, and by e-mail when SMTP is "
                      "configured) that the request awaits their approval.")


_register_operator()
