"""Audit trail pages for Auditors and Administrators: the readable trail (who, what, which record,
before → after, filters) and each event's full record with its hashes."""

import datetime as dt

from flask import flash, redirect, request
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _l

from app.extensions import db
from app.models.audit import AuditEvent
from app.views.base import ImsModelView, datamodel


class AuditEventView(ImsModelView):
    """Read-only: the trail is append-only, so there is no add or edit."""

    datamodel = datamodel(AuditEvent)
    class_permission_name = "AuditEvent"
    base_permissions = ["can_read"]
    list_title = _l("Audit trail")
    show_title = _l("Audit event")
    list_columns = ["id", "occurred_at", "actor", "action", "entity", "entity_id", "reason"]
    show_columns = ["id", "occurred_at", "actor", "action", "entity", "entity_id", "before",
                    "after", "reason", "mac", "key_id", "chain_prev_hash", "chain_hash"]
    search_columns = ["occurred_at", "actor", "action", "entity", "entity_id", "reason"]
    base_order = ("id", "desc")
    show_template = "appbuilder/general/model/show.html"
    label_columns = {"id": _l("Event"), "occurred_at": _l("When"), "actor": _l("Who"),
                     "action": _l("Action"), "entity": _l("Record type"),
                     "entity_id": _l("Record id"), "before": _l("Before"), "after": _l("After"),
                     "reason": _l("Reason"), "mac": _l("Seal (MAC)"),
                     "chain_prev_hash": _l("Previous link in the chain"),
                     "chain_hash": _l("Link in the chain (blank until the worker links it)"),
                     "key_id": _l("Audit key")}

    @expose("/verify/")
    @has_access
    def verify(self):
        """Verify the chain against its checkpoints and say what is wrong (reads only)."""
        from flask_babel import gettext

        from app.services.audit import verify_chain

        result = verify_chain(db.session)
        if result.valid:
            flash(gettext(result.findings[0].text, **result.findings[0].params), "success")
        else:
            flash(_l("Audit chain BROKEN:"), "danger")
            for finding in result.findings:
                flash(gettext(finding.text, **finding.params), "danger")
        return redirect(self.get_redirect())


AuditEventView.method_permission_name = {**ImsModelView.method_permission_name, "verify": "read"}


class AuditTrailView(BaseView):
    """The audit trail as people read it: newest first, filtered by date, user, record type,
    action and record id; each record linked to its page; changes as before → after in words."""

    route_base = "/audit"
    class_permission_name = "AuditEvent"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        from app.services import audit_search as A

        args = request.args
        errors = []

        def day(name):
            text = (args.get(name) or "").strip()
            if not text:
                return None
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                errors.append(name)
                return None

        f = A.AuditFilter(date_from=day("date_from"), date_to=day("date_to"),
                          actor=(args.get("actor") or "").strip()[:100] or None,
                          entity=(args.get("entity") or "").strip()[:50] or None,
                          action=(args.get("action") or "").strip()[:50] or None,
                          entity_id=(args.get("entity_id") or "").strip()[:50] or None)
        if errors:
            from flask_babel import gettext

            flash(gettext("Give dates as YYYY-MM-DD (for example 2026-12-06)."), "warning")
        page = max(args.get("page", 0, type=int) or 0, 0)
        events, more = A.search(db.session, f, page)
        sm = self.appbuilder.sm
        registers = [(label, url) for label, url, perm, res in (
            (_l("Refund register"), "/refunds/", "can_read", "Refund"),
            (_l("Write-off register"), "/write-offs/", "can_read", "WriteOff"),
            (_l("Suspense report"), "/suspense-report/", "can_read", "SuspenseReport"),
            (_l("Transactions"), "/transactions/", "can_read", "Transaction"),
            (_l("Trial balance"), "/ledger/trial-balance", "can_read", "Ledger"),
        ) if sm.has_access(perm, res)]
        keep = {k: v for k, v in args.items() if k != "page" and v}
        return self.render_template(
            "ims/audit_trail.html", events=events, more=more, page=page, f=f, args=keep,
            choices=A.choices(db.session), total=A.count(db.session, f), registers=registers)
