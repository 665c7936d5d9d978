"""The version of the rows every web worker keeps in memory (app/services/sharedcache.py).

``cache_version`` holds one row. Triggers on the tables those rows come from — users, roles and
permissions, fund groups and fund access, tills' rules, funds, payment methods, offices, VAT codes
and reference validators — give it a new random value in the same transaction as any change (an
Administrator's edit, `ims sync-roles`, a migration, a seed, a raw SQL fix), so every worker reads
a changed version with its next request and drops what it held. The value is random rather than
counted so that a rolled-back change, or a schema dropped and created again, never brings back a
version a worker may still hold rows of.
"""

from __future__ import annotations

from flask_appbuilder import Model
from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.ddl import database_object


class CacheVersion(Model):
    __tablename__ = "cache_version"
    __table_args__ = (CheckConstraint("id = 1", name="ck_cache_version_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)


#: table -> the columns whose UPDATE changes a cached row (None: any change). ab_user's login
#: bookkeeping (last_login, login_count...) and user_signin's two-factor counters change at
#: every sign-in and are not cached: they do not move the version.
WATCHED_TABLES: dict[str, tuple[str, ...] | None] = {
    "ab_user": ("id", "username", "active"),
    "ab_role": None,
    "ab_user_role": None,
    "ab_group": None,
    "ab_user_group": None,
    "ab_group_role": None,
    "ab_permission": None,
    "ab_view_menu": None,
    "ab_permission_view": None,
    "ab_permission_view_role": None,
    "user_fund_access": None,
    "user_fund_group": None,
    "fund_group_fund": None,
    "user_signin": ("user_id", "default_office_code"),
    "user_payment_method": None,
    "fund": None,
    "payment_method": None,
    "office": None,
    "vat_code": None,
    "reference_validator": None,
}

#: A new version: random (PostgreSQL's random() has 52 bits, SQLite's 64), never counted up.
_PG_NEW = "floor(random() * 4503599627370496)::bigint"
_SQLITE_NEW = "random()"


@database_object
def cache_version_triggers(conn) -> None:
    """The row of cache_version, and on every watched table that exists a trigger giving it a
    new value after each INSERT, UPDATE (of the columns that matter), DELETE and (PostgreSQL)
    TRUNCATE. Earlier migrations run the installers too: nothing to do before the table exists."""
    from sqlalchemy import inspect

    insp = inspect(conn)
    if not insp.has_table("cache_version"):
        return
    postgres = conn.dialect.name == "postgresql"
    new = _PG_NEW if postgres else _SQLITE_NEW
    if conn.exec_driver_sql("SELECT count(*) FROM cache_version").scalar() == 0:
        conn.exec_driver_sql(f"INSERT INTO cache_version (id, version) VALUES (1, {new})")
    else:  # a schema installed again (tests, migrations): whatever workers held is gone
        conn.exec_driver_sql(f"UPDATE cache_version SET version = {new}")
    if postgres:
        conn.exec_driver_sql(f"""
            CREATE OR REPLACE FUNCTION ims_cache_bump() RETURNS trigger AS $$
            BEGIN UPDATE cache_version SET version = {new}; RETURN NULL; END;
            $$ LANGUAGE plpgsql""")
    for table, columns in WATCHED_TABLES.items():
        if not insp.has_table(table):
            continue
        update = "UPDATE" if columns is None else "UPDATE OF " + ", ".join(columns)
        if postgres:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_cache_bump ON {table}")
            conn.exec_driver_sql(f"""
                CREATE TRIGGER {table}_cache_bump
                AFTER INSERT OR {update} OR DELETE OR TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION ims_cache_bump()""")
        else:
            for name, op in (("insert", "INSERT"), ("update", update), ("delete", "DELETE")):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_cache_bump_{name}")
                conn.exec_driver_sql(f"""
                    CREATE TRIGGER {table}_cache_bump_{name} AFTER {op} ON {table}
                    BEGIN UPDATE cache_version SET version = {new}; END""")
