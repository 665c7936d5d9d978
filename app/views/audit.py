"""Audit trail pages for Auditors and Administrators."""

from flask import flash, redirect
from flask_appbuilder import expose
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
                    "after", "reason", "prev_hash", "hash", "key_id"]
    search_columns = ["occurred_at", "actor", "action", "entity", "entity_id", "reason"]
    base_order = ("id", "desc")
    show_template = "appbuilder/general/model/show.html"
    label_columns = {"id": _l("Event"), "occurred_at": _l("When"), "actor": _l("Who"),
                     "action": _l("Action"), "entity": _l("Record type"),
                     "entity_id": _l("Record id"), "before": _l("Before"), "after": _l("After"),
                     "reason": _l("Reason"), "prev_hash": _l("Previous hash"), "hash": _l("Hash"),
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
