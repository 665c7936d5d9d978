"""fund groups: groups of funds, the users who hold them, and "all funds" per user

fund_group (name, description) with its funds (fund_group_fund); user_fund_group gives users
groups; user_fund_access holds each user's "all funds" flag. Every user who exists at upgrade
gets all funds (nobody loses sight of anything); users created afterwards get no fund until an
Administrator gives them a group or all funds.

Revision ID: 0020_fund_groups
Revises: 0016_portal_funds
Create Date: 2026-12-06 15:50:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0020_fund_groups'
down_revision = '0019_personal_data'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'fund_group',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table(
        'fund_group_fund',
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('fund_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['fund_id'], ['fund.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['group_id'], ['fund_group.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'fund_id'))
    with op.batch_alter_table('fund_group_fund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fund_group_fund_fund_id'), ['fund_id'], unique=False)
    op.create_table(
        'user_fund_group',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['fund_group.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'group_id'))
    with op.batch_alter_table('user_fund_group', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_fund_group_group_id'), ['group_id'],
                              unique=False)
    op.create_table(
        'user_fund_access',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('all_funds', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('updated_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id'))
    # every user of the system before fund groups keeps seeing every fund
    op.execute("INSERT INTO user_fund_access (user_id, all_funds, updated_at, updated_by) "
               "SELECT id, " + ("TRUE" if op.get_bind().dialect.name == "postgresql" else "1")
               + ", CURRENT_TIMESTAMP, 'migration 0020_fund_groups' FROM ab_user")


def downgrade():
    op.drop_table('user_fund_access')
    with op.batch_alter_table('user_fund_group', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_fund_group_group_id'))
    op.drop_table('user_fund_group')
    with op.batch_alter_table('fund_group_fund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fund_group_fund_fund_id'))
    op.drop_table('fund_group_fund')
    op.drop_table('fund_group')
