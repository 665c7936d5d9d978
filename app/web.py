"""Request hooks: security headers, Jinja filters and globals shared by every page."""

from __future__ import annotations

import secrets

from flask import Flask, g

#: The Content-Security-Policy; {script} is the script-src of the response. Scripts come from our
#: own origin or carry the response's nonce: no inline event handlers, no `javascript:` URLs, no
#: injected <script>. Styles may be inline (FAB's and bpmn-js's style attributes).
CSP = ("default-src 'self'; script-src {script}; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def csp_nonce() -> str:
    """This response's script nonce (made on first use); templates put it on every <script>.

    FAB's templates call it through ``baselib.get_nonce()`` when a ``csp_nonce`` global exists.
    """
    nonce = g.get("_csp_nonce")
    if nonce is None:
        nonce = g._csp_nonce = secrets.token_urlsafe(18)
    return nonce


def content_security_policy() -> str:
    """The policy for the current response: with its nonce when the page used one."""
    nonce = g.get("_csp_nonce")
    return CSP.format(script="'self'" + (f" 'nonce-{nonce}'" if nonce else ""))


def install_web_hooks(app: Flask) -> None:
    from app.formatting import install_filters

    install_filters(app)
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.before_request
    def fresh_nonce():
        g.pop("_csp_nonce", None)  # one nonce per response, even where an app context is reused

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if app.config.get("IMS_ENV") == "production":
            response.headers.setdefault("Strict-Transport-Security",
                                        "max-age=31536000; includeSubDomains")
        return response

    @app.context_processor
    def ims_globals():
        from app.extensions import db
        from app.services.audit import history_for

        def audit_history(entity, entity_id):
            return history_for(db.session, entity, entity_id)

        from flask_babel import get_locale

        return {"audit_history": audit_history, "council_name": app.config["COUNCIL_NAME"],
                "get_locale": get_locale, "navigation_menu": navigation_menu}


def navigation_menu():
    """The navigation bar's menu (appbuilder/navbar_menu.html), rendered once per set of roles,
    language and mount point in each worker and kept in the shared cache
    (app/services/sharedcache.py) while the database's cache version stands: which entries show
    depends only on the roles' permissions, whose every change (a role edited, `ims sync-roles`,
    a user's roles) gives a new version. Rendering it asked FAB about each of its 40-odd entries
    on every page (about a third of a register page's time)."""
    from flask import current_app, render_template, request
    from flask_babel import get_locale
    from flask_login import current_user
    from markupsafe import Markup

    from app.extensions import db
    from app.services import sharedcache

    appbuilder = current_app.appbuilder
    user = getattr(g, "user", None) or current_user
    roles = (frozenset(r.id for r in user.roles)
             if user is not None and getattr(user, "is_authenticated", False) else None)
    key = ("navigation_menu", roles, str(get_locale()), request.script_root)
    return Markup(sharedcache.get(db.session, key, lambda: render_template(
        "appbuilder/navbar_menu.html", menu=appbuilder.menu)))
