"""Database objects beyond tables (triggers, extensions, indexes) for SQLite and PostgreSQL.

Migrations call these functions; tests call install_database_objects() after create_all().
"""

from __future__ import annotations

from collections.abc import Callable

_INSTALLERS: list[Callable] = []


def database_object(fn: Callable) -> Callable:
    """Register an installer fn(connection) run after the tables exist (idempotent DDL only)."""
    _INSTALLERS.append(fn)
    return fn


def run_installers(conn) -> None:
    """Create every registered database object on an open connection (used by migrations)."""
    for fn in _INSTALLERS:
        fn(conn)


def install_database_objects(engine) -> None:
    with engine.begin() as conn:
        run_installers(conn)


#: the audit trail's tables: append-only, never truncated
AUDIT_TABLES = ("audit_event", "audit_checkpoint", "audit_chain")


@database_object
def audit_append_only(conn) -> None:
    """Refuse UPDATE, DELETE and (PostgreSQL) TRUNCATE on the audit trail and its checkpoints.

    SQLite has no TRUNCATE: its ``DELETE FROM`` without a condition fires the DELETE trigger.
    audit_checkpoint and audit_chain are guarded when they exist (they arrived with migrations
    0007 and 0026; earlier migrations run this installer too).
    """
    from sqlalchemy import inspect

    tables = [t for t in AUDIT_TABLES if t == "audit_event" or inspect(conn).has_table(t)]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_audit_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql;
        """)
        for table in tables:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION ims_audit_append_only()
            """)
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION ims_audit_append_only()
            """)
    else:
        for table in tables:
            for op in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(f"""
                    CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END
                """)


@database_object
def account_sync_staging_unlogged(conn) -> None:
    """PostgreSQL: the account-holder sync's staged lines are transient (a crash marks the sync
    failed and the file is uploaded again), so their table skips the write-ahead log."""
    from sqlalchemy import inspect

    if conn.dialect.name == "postgresql" and inspect(conn).has_table("account_sync_row"):
        conn.exec_driver_sql("ALTER TABLE account_sync_row SET UNLOGGED")


def replace_ledger_account_check(op, condition: str) -> None:
    """Migrations: ledger_line's CHECK on account becomes ``condition`` (PostgreSQL alters the
    constraint; SQLite rebuilds the table from the model's, then its indexes and triggers)."""
    import sqlalchemy as sa

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_constraint('ck_ledger_line_account', 'ledger_line', type_='check')
        op.create_check_constraint('ck_ledger_line_account', 'ledger_line', condition)
        return
    # SQLite keeps a CHECK in the table's definition: rebuild ledger_line from the model's table
    # (its columns, indexes and partial indexes) with the new CHECK, then put its triggers back
    from app.models.ledger import LedgerLine, install_ledger_triggers

    table = LedgerLine.__table__.to_metadata(sa.MetaData())
    for constraint in list(table.constraints):
        if getattr(constraint, "name", None) == 'ck_ledger_line_account':
            table.constraints.discard(constraint)
    table.append_constraint(sa.CheckConstraint(condition, name='ck_ledger_line_account'))
    with op.batch_alter_table('ledger_line', copy_from=table, recreate='always'):
        pass
    for index in LedgerLine.__table__.indexes:  # column-level indexes are not copied
        index.create(bind, checkfirst=True)
    install_ledger_triggers(bind)
