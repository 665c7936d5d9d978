"""Who is making this request: the signed-in user's name and roles, for services' actor fields
and for the pages and APIs alike (both layers read them from here, not from each other)."""

from __future__ import annotations

from flask import g

from app.security import roles as R


def _user():
    user = getattr(g, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        from flask_login import current_user

        user = current_user
    return user


def current_username() -> str:
    return _user().username


def current_roles() -> set[str]:
    return {r.name for r in getattr(_user(), "roles", [])}


def may_override_stop() -> bool:
    return bool(current_roles() & R.MANAGER_AND_ABOVE)
