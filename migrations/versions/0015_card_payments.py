"""card payments: pending card payments through the payment provider, and payment requests

card_payment keeps each basket paid by card (items, amount, provider payment id, card brand and
last four digits, receipt number once posted); payment_request keeps the requests that Income
Clerks and other council systems create.

Revision ID: 0015_card_payments
Revises: 0014_accounts
Create Date: 2026-12-06 12:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0015_card_payments'
down_revision = '0014_accounts'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'payment_request',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('items_json', sa.Text(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('caller_reference', sa.String(length=100), nullable=True),
        sa.Column('return_url', sa.String(length=1000), nullable=True),
        sa.Column('language', sa.String(length=5), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('paid_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('cancelled_by', sa.String(length=100), nullable=True),
        sa.Column('receipt_number', sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token'))
    with op.batch_alter_table('payment_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_request_status'), ['status'], unique=False)
    op.create_table(
        'card_payment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('language', sa.String(length=5), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('items_json', sa.Text(), nullable=False),
        sa.Column('description', sa.String(length=255), nullable=True),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('provider_payment_id', sa.String(length=64), nullable=True),
        sa.Column('provider_status', sa.String(length=20), nullable=True),
        sa.Column('next_url', sa.String(length=1000), nullable=True),
        sa.Column('return_path', sa.String(length=500), nullable=True),
        sa.Column('card_brand', sa.String(length=40), nullable=True),
        sa.Column('last_four', sa.String(length=4), nullable=True),
        sa.Column('payer_name', sa.String(length=200), nullable=True),
        sa.Column('payer_email', sa.String(length=254), nullable=True),
        sa.Column('payer_address', sa.Text(), nullable=True),
        sa.Column('payment_request_id', sa.Integer(), nullable=True),
        sa.Column('receipt_number', sa.String(length=20), nullable=True),
        sa.Column('posting_group_id', sa.Integer(), nullable=True),
        sa.Column('failure_reason', sa.String(length=500), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=True),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('paid_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('emailed_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['payment_request_id'], ['payment_request.id']),
        sa.ForeignKeyConstraint(['posting_group_id'], ['posting_group.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider_payment_id'),
        sa.UniqueConstraint('token'))
    with op.batch_alter_table('card_payment', schema=None) as batch_op:
        batch_op.create_index('ix_card_payment_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_card_payment_payment_request_id'), ['payment_request_id'],
                              unique=False)


def downgrade():
    op.drop_table('card_payment')
    op.drop_table('payment_request')
