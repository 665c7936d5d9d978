"""operations: workers' heartbeats; the request that received an import

worker_heartbeat has one row per worker process, updated after each tick (/readyz and /metrics
read it). import_batch.request_id keeps the id of the request that received the file, so the
log lines of its processing, wherever it runs, carry that id.

Revision ID: 0010_ops
Revises: 0009_config_proposals
Create Date: 2026-12-06 11:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0010_ops'
down_revision = '0009_config_proposals'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'worker_heartbeat',
        sa.Column('worker', sa.String(length=200), nullable=False),
        sa.Column('started_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_tick_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ticks', sa.Integer(), nullable=False),
        sa.Column('last_summary', sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint('worker'))
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.drop_column('request_id')
    op.drop_table('worker_heartbeat')
