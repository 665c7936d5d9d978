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


@database_object
def audit_append_only(conn) -> None:
    """Refuse UPDATE and DELETE on audit_event: the trail is append-only."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION ims_audit_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; $$ LANGUAGE plpgsql;
        """)
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        conn.exec_driver_sql("""
            CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION ims_audit_append_only()
        """)
    else:
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(f"""
                CREATE TRIGGER IF NOT EXISTS audit_event_no_{op.lower()} BEFORE {op} ON audit_event
                BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END
            """)
