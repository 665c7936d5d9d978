"""IMS application factory."""

from __future__ import annotations

import logging
import os

from flask import Flask

from app.domain.errors import ConfigurationError


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
    audit_key = app.config.get("IMS_AUDIT_KEY") or ""
    if audit_key == DEFAULT_AUDIT_KEY or len(audit_key) < 32 or audit_key == key:
        raise ConfigurationError(
            "IMS_AUDIT_KEY must be set to a random value of at least 32 characters, other than "
            "SECRET_KEY, in production: it keys the audit trail's hash chain and is kept out of "
            "the database (python -c 'import secrets; print(secrets.token_hex(32))')."
        )


def create_app(config_class=None) -> Flask:
    """Build the Flask app: config, extensions, AppBuilder, views, APIs, CLI."""
    from config import config_for

    app = Flask(__name__, instance_path=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "instance"))
    app.config.from_object(config_class or config_for())
    os.makedirs(app.instance_path, exist_ok=True)
    _check_production(app)
    logging.basicConfig(level=logging.INFO if app.debug else logging.WARNING)

    from app.security.passwords import password_policy

    app.config["FAB_PASSWORD_COMPLEXITY_VALIDATOR"] = password_policy

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
        appbuilder.post_init()
        _exempt_api_from_csrf(app, appbuilder, csrf)

    from app.web import install_web_hooks

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
