"""Account-holder pages: upload a revenues file (dry run with a progress bar, then apply), the
syncs and their change lists, the file profiles, and the account-holder search."""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from app.domain.errors import DomainError
from app.models.accounts import AccountHolderProfile, AccountSync, AccountSyncChange
from app.services.audit import audited
from app.views.base import ImsModelView, datamodel

audited(AccountHolderProfile)

STATUS_LABELS = {"checking": _l("Checking"), "checked": _l("Checked (dry run)"),
                 "refused": _l("Refused"), "applying": _l("Applying"), "applied": _l("Applied"),
                 "failed": _l("Failed")}
KIND_LABELS = {"new": _l("New"), "changed": _l("Changed"), "closed": _l("Closed"),
               "reopened": _l("Reopened")}
SEARCH_LABELS = {"name": _l("Name"), "sounds_like": _l("Name sounds like"),
                 "reference": _l("Account reference"), "postcode": _l("Postcode"),
                 "address": _l("Address")}


def _db():
    from app.extensions import db

    return db.session


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or \
        request.headers.get("X-Requested-With") == "fetch"


class AccountSyncView(BaseView):
    """Account-holder files: upload, dry-run result, apply, history."""

    route_base = "/account-sync"
    class_permission_name = "AccountSync"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "upload": "write", "detail": "read",
                              "progress": "read", "apply": "write", "discard": "write",
                              "changes": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = _db()
        page = max(request.args.get("page", 0, type=int), 0)
        syncs = session.scalars(select(AccountSync).order_by(AccountSync.id.desc())
                                .offset(page * 25).limit(26)).all()
        profiles = session.scalars(select(AccountHolderProfile).order_by(
            AccountHolderProfile.name)).all()
        return self.render_template("accounts/index.html", syncs=syncs[:25],
                                    more=len(syncs) > 25, page=page, profiles=profiles,
                                    statuses=STATUS_LABELS)

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self):
        from app.services.account_uploads import submit_account_file
        from app.services.accounts import FileRefused

        try:
            sync = submit_account_file(request.files.get("file"), request.form.get("profile"))
        except FileRefused as exc:
            _db().rollback()
            if _wants_json():
                return jsonify(exc.to_dict()), 422
            flash(exc.message, "danger")
            return redirect(url_for("AccountSyncView.index"))
        except DomainError as exc:
            _db().rollback()
            if _wants_json():
                return jsonify(exc.to_dict()), exc.status
            flash(exc.message, "danger")
            return redirect(url_for("AccountSyncView.index"))
        url = url_for("AccountSyncView.detail", pk=sync.id)
        if _wants_json():
            return jsonify({"id": sync.id, "status": sync.status, "url": url,
                            "progress_url": url_for("AccountSyncView.progress", pk=sync.id)}), 201
        return redirect(url)

    @expose("/<int:pk>")
    @has_access
    def detail(self, pk):
        from app.services.accounts import sync_result

        sync = _db().get(AccountSync, pk)
        if sync is None:
            abort(404)
        profile = _db().get(AccountHolderProfile, sync.profile_id)
        return self.render_template("accounts/detail.html", sync=sync, profile=profile,
                                    result=sync_result(sync), statuses=STATUS_LABELS)

    @expose("/<int:pk>/progress")
    @has_access
    def progress(self, pk):
        from app.services.accounts import sync_result

        session = _db()
        sync = session.get(AccountSync, pk)
        if sync is None:
            return jsonify({"message": _("No such account-holder file."), "errors": {}}), 404
        session.refresh(sync)
        result = sync_result(sync)
        result["status_label"] = str(STATUS_LABELS.get(sync.status, sync.status))
        return jsonify(result)

    @expose("/<int:pk>/apply", methods=["POST"])
    @has_access
    def apply(self, pk):
        from app.services.account_uploads import apply_account_sync

        try:
            sync = apply_account_sync(pk)
            if sync.status == "applied":
                flash(_("The file was applied."), "success")
            else:
                flash(_("The file is being applied."), "info")
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
        return redirect(url_for("AccountSyncView.detail", pk=pk))

    @expose("/<int:pk>/discard", methods=["POST"])
    @has_access
    def discard(self, pk):
        from app.services.accounts import discard
        from app.services.audit import current_actor

        try:
            discard(_db(), pk, actor=current_actor())
            flash(_("The file was discarded; nothing was applied."), "info")
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
        return redirect(url_for("AccountSyncView.detail", pk=pk))

    @expose("/<int:pk>/changes")
    @has_access
    def changes(self, pk):
        from app.services.accounts import change_list

        session = _db()
        sync = session.get(AccountSync, pk)
        if sync is None:
            abort(404)
        page = max(request.args.get("page", 0, type=int), 0)
        rows = change_list(session, pk, offset=page * 100, limit=101)
        total = session.scalar(select(func.count(AccountSyncChange.id)).where(
            AccountSyncChange.sync_id == pk))
        return self.render_template("accounts/changes.html", sync=sync, rows=rows[:100],
                                    more=len(rows) > 100, page=page, total=total,
                                    kinds=KIND_LABELS)


class AccountSearchView(BaseView):
    """Find account holders by reference, name (or a name that sounds alike), postcode or
    address."""

    route_base = "/account-search"
    class_permission_name = "AccountHolder"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        from app.domain.errors import ValidationError
        from app.models.reference import Fund
        from app.services.accounts.search import search_accounts

        q = request.args.get("q", "")
        by = request.args.get("by", "name")
        fund = request.args.get("fund", "")
        rows, error = [], None
        if q.strip():
            try:
                rows = search_accounts(_db(), q, by, fund=fund or None)
            except ValidationError as exc:
                error = exc.message
        from app.services.scope import restrict

        funds = _db().scalars(restrict(select(Fund), Fund.code).order_by(Fund.code)).all()
        return self.render_template("accounts/search.html", q=q, by=by, rows=rows, error=error,
                                    kinds=SEARCH_LABELS, searched=bool(q.strip()), funds=funds,
                                    fund=fund)


class AccountHolderProfileView(ImsModelView):
    datamodel = datamodel(AccountHolderProfile)
    class_permission_name = "AccountHolderProfile"
    list_title = _l("Account-holder file profiles")
    show_title = _l("Account-holder file profile")
    add_title = _l("Add account-holder file profile")
    edit_title = _l("Edit account-holder file profile")
    list_columns = ["name", "fund_code", "file_format", "encoding", "complete", "skip_bad_lines"]
    add_columns = ["name", "fund_code", "file_format", "encoding", "delimiter", "has_header",
                   "date_format", "columns", "ignored_columns", "complete", "skip_bad_lines"]
    edit_columns = add_columns
    show_columns = add_columns
    search_columns = ["name", "fund_code"]
    label_columns = {"name": _l("Name"), "fund_code": _l("Fund"), "file_format": _l("Format"),
                     "encoding": _l("Encoding"), "delimiter": _l("Delimiter"),
                     "has_header": _l("First line is a header"),
                     "date_format": _l("Date format"), "columns": _l("Column mapping"),
                     "ignored_columns": _l("Ignored columns"),
                     "complete": _l("The file is complete"),
                     "skip_bad_lines": _l("Skip bad lines")}
    description_columns = {
        "file_format": _l("csv or fixed (fixed width)."),
        "columns": _l('JSON: field to column, e.g. {"reference": "Account", "name": "Name", '
                      '"postcode": "Postcode", "stop": "Stop", "stop_message": "StopText"}. '
                      'Fixed width: "1-10" (first and last character). Fields: reference, name, '
                      'title, forename, surname, address, address1-4, postcode, balance, '
                      'balance_date, stop, stop_message.'),
        "date_format": _l("As Python writes it, e.g. %d/%m/%Y for 31/03/2026."),
        "ignored_columns": _l("Comma-separated file columns to ignore; any other unmapped "
                              "column refuses the file."),
        "complete": _l("The file lists every account of the fund: accounts missing from it are "
                       "closed (never deleted)."),
        "skip_bad_lines": _l("Skip bad lines and list them, instead of refusing the file."),
    }

    def pre_add(self, item):
        from app.domain.errors import ValidationError
        from app.services.accounts import profile_problems

        problems = profile_problems(item)
        if problems:
            raise ValidationError(" ".join(problems))

    pre_update = pre_add


class ConfigurationBundleView(BaseView):
    """Export this site's configuration; upload a bundle, see its differences, import it."""

    route_base = "/configuration-bundle"
    class_permission_name = "ConfigurationBundle"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "export": "read", "diff": "read",
                              "import_bundle": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        return self.render_template("accounts/bundle.html", plan=None, text=None)

    @expose("/export")
    @has_access
    def export(self):
        from flask import Response

        from app.services import bundles

        fmt = "json" if request.args.get("format") == "json" else "yaml"
        return Response(bundles.dumps(bundles.export_bundle(_db()), fmt),
                        mimetype="application/json" if fmt == "json" else "application/yaml",
                        headers={"Content-Disposition": f"attachment; filename=ims-config.{fmt}"})

    @expose("/diff", methods=["POST"])
    @has_access
    def diff(self):
        from app.services import bundles

        upload = request.files.get("file")
        raw = upload.read() if upload is not None else b""
        try:
            bundle = bundles.loads(raw)
            plan = bundles.plan(_db(), bundle)
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
            return redirect(url_for("ConfigurationBundleView.index"))
        _db().rollback()
        return self.render_template("accounts/bundle.html", plan=plan,
                                    text=raw.decode("utf-8"))

    @expose("/import", methods=["POST"])
    @has_access
    def import_bundle(self):
        from app.services import bundles
        from app.services.audit import current_actor

        try:
            bundle = bundles.loads(request.form.get("bundle", "").encode("utf-8"))
            _plan, made = bundles.import_bundle(_db(), bundle, actor=current_actor())
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
            for problems in exc.errors.values():
                for problem in problems[:20]:
                    flash(problem, "danger")
            return redirect(url_for("ConfigurationBundleView.index"))
        flash(_("The bundle was imported."), "success")
        if made:
            flash(_("Changes to approval limits or workflows wait for a second person's "
                    "approval."), "info")
        return redirect(url_for("ConfigurationBundleView.index"))


def register_account_views(appbuilder) -> None:
    """Called from app.views.register_views."""
    ref = "Reference data"
    appbuilder.add_view(AccountSearchView, "Account holder search",
                        label=_l("Account holder search"), icon="fa-search", category=ref)
    appbuilder.add_view(AccountSyncView, "Account holder files",
                        label=_l("Account holder files"), icon="fa-file-text-o", category=ref)
    appbuilder.add_view(AccountHolderProfileView, "Account holder file profiles",
                        label=_l("Account holder file profiles"), icon="fa-columns",
                        category=ref)
    appbuilder.add_view(ConfigurationBundleView, "Configuration bundles",
                        label=_l("Configuration bundles"), icon="fa-archive", category=ref)
