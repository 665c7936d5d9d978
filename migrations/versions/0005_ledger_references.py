"""ledger: references checked per statement on PostgreSQL; fewer index entries per posting

On PostgreSQL, income_transaction.posting_group_id, ledger_line.group_id and
ledger_line.transaction_id are checked by statement-level triggers (set-based, after each
statement) instead of foreign keys, which checked and locked the referenced row once per row;
the ledger tables also refuse TRUNCATE. posting_group.kind loses its index (a handful of values:
no query is narrowed by it); so do income_transaction.import_id and receipt_number (an import's
transactions are found through its posting groups, a receipt through its group's number).
ledger_line's (account, fund, reference) index leaves out BANK lines, half the table, which no
query narrows by; suspense_item.assigned_to's index holds only the items assigned to someone.

Revision ID: 0005_ledger_references
Revises: 0004_ledger_checks
Create Date: 2026-11-26 05:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005_ledger_references'
down_revision = '0004_ledger_checks'
branch_labels = None
depends_on = None


_NOT_BANK = sa.text("account <> 'BANK'")
_ASSIGNED = sa.text("assigned_to IS NOT NULL")


def upgrade():
    with op.batch_alter_table('posting_group', schema=None) as batch_op:
        batch_op.drop_index('ix_posting_group_kind')
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_income_transaction_import_id')
        batch_op.drop_index('ix_income_transaction_receipt_number')
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_account_fund')
        batch_op.create_index('ix_ledger_line_account_fund',
                              ['account', 'fund_code', 'account_reference'], unique=False,
                              postgresql_where=_NOT_BANK, sqlite_where=_NOT_BANK)
    with op.batch_alter_table('suspense_item', schema=None) as batch_op:
        batch_op.drop_index('ix_suspense_item_assigned_to')
        batch_op.create_index('ix_suspense_item_assigned_to', ['assigned_to'], unique=False,
                              postgresql_where=_ASSIGNED, sqlite_where=_ASSIGNED)
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
    with op.batch_alter_table('suspense_item', schema=None) as batch_op:
        batch_op.drop_index('ix_suspense_item_assigned_to')
        batch_op.create_index('ix_suspense_item_assigned_to', ['assigned_to'], unique=False)
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_account_fund')
        batch_op.create_index('ix_ledger_line_account_fund',
                              ['account', 'fund_code', 'account_reference'], unique=False)
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.create_index('ix_income_transaction_import_id', ['import_id'], unique=False)
        batch_op.create_index('ix_income_transaction_receipt_number', ['receipt_number'],
                              unique=False)
    with op.batch_alter_table('posting_group', schema=None) as batch_op:
        batch_op.create_index('ix_posting_group_kind', ['kind'], unique=False)
