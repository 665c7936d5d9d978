"""portal: funds offered online with their public texts (English and Welsh); portal baskets

fund gains offered_online, public_name(_cy), reference_label(_cy), reference_help(_cy),
public_stop_message(_cy) and ask_payer_name/email/address; portal_basket keeps the citizen
payment portal's baskets on the server (the browser holds only the token).

Revision ID: 0016_portal_funds
Revises: 0015_card_payments
Create Date: 2026-12-06 12:50:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0016_portal_funds'
down_revision = '0015_card_payments'
branch_labels = None
depends_on = None

_TEXTS = (('public_name', 100), ('public_name_cy', 100), ('reference_label', 100),
          ('reference_label_cy', 100), ('reference_help', 300), ('reference_help_cy', 300),
          ('public_stop_message', 300), ('public_stop_message_cy', 300))
_FLAGS = ('offered_online', 'ask_payer_name', 'ask_payer_email', 'ask_payer_address')


def upgrade():
    with op.batch_alter_table('fund', schema=None) as batch_op:
        for name in _FLAGS:
            batch_op.add_column(sa.Column(name, sa.Boolean(), server_default=sa.false(),
                                          nullable=False))
        for name, length in _TEXTS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    op.create_table(
        'portal_basket',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('items_json', sa.Text(), nullable=False),
        sa.Column('payer_json', sa.Text(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token'))
    with op.batch_alter_table('portal_basket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_basket_updated_at'), ['updated_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('portal_basket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_basket_updated_at'))
    op.drop_table('portal_basket')
    with op.batch_alter_table('fund', schema=None) as batch_op:
        for name, _ in reversed(_TEXTS):
            batch_op.drop_column(name)
        for name in reversed(_FLAGS):
            batch_op.drop_column(name)
