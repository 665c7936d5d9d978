"""IMS application factory."""

from __future__ import annotations

import logging
import os

from flask import Flask
from werkzeug.routing import IntegerConverter

from app.domain.errors import ConfigurationError
from app.domain.ids import MAX_ID, decimal_pattern


def _check_production(app: Flask) -> None:
    """Production refuses to start with the default secret key or SQLite."""
    from config import DEFAULT_SECRET_KEY

    if app.config["IMS_ENV"] != "production":
        return
    key = app.config.get("SECRET_KEY") or ""
    if key == DEFAULT_SECRET_KEY or len(key) < 32:
        raise ConfigurationError(
            "SECRET_KEY must be set to a random value of at least 32 characters in production "
            "(python -c 'import secrets; print(secrets.token_hex(32))')."
        )


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
    logging.basicConfig(level=logging.INFO if app.debug else logging.WARNING)

    from app.security.passwords import password_policy

    app.config["FAB_PASSWORD_COMPLEXITY_VALIDATOR"] = password_policy
    # the OpenAPI view is ours (app.api.openapi): FAB's, with the document completed
    swagger = app.config.get("FAB_API_SWAGGER_UI", False) and \
        app.config.get("FAB_ADD_OPENAPI_VIEWS", True)
    app.config["FAB_ADD_OPENAPI_VIEWS"] = False

    from app.extensions import appbuilder, csrf, db, migrate

    db.init_app(app)
    csrf.init_app(app)
    # migrations/env.py points Alembic at flask_appbuilder.Model.metadata, not db.metadata.
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"),
                     render_as_batch=True)
    with app.app_context():
        from app import models  # noqa: F401  (register every table on Model.metadata)
        from app.services.audit import install_audit_listeners

        install_audit_listeners(db.session)
        appbuilder.init_app(app, db.session)
        from app.views import register_views

        register_views(appbuilder)
        if swagger:
            from flask_appbuilder.api.manager import SwaggerView

            from app.api.openapi import OpenApi

            appbuilder.add_api(OpenApi)
            appbuilder.add_view_no_menu(SwaggerView)
        appbuilder.post_init()
        _exempt_api_from_csrf(app, appbuilder, csrf)

    from app.guards import install_request_guards
    from app.web import install_web_hooks

    install_request_guards(app, appbuilder)
    install_web_hooks(app)
    from app.cli import ims_cli

    app.cli.add_command(ims_cli)
    return app


def _exempt_api_from_csrf(app, appbuilder, csrf) -> None:
    """JWT-authenticated REST APIs carry no cookie session: exempt them from CSRF."""
    from flask_appbuilder.api import BaseApi

    for view in appbuilder.baseviews:
        if isinstance(view, BaseApi) and view.blueprint is not None:
            csrf.exempt(view.blueprint)
