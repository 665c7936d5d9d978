"""dashboard index: the transaction date index carries the dashboard's columns on PostgreSQL

ix_income_transaction_date_id (transaction_date, id) gains INCLUDE (fund_code,
payment_method_code, amount, posting_group_id, source_transaction_id, receipt_number) on
PostgreSQL, so the income dashboard's two queries are index-only scans of the last 30 days:
their cost follows the window's volume, not the table's size or where the window's rows lie on
disk. SQLite has no INCLUDE; its index is unchanged.

Revision ID: 0021_dashboard_index
Revises: 0020_fund_groups
Create Date: 2026-12-06 19:10:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021_dashboard_index'
down_revision = '0020_fund_groups'
branch_labels = None
depends_on = None

INCLUDE = ['fund_code', 'payment_method_code', 'amount', 'posting_group_id',
           'source_transaction_id', 'receipt_number']


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_income_transaction_date_id', table_name='income_transaction')
    op.create_index('ix_income_transaction_date_id', 'income_transaction',
                    ['transaction_date', 'id'], postgresql_include=INCLUDE)


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_income_transaction_date_id', table_name='income_transaction')
    op.create_index('ix_income_transaction_date_id', 'income_transaction',
                    ['transaction_date', 'id'])
