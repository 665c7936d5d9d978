"""Alembic environment: targets flask_appbuilder.Model.metadata (not db.metadata)."""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from flask_appbuilder import Model

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    fileConfig(config.config_file_name)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())
target_metadata = Model.metadata


def include_object(obj, name, type_, reflected, compare_to):
    """Leave alone the PostgreSQL trigram indexes that app/models/ddl.py installers create
    (expression indexes with operator classes, which the models cannot declare), SQLite's
    marker of the ledger lines awaiting the commit's balance check (app/models/sqlite.py), and the
    ledger references that PostgreSQL checks per statement instead of with a foreign key
    (app.models.ledger.STATEMENT_CHECKED_REFERENCES)."""
    if type_ == "index" and reflected and compare_to is None and name.endswith("_trgm"):
        return False
    if type_ == "table" and reflected and compare_to is None and name == "ledger_commit_check":
        return False  # SQLite's commit-time balance check (app/models/sqlite.py), not a model
    if type_ == "foreign_key_constraint" and not reflected and compare_to is None:
        from app.models.ledger import STATEMENT_CHECKED_REFERENCES

        columns = [c.name for c in obj.columns]
        if len(columns) == 1 and (obj.parent.name, columns[0], obj.referred_table.name) in \
                STATEMENT_CHECKED_REFERENCES:
            return False
    return True


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True, render_as_batch=True,
                      compare_type=True, include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("compare_type", True)
    conf_args.setdefault("render_as_batch", True)
    conf_args.setdefault("include_object", include_object)
    with get_engine().connect() as connection:
        raw = connection.connection.dbapi_connection
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # batch mode rebuilds tables (copy, drop, rename): foreign keys off meanwhile
            raw.execute("PRAGMA foreign_keys = OFF")
        context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            raw.execute("PRAGMA foreign_keys = ON")
            if broken:
                raise RuntimeError(f"The migration left rows with broken references: {broken[:10]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
