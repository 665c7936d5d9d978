"""Request hooks: security headers, Jinja filters and globals shared by every page."""

from __future__ import annotations

from flask import Flask

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def install_web_hooks(app: Flask) -> None:
    from app.formatting import install_filters

    install_filters(app)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
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
                "get_locale": get_locale}
