"""duplicate look-up indexes for imports: reference, date and amount together

The single-column reference indexes on income_transaction and suspense_item become composite
indexes led by the same column (so reference searches keep their index), which let an import
look up possible duplicates by date, reference and amount with one index probe each.

Revision ID: 0003_import_lookups
Revises: 0002_money
Create Date: 2026-11-25 21:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003_import_lookups'
down_revision = '0002_money'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_income_transaction_account_reference')
        batch_op.create_index('ix_income_transaction_reference_date_amount',
                              ['account_reference', 'transaction_date', 'amount'], unique=False)
    with op.batch_alter_table('suspense_item', schema=None) as batch_op:
        batch_op.drop_index('ix_suspense_item_reference_text')
        batch_op.create_index('ix_suspense_item_reference_date_amount',
                              ['reference_text', 'transaction_date', 'amount'], unique=False)


def downgrade():
    with op.batch_alter_table('suspense_item', schema=None) as batch_op:
        batch_op.drop_index('ix_suspense_item_reference_date_amount')
        batch_op.create_index('ix_suspense_item_reference_text', ['reference_text'], unique=False)
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_income_transaction_reference_date_amount')
        batch_op.create_index('ix_income_transaction_account_reference', ['account_reference'],
                              unique=False)
