"""cache_version: the version of the rows web workers keep between requests

One row (app/models/cache.py). Triggers on the tables of users, roles and permissions, fund
groups and access, tills' rules, funds, payment methods, offices, VAT codes and reference
validators give it a new random value with every change (app/services/sharedcache.py): a worker
answers from memory only while the version it read is the committed one.

Revision ID: 0027_cache_version
Revises: 0026_audit_chain
Create Date: 2026-12-06 22:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0027_cache_version'
down_revision = '0026_audit_chain'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'cache_version',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('id = 1', name='ck_cache_version_one_row'),
        sa.PrimaryKeyConstraint('id'))
    from app.models.cache import cache_version_triggers

    cache_version_triggers(op.get_bind())  # its row, and the triggers on the watched tables


def downgrade():
    from app.models.cache import WATCHED_TABLES

    bind = op.get_bind()
    tables = set(sa.inspect(bind).get_table_names())
    for table in WATCHED_TABLES:
        if table not in tables:
            continue
        if bind.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_cache_bump ON {table}")
        else:
            for name in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_cache_bump_{name}")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ims_cache_bump()")
    op.drop_table('cache_version')
