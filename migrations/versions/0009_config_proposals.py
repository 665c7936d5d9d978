"""workflows: configuration proposals (a second person approves workflow and limit changes)

A Workflow Administrator's new workflow version, roll back or approval-limit change is stored as
a config_proposal row and takes effect when a Head of Finance approves it through their task.

Revision ID: 0009_config_proposals
Revises: 0008_sessions_idempotency
Create Date: 2026-11-27 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0009_config_proposals'
down_revision = '0008_sessions_idempotency'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'config_proposal',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('target', sa.String(length=100), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('proposed_by', sa.String(length=100), nullable=False),
        sa.Column('proposed_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('definition_id', sa.Integer(), nullable=True),
        sa.Column('base_version', sa.Integer(), nullable=True),
        sa.Column('payload', sa.Text(), nullable=True),
        sa.Column('workflow_instance_id', sa.Integer(), nullable=True),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('decided_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('decision_comment', sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('workflow_deploy', 'workflow_activate', 'approval_limits')",
                           name='ck_config_proposal_kind'),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')",
                           name='ck_config_proposal_status'),
        sa.ForeignKeyConstraint(['definition_id'], ['workflow_definition.id'], ),
        sa.ForeignKeyConstraint(['workflow_instance_id'], ['workflow_instance.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('config_proposal', schema=None) as batch_op:
        batch_op.create_index('ix_config_proposal_status', ['status', 'kind'], unique=False)


def downgrade():
    with op.batch_alter_table('config_proposal', schema=None) as batch_op:
        batch_op.drop_index('ix_config_proposal_status')
    op.drop_table('config_proposal')
