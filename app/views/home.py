"""Home page after login: the income dashboard."""

from flask import redirect, url_for
from flask_appbuilder import IndexView, expose
from flask_login import current_user


class HomeView(IndexView):
    """Sends visitors to the login page and staff to their dashboard."""

    route_base = ""
    default_view = "index"
    index_template = "ims/home.html"

    @expose("/")
    def index(self):
        if not current_user.is_authenticated:
            return redirect(url_for(self.appbuilder.sm.auth_view.endpoint + ".login"))
        sm = self.appbuilder.sm
        dash = None
        from app.security.roles import READ, RESOURCES

        # "Dashboard" is a rule, not a registered view: check the user's roles against it
        if {r.name for r in current_user.roles} & RESOURCES["Dashboard"][READ]:
            from flask import current_app

            from app.extensions import db
            from app.services.search import cached_dashboard

            dash = cached_dashboard(
                db.session, current_app.config.get("IMS_DASHBOARD_CACHE_SECONDS", 30))
        return self.render_template(
            self.index_template, appbuilder=self.appbuilder, dash=dash,
            can_search=sm.has_access("can_read", "Transaction"),
            can_receipt=sm.has_access("can_write", "Receipt"))
