"""card refunds netted off card settlements

card_settlement.refund_count and .refunds (the card refunds a provider paid out of a day's
settlement), refund.settlement_id (the settlement a card refund was netted off). Refunds paid
before this revision are not attached to settlements already recorded; the next refresh of
expected credits nets those not yet attached into the settlement of their day.

Revision ID: 0030_card_refunds_settled
Revises: 0029_income_day
Create Date: 2026-12-07 06:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0030_card_refunds_settled'
down_revision = '0029_income_day'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('card_settlement') as batch:
        batch.add_column(sa.Column('refund_count', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('refunds', sa.BigInteger(), nullable=False,
                                   server_default='0'))
    with op.batch_alter_table('refund') as batch:
        batch.add_column(sa.Column('settlement_id', sa.Integer(), nullable=True))
        batch.create_index('ix_refund_settlement_id', ['settlement_id'])


def downgrade():
    with op.batch_alter_table('refund') as batch:
        batch.drop_index('ix_refund_settlement_id')
        batch.drop_column('settlement_id')
    with op.batch_alter_table('card_settlement') as batch:
        batch.drop_column('refunds')
        batch.drop_column('refund_count')
