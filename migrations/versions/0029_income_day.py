"""income_day: past days' income summed by the worker for the dashboard

Four tables (app/models/income_day.py): the sums per day, fund and method; receipts per day and
set of funds; the days summed; and the days changed since (filled by triggers on
income_transaction and posting_group). Nothing to backfill: the worker's next tick sums the last
40 days, and until then the dashboard sums them from the transactions as before.

Revision ID: 0029_income_day
Revises: 0028_narrative_date
Create Date: 2026-12-07 05:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0029_income_day'
down_revision = '0028_narrative_date'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'income_day',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('fund_code', sa.String(length=10), nullable=False),
        sa.Column('payment_method_code', sa.String(length=10), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('payments', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'fund_code', 'payment_method_code'))
    op.create_table(
        'income_day_receipts',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('funds', sa.Text(), nullable=False),
        sa.Column('receipts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'funds'))
    op.create_table(
        'income_day_summarised',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('summarised_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('day'))
    op.create_table(
        'income_day_change',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_income_day_change_day', 'income_day_change', ['day'])
    from app.models.income_day import income_day_triggers

    income_day_triggers(op.get_bind())


def downgrade():
    bind = op.get_bind()
    for table in ("income_transaction", "posting_group"):
        if bind.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_income_day ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_income_day")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ims_income_day_changed()")
    op.drop_index('ix_income_day_change_day', table_name='income_day_change')
    for table in ("income_day_change", "income_day_summarised", "income_day_receipts",
                  "income_day"):
        op.drop_table(table)
