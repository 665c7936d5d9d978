"""signin: second factor, single sign-on link, recovery codes, identity-provider groups, sign-in
history and per-user till settings (issue 20)

Revision ID: 0017_signin
Revises: 0016_portal_funds
Create Date: 2026-12-06 15:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0017_signin'
down_revision = '0016_portal_funds'
branch_labels = None
depends_on = None

_DT = app.models.base.UTCDateTime(timezone=True)


def upgrade():
    op.create_table(
        'user_signin',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('totp_secret', sa.String(length=64), nullable=True),
        sa.Column('totp_enabled_at', _DT, nullable=True),
        sa.Column('totp_last_step', sa.Integer(), nullable=True),
        sa.Column('totp_failures', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('totp_locked_until', _DT, nullable=True),
        sa.Column('sso_subject', sa.String(length=300), nullable=True),
        sa.Column('service_account', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('default_office_code', sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['default_office_code'], ['office.code'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('user_id'),
        sa.UniqueConstraint('sso_subject'))
    op.create_table(
        'user_recovery_code',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('used_at', _DT, nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code_hash'))
    op.create_index('ix_user_recovery_code_user_id', 'user_recovery_code', ['user_id'])
    op.create_table(
        'user_idp_group',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('claimed_at', _DT, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'name', name='uq_user_idp_group'))
    op.create_index('ix_user_idp_group_user_id', 'user_idp_group', ['user_id'])
    op.create_table(
        'signin_event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('username', sa.String(length=200), nullable=True),
        sa.Column('at', _DT, nullable=False),
        sa.Column('method', sa.String(length=20), nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_signin_event_user_id', 'signin_event', ['user_id'])
    op.create_index('ix_signin_event_at', 'signin_event', ['at'])
    op.create_table(
        'user_payment_method',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('payment_method_code', sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['payment_method_code'], ['payment_method.code'],
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'payment_method_code', name='uq_user_payment_method'))
    op.create_index('ix_user_payment_method_user_id', 'user_payment_method', ['user_id'])


def downgrade():
    op.drop_index('ix_user_payment_method_user_id', table_name='user_payment_method')
    op.drop_table('user_payment_method')
    op.drop_index('ix_signin_event_at', table_name='signin_event')
    op.drop_index('ix_signin_event_user_id', table_name='signin_event')
    op.drop_table('signin_event')
    op.drop_index('ix_user_idp_group_user_id', table_name='user_idp_group')
    op.drop_table('user_idp_group')
    op.drop_index('ix_user_recovery_code_user_id', table_name='user_recovery_code')
    op.drop_table('user_recovery_code')
    op.drop_table('user_signin')
