"""Where each role starts after signing in (app/security/roles.py LANDINGS), the income dashboard
(a menu entry for everyone who may read it) and the Administrators' start page."""

from flask import redirect, url_for
from flask_appbuilder import BaseView, IndexView, expose, has_access
from flask_login import current_user

from app.security.roles import landing_for

#: landing key -> (endpoint, the permission and resource it needs)
_REDIRECTS = {
    "tasks": ("TaskView.inbox", "can_read", "Task"),
    "workflows": ("WorkflowDefinitionView.list", "can_read", "WorkflowDefinition"),
    "audit": ("AuditTrailView.index", "can_read", "AuditEvent"),
    "receipt": ("ReceiptView.new", "can_write", "Receipt"),
}


def _dashboard_page(view, template="ims/home.html", **extra):
    from flask import current_app

    from app.extensions import db
    from app.services.search import cached_dashboard

    sm = view.appbuilder.sm
    dash = cached_dashboard(db.session, current_app.config.get("IMS_DASHBOARD_CACHE_SECONDS", 60)
                            ) if sm.has_access("can_read", "Dashboard") else None
    return view.render_template(
        template, appbuilder=view.appbuilder, dash=dash,
        can_search=sm.has_access("can_read", "Transaction"),
        can_receipt=sm.has_access("can_write", "Receipt"), **extra)


class HomeView(IndexView):
    """Sends visitors to the login page and staff to where their work is."""

    route_base = ""
    default_view = "index"
    index_template = "ims/home.html"

    @expose("/")
    def index(self):
        if not current_user.is_authenticated:
            return redirect(url_for(self.appbuilder.sm.auth_view.endpoint + ".login"))
        sm = self.appbuilder.sm
        key = landing_for(r.name for r in current_user.roles)
        if key in _REDIRECTS:
            endpoint, permission, resource = _REDIRECTS[key]
            if sm.has_access(permission, resource):
                return redirect(url_for(endpoint))
        if key == "admin":
            return self.render_template("ims/landing_admin.html", appbuilder=self.appbuilder,
                                        links=_admin_links(sm))
        return _dashboard_page(self)


def _admin_links(sm) -> list[dict]:
    """The Administrators' start page: reference data, users and roles, with record counts."""
    from flask_babel import lazy_gettext as _l
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models.reference import (
        AccountHolder,
        Fund,
        Office,
        PaymentMethod,
        ReferenceValidator,
        VatCode,
    )

    rows = [
        (_l("Funds"), "FundView.list", "Fund", Fund),
        (_l("Account holders"), "AccountHolderView.list", "AccountHolder", AccountHolder),
        (_l("Payment methods"), "PaymentMethodView.list", "PaymentMethod", PaymentMethod),
        (_l("VAT codes"), "VatCodeView.list", "VatCode", VatCode),
        (_l("Offices"), "OfficeView.list", "Office", Office),
        (_l("Reference validators"), "ReferenceValidatorView.list", "ReferenceValidator",
         ReferenceValidator),
    ]
    links = []
    for label, endpoint, resource, model in rows:
        if sm.has_access("can_read", resource):
            links.append({"label": label, "url": url_for(endpoint), "group": "reference",
                          "count": db.session.scalar(select(func.count()).select_from(model))})
    if sm.has_access("can_read", "Setting"):
        links.append({"label": _l("System settings"), "url": url_for("SettingView.list"),
                      "group": "reference", "count": None})
    if sm.has_access("can_list", "UserDBModelView"):
        links.append({"label": _l("Users"), "url": url_for("UserDBModelView.list"),
                      "group": "people", "count": db.session.scalar(
                          select(func.count()).select_from(sm.user_model))})
    links.append({"label": _l("Roles and what they may do"), "url": url_for("RoleMatrixView.index"),
                  "group": "people", "count": None})
    return links


class DashboardView(BaseView):
    """The income dashboard: today's and the last 30 days' income by fund and payment method."""

    route_base = "/dashboard"
    class_permission_name = "Dashboard"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        return _dashboard_page(self)
