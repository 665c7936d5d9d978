"""Home page after login."""

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
        return self.render_template(self.index_template, appbuilder=self.appbuilder)
