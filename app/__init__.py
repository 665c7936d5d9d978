"""IMS application factory."""

from __future__ import annotations

import logging
import os

from flask import Flask
from werkzeug.routing import IntegerConverter

from app.domain.errors import ConfigurationError
from app.domain.ids import MAX_ID, decimal_pattern


def _check_production(app: Flask) -> None:
    """Production refuses to start with the default secret key or SQLite.

    It also needs an audit key of its own (the audit trail's HMAC key: at least 32 characters,
    not the secret key)."""
    from config import DEFAULT_AUDIT_KEY, DEFAULT_SECRET_KEY

    if app.config["IMS_ENV"] != "production":
        return
    key = app.config.get("SECRET_KEY") or ""
    if key == DEFAULT_SECRET_KEY or len(key) < 32:
        raise ConfigurationError(
            "SECRET_KEY must be set to a random value of at least 32 characters in production "
            "(python -c 'import secrets; print(secrets.token_hex(32))')."
        )
    if str(app.config.get("IMS_PAYMENT_PROVIDER") or "").strip().lower() == "simulator":
        raise ConfigurationError(
            "IMS_PAYMENT_PROVIDER=simulator is refused in production: the payment-provider "
            "simulator takes no money. Set IMS_PAYMENT_PROVIDER=govuk_pay with GOVUK_PAY_API_KEY "
            "and GOVUK_PAY_WEBHOOK_SECRET.")
    audit_key = app.config.get("IMS_AUDIT_KEY") or ""
    if audit_key == DEFAULT_AUDIT_KEY or len(audit_key) < 32 or audit_key == key:
        raise ConfigurationError(
            "IMS_AUDIT_KEY must be set to a random value of at least 32 characters, other than "
            "SECRET_KEY, in production: it keys the audit trail's hash chain and is kept out of "
            "the database (python -c 'import secrets; print(secrets.token_hex(32))')."
        )


def _check_rate_limit_storage(app: Flask) -> None:
    """Production refuses the in-memory login rate limit unless told the app runs as one process:
    with memory:// each gunicorn worker counts attempts on its own (four workers, four times the
    attempts)."""
    if app.config["IMS_ENV"] != "production" or app.config.get("IMS_SINGLE_PROCESS"):
        return
    uri = str(app.config.get("RATELIMIT_STORAGE_URI") or "memory://").strip().lower()
    if uri.startswith("memory://"):
        raise ConfigurationError(
            "RATELIMIT_STORAGE_URI is memory://, which counts login attempts in each process on "
            "its own. Set RATELIMIT_STORAGE_URI to a store the processes share (for example "
            "redis://host:6379/0), or, if the app runs as one process (gunicorn -w 1), set "
            "IMS_SINGLE_PROCESS=1.")


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route (ours and FAB's) is a record id or a version number: 1 to
    MAX_ID. Anything else matches no route (404) instead of reaching the database as an integer
    its id columns cannot hold."""

    regex = decimal_pattern(MAX_ID)


def create_app(config_class=None) -> Flask:
    """Build the Flask app: config, extensions, AppBuilder, views, APIs, CLI."""
    from config import config_for

    app = Flask(__name__, instance_path=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "instance"))
    app.config.from_object(config_class or config_for())
    from app.guards import ImsJSONProvider

    app.json = ImsJSONProvider(app)
    app.url_map.converters["int"] = IdConverter  # before any route is added
    os.makedirs(app.instance_path, exist_ok=True)
    _check_production(app)
    _check_rate_limit_storage(app)
    from app.security.oidc import check_configuration

    check_configuration(app.config)
    from app.observability import configure_logging

    configure_logging(app)

    from app.security.passwords import password_policy

    app.config["FAB_PASSWORD_COMPLEXITY_VALIDATOR"] = password_policy
    # the OpenAPI view is ours (app.api.openapi): FAB's, with the document completed
    swagger = app.config.get("FAB_API_SWAGGER_UI", False) and \
        app.config.get("FAB_ADD_OPENAPI_VIEWS", True)
    app.config["FAB_ADD_OPENAPI_VIEWS"] = False

    from app.extensions import appbuilder, csrf, db, migrate

    # the pool's pre-ping is the shared cache's version read (app/services/sharedcache.py)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        k: v for k, v in (app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}).items()
        if k != "pool_pre_ping"}
    db.init_app(app)
    csrf.init_app(app)
    # migrations/env.py points Alembic at flask_appbuilder.Model.metadata, not db.metadata.
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"),
                     render_as_batch=True)
    with app.app_context():
        from app import models  # noqa: F401  (register every table on Model.metadata)
        from app.services import sharedcache

        for engine in db.engines.values():
            sharedcache.install(engine)
        from app.services.audit import install_audit_listeners

        install_audit_listeners(db.session)
        appbuilder.init_app(app, db.session)
        from app.api import register_apis
        from app.views import register_views

        register_views(appbuilder)
        register_apis(appbuilder)
        from app.services.scope import scope_fab_views

        scope_fab_views(appbuilder)  # every model view and API of fund data: the user's funds
        if swagger:
            from flask_appbuilder.api.manager import SwaggerView

            from app.api.openapi import OpenApi

            appbuilder.add_api(OpenApi)
            appbuilder.add_view_no_menu(SwaggerView)
        appbuilder.post_init()
        _protect_api_from_csrf(app, appbuilder, csrf)

    from app.guards import install_request_guards
    from app.observability import install_request_ids
    from app.ops import install_ops
    from app.web import install_web_hooks

    install_request_ids(app)  # first, so even a refused request has an id and is counted
    install_request_guards(app, appbuilder)
    install_web_hooks(app)
    from app.services.scope import install_scope

    install_scope(app)  # central work for users with all funds only
    from app.services.fund_groups import apply_sso_fund_groups
    from app.services.signin import register_sso_hook

    register_sso_hook(apply_sso_fund_groups)  # single sign-on sets the user's fund groups
    install_ops(app)
    from app.views.portal import install_portal

    install_portal(app)  # the citizen payment portal at /pay (no login)
    from app.api.card_payments import register_webhooks
    from app.simulator import register as register_simulator

    register_webhooks(app)
    register_simulator(app)  # not in production

    from app.errors import install_error_pages

    install_error_pages(app)
    from app.cli import ims_cli

    app.cli.add_command(ims_cli)
    return app


def _protect_api_from_csrf(app, appbuilder, csrf) -> None:
    """CSRF for the REST APIs, which take either a bearer token or the portal's session cookie.

    Flask-WTF's blanket check cannot tell the two apart, so the API blueprints are exempt from it
    and this hook checks the token (form field or X-CSRFToken header) of every unsafe API request
    that a session cookie authenticates. A request with `Authorization: Bearer` needs none: a
    browser adds cookies to a cross-site request by itself, but never that header (IMS allows no
    cross-origin requests), and the token is what authenticates it.
    """
    from flask import jsonify, request
    from flask_appbuilder.api import BaseApi
    from flask_appbuilder.security.api import SecurityApi
    from flask_login import current_user
    from flask_wtf.csrf import CSRFError

    api_blueprints = set()
    for view in appbuilder.baseviews:
        if isinstance(view, BaseApi) and view.blueprint is not None:
            csrf.exempt(view.blueprint)
            # the API login takes credentials (or a refresh token), never the cookie's authority
            if not isinstance(view, SecurityApi):
                api_blueprints.add(view.blueprint.name)

    @app.before_request
    def api_session_csrf():
        if (not app.config["WTF_CSRF_ENABLED"] or request.blueprint not in api_blueprints
                or request.method not in app.config["WTF_CSRF_METHODS"]):
            return None
        scheme = request.headers.get("Authorization", "").split(" ", 1)[0]
        if scheme.lower() == "bearer" or not current_user.is_authenticated:
            return None
        try:
            csrf.protect()
        except CSRFError as exc:
            return jsonify(message=f"{exc.description} A request signed in by the session "
                                   "cookie must send the page's CSRF token (X-CSRFToken header); "
                                   "API clients send Authorization: Bearer <token>."), 400
        return None
