"""reports: posting groups by kind and time posted

The finance reports read the corrections posted in a period (reversals, refunds, journals,
transfers, allocations, write-offs) by kind: an index on (kind, created_at) reads those ranges
instead of every posting group of the period.

Revision ID: 0012_reports
Revises: 0011_gl_periods
Create Date: 2026-12-06 12:45:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012_reports'
down_revision = '0011_gl_periods'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_posting_group_kind_created_at', 'posting_group', ['kind', 'created_at'],
                    unique=False)


def downgrade():
    op.drop_index('ix_posting_group_kind_created_at', table_name='posting_group')
