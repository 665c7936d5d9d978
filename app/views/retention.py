"""Personal-data pages: retention (what is due, what is held, a dry run, running it, legal
holds) and the subject-access report (on screen, as CSV, as a print view)."""

from __future__ import annotations

from flask import Response, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.domain.errors import DomainError

#: column headings of the subject-access report's sections
COLUMN_LABELS = {
    "id": _l("Id"), "fund": _l("Fund"), "reference": _l("Reference"), "name": _l("Name"),
    "address": _l("Address"), "postcode": _l("Postcode"), "closed": _l("Closed"),
    "receipt": _l("Receipt"), "date": _l("Date"), "amount": _l("Amount"),
    "method": _l("Payment method"), "narrative": _l("Narrative"), "transaction": _l("Payment"),
    "status": _l("Status"), "payer": _l("Payer"), "payee": _l("Payee"), "reason": _l("Reason"),
    "email": _l("Email"), "actor": _l("Who"), "action": _l("Action"), "record": _l("Record"),
    "changes": _l("Before → after"),
}
HOLD_LABELS = {"reference": _l("Account reference"), "person": _l("Person's name")}


def _db():
    from app.extensions import db

    return db.session


def _actor() -> str:
    from app.services.audit import current_actor

    return current_actor()


class RetentionView(BaseView):
    route_base = "/retention"
    class_permission_name = "Retention"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "dry_run": "write", "run": "write",
                              "hold": "write", "release": "write"}
    default_view = "index"

    def _page(self, result=None, dry=False):
        from app.services import retention as R

        session = _db()
        plan = result or R.plan(session)
        holds = R.all_holds(session)
        session.rollback()
        return self.render_template("retention/index.html", plan=plan, holds=holds, dry=dry,
                                    kind_labels={k: v.label for k, v in R.KINDS.items()},
                                    hold_labels=HOLD_LABELS, done=result is not None and not dry)

    @expose("/")
    @has_access
    def index(self):
        return self._page()

    @expose("/dry-run", methods=["POST"])
    @has_access
    def dry_run(self):
        from app.services import retention as R

        return self._page(R.run(_db(), actor=_actor(), dry_run=True), dry=True)

    @expose("/run", methods=["POST"])
    @has_access
    def run(self):
        from app.services import retention as R

        result = R.run(_db(), actor=_actor())
        done = sum(k.anonymised for k in result.kinds)
        flash(_("%(n)s records anonymised.", n=done), "success")
        return redirect(url_for("RetentionView.index"))

    @expose("/holds", methods=["POST"])
    @has_access
    def hold(self):
        from app.services import retention as R

        try:
            R.place_hold(_db(), match=request.form.get("match"), value=request.form.get("value"),
                         reason=request.form.get("reason"), actor=_actor())
        except DomainError:
            _db().rollback()
            flash(_("The hold was not placed: give a reference or name (2 to 200 characters) "
                    "and the reason."), "danger")
            return redirect(url_for("RetentionView.index"))
        flash(_("The records are held."), "success")
        return redirect(url_for("RetentionView.index"))

    @expose("/holds/<int:pk>/release", methods=["POST"])
    @has_access
    def release(self, pk):
        from app.services import retention as R

        try:
            R.release_hold(_db(), pk, actor=_actor())
        except DomainError:
            _db().rollback()
            flash(_("This hold is not in force."), "warning")
            return redirect(url_for("RetentionView.index"))
        flash(_("The hold was released."), "success")
        return redirect(url_for("RetentionView.index"))


class SubjectAccessView(BaseView):
    route_base = "/subject-access"
    class_permission_name = "SubjectAccess"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        from app.services import audit
        from app.services import retention as R

        q = (request.args.get("q") or "").strip()
        fmt = request.args.get("format")
        report, error = None, None
        if q:
            try:
                report = R.subject_access(_db(), q)
            except DomainError:
                _db().rollback()
                error = _("Give a name or reference of 3 to 200 characters.")
        if report is not None:
            audit.record(_db(), "subject_access.report", "SubjectAccess", None,
                         after={"records": report.total}, actor=_actor())
            _db().commit()
            if fmt == "csv":
                return Response(R.subject_access_csv(report), mimetype="text/csv",
                                headers={"Content-Disposition":
                                         'attachment; filename="subject-access.csv"'})
        template = "retention/subject_access_print.html" if fmt == "print" and report \
            else "retention/subject_access.html"
        return self.render_template(template, q=q, report=report, error=error,
                                    sections=R.SECTIONS, columns=COLUMN_LABELS), \
            422 if error else 200


def register_retention_views(appbuilder) -> None:
    """Called from app.views.register_views: a Personal data menu."""
    cat = "Personal data"
    appbuilder.add_view(RetentionView, "Retention", label=_l("Retention and legal holds"),
                        icon="fa-user-times", category=cat, category_label=_l("Personal data"),
                        category_icon="fa-user-secret")
    appbuilder.add_view(SubjectAccessView, "Subject access",
                        label=_l("Subject-access report"), icon="fa-id-card-o", category=cat)
