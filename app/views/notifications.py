"""Notifications page: the signed-in user's own messages, mark one or all read; navbar count."""

from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_login import current_user

from app.domain.errors import NotFound
from app.domain.ids import to_id
from app.extensions import db
from app.security.redirects import local_path
from app.services import notifications as N


def _username() -> str:
    return (getattr(g, "user", None) or current_user).username


class NotificationView(BaseView):
    """Every user reads only their own notifications (the query is by the signed-in username)."""

    route_base = "/notifications"
    class_permission_name = "Notification"
    method_permission_name = {"index": "read", "mark_read": "read"}
    base_permissions = ["can_read"]
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        unread_only = request.args.get("unread") == "1"
        notes = N.for_user(db.session, _username(), unread_only=unread_only)
        return self.render_template("notifications/index.html", notes=notes,
                                    unread_only=unread_only,
                                    unread=N.unread_count(db.session, _username()))

    @expose("/read", methods=["POST"])
    @has_access
    def mark_read(self):
        """Mark one notification (form field id) or all of the user's notifications read."""
        raw = request.form.get("id", "").strip()
        try:
            note_id = to_id(raw) if raw else None
        except ValueError:
            abort(404)
        try:
            n = N.mark_read(db.session, _username(), note_id)
        except NotFound:
            abort(404)
        if note_id is None:
            flash(_("%(n)d notification(s) marked read.", n=n), "info")
        return redirect(local_path(request.form.get("next")) or url_for("NotificationView.index"))


def register_notification_views(appbuilder) -> None:
    """The notifications page (no menu entry: the navbar bell links to it) and its count."""
    appbuilder.add_view_no_menu(NotificationView)

    from flask import current_app

    app = current_app._get_current_object()

    @app.context_processor
    def notification_count():
        def count():
            user = getattr(g, "user", None) or current_user
            if user is None or not getattr(user, "is_authenticated", False):
                return 0
            try:
                return N.unread_count(db.session, user.username)
            except Exception:
                db.session.rollback()
                return 0

        return {"notification_count": count}
