"""ledger: references checked per statement on PostgreSQL; no index on posting_group.kind

On PostgreSQL, income_transaction.posting_group_id, ledger_line.group_id and
ledger_line.transaction_id are checked by statement-level triggers (set-based, after each
statement) instead of foreign keys, which checked and locked the referenced row once per row;
the ledger tables also refuse TRUNCATE. posting_group.kind loses its index (a handful of values:
no query is narrowed by it).

Revision ID: 0005_ledger_references
Revises: 0004_ledger_checks
Create Date: 2026-11-26 05:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005_ledger_references'
down_revision = '0004_ledger_checks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('posting_group', schema=None) as batch_op:
        batch_op.drop_index('ix_posting_group_kind')
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(op.get_bind())


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from app.models.ledger import STATEMENT_CHECKED_REFERENCES

        for table, column, target in STATEMENT_CHECKED_REFERENCES:
            op.create_foreign_key(f"{table}_{column}_fkey", table, target, [column], ["id"])
        for table in ("posting_group", "income_transaction", "ledger_line"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS ledger_line_references ON ledger_line")
        op.execute("DROP TRIGGER IF EXISTS income_transaction_references ON income_transaction")
        op.execute("DROP FUNCTION IF EXISTS ims_transaction_groups_exist()")
    with op.batch_alter_table('posting_group', schema=None) as batch_op:
        batch_op.create_index('ix_posting_group_kind', ['kind'], unique=False)
