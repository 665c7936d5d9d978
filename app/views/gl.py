"""Closing the books: GL export batches (run, list, download, void) and accounting periods (list,
close page with its checks, request a close or a reopening)."""

from __future__ import annotations

import datetime as dt

from flask import flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.domain.errors import DomainError
from app.extensions import db
from app.formatting import money as fmt_money
from app.models.gl import GlLayout
from app.services import gl_export as G
from app.services import gl_layouts as LAY
from app.services import periods as P

BATCH_STATUS = {"complete": _l("Exported"), "void": _l("Void")}
PERIOD_STATUS = {"open": _l("Open"), "closed": _l("Closed")}
CHECK_LABELS = {"suspense": _l("Unallocated suspense items dated on or before the period's end"),
                "unexported": _l("Ledger lines not yet exported to the general ledger"),
                "unreconciled": _l("Unreconciled bank items")}


def _user() -> str:
    from app.security.current import current_username

    return current_username()


def _messages(exc: DomainError) -> None:
    flash(exc.message, "danger")


class GLExportView(BaseView):
    route_base = "/gl-exports"
    class_permission_name = "GLExport"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "run": "write", "download": "read",
                              "void": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = db.session
        layouts = LAY.latest(session)
        session.commit()
        batches = G.batches(session, limit=200)
        layout_names = {row.id: f"{row.name} v{row.version}"
                        for row in session.query(GlLayout).all()}
        yesterday = P.today() - dt.timedelta(days=1)
        return self.render_template(
            "gl/exports.html", batches=batches, layouts=layouts, layout_names=layout_names,
            statuses=BATCH_STATUS, default_cut_off=yesterday.isoformat(),
            today=P.today().isoformat(),
            may_write=self.appbuilder.sm.has_access("can_write", "GLExport"))

    @expose("/run", methods=["POST"])
    @has_access
    def run(self):
        form = request.form
        try:
            batch = G.create_batch(db.session, cut_off=form.get("cut_off"),
                                   layout=form.get("layout"),
                                   summarised=form.get("itemised") != "1", actor=_user(),
                                   trigger="ui")
        except DomainError as exc:
            _messages(exc)
        else:
            flash(_("Batch %(number)s exported: %(lines)s ledger lines, control total "
                    "%(total)s.", number=batch.number, lines=batch.line_count,
                    total=fmt_money(batch.control_total)), "success")
        return redirect(url_for("GLExportView.index"))

    @expose("/<int:pk>/download")
    @has_access
    def download(self, pk):
        try:
            batch = G.download(db.session, pk, actor=_user())
        except DomainError as exc:
            _messages(exc)
            return redirect(url_for("GLExportView.index"))
        return G.file_response(batch)

    @expose("/<int:pk>/void", methods=["POST"])
    @has_access
    def void(self, pk):
        try:
            batch = G.void_batch(db.session, pk, reason=request.form.get("reason"), actor=_user())
        except DomainError as exc:
            _messages(exc)
        else:
            flash(_("Batch %(number)s is void: its lines go into the next batch.",
                    number=batch.number), "success")
        return redirect(url_for("GLExportView.index"))


class PeriodView(BaseView):
    route_base = "/periods"
    class_permission_name = "AccountingPeriod"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "detail": "read", "request_change": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        return self.render_template("gl/periods.html", periods=P.periods(db.session),
                                    statuses=PERIOD_STATUS, actions=P.ACTION_LABELS)

    @expose("/<period>")
    @has_access
    def detail(self, period):
        session = db.session
        try:
            info = P.get_period(session, period)
        except DomainError as exc:
            _messages(exc)
            return redirect(url_for("PeriodView.index"))
        checks = P.close_checks(session, info.start)
        ended = info.end < P.today()
        return self.render_template(
            "gl/period.html", info=info, checks=checks, labels=CHECK_LABELS, ended=ended,
            statuses=PERIOD_STATUS, actions=P.ACTION_LABELS,
            may_write=self.appbuilder.sm.has_access("can_write", "AccountingPeriod"))

    @expose("/<period>/request", methods=["POST"])
    @has_access
    def request_change(self, period):
        action = request.form.get("action")
        try:
            req = P.request_change(db.session, period, action, actor=_user(),
                                   reason=request.form.get("reason"))
        except DomainError as exc:
            _messages(exc)
        else:
            flash(_("Your request is waiting for the Head of Finance's approval "
                    "(request %(id)s).", id=req.id), "success")
        return redirect(url_for("PeriodView.detail", period=period[:7]))


def register_gl_views(appbuilder) -> None:

    cat = "Closing the books"
    appbuilder.add_view(GLExportView, "GL exports", label=_l("GL exports"), icon="fa-upload",
                        category=cat, category_label=_l("Closing the books"),
                        category_icon="fa-book")
    appbuilder.add_view(PeriodView, "Accounting periods", label=_l("Accounting periods"),
                        icon="fa-calendar", category=cat)
