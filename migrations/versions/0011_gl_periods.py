"""gl_periods: accounting periods and their close/reopen requests, GL export layouts, batches
and batch membership; fund.cost_centre, vat_code.gl_code, posting_group.accounting_date

Revision ID: 0011_gl_periods
Revises: 0010_ops
Create Date: 2026-12-06 12:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0011_gl_periods'
down_revision = '0010_ops'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'accounting_period',
        sa.Column('start_date', sa.Date(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('closed_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('closed_by', sa.String(length=100), nullable=True),
        sa.Column('close_requested_by', sa.String(length=100), nullable=True),
        sa.Column('reopened_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('reopened_by', sa.String(length=100), nullable=True),
        sa.CheckConstraint("status IN ('open','closed')", name='ck_accounting_period_status'),
        sa.PrimaryKeyConstraint('start_date'))
    op.create_table(
        'period_request',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('action', sa.String(length=10), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('requested_by', sa.String(length=100), nullable=False),
        sa.Column('requested_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('decided_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('decision_comment', sa.Text(), nullable=True),
        sa.Column('workflow_instance_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("action IN ('close','reopen')", name='ck_period_request_action'),
        sa.CheckConstraint("status IN ('pending','approved','rejected')",
                           name='ck_period_request_status'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_period_request_period_start', 'period_request', ['period_start'])
    op.create_index('uq_period_request_pending', 'period_request', ['period_start'], unique=True,
                    postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    op.create_table(
        'gl_layout',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name', 'version', name='uq_gl_layout_name_version'))
    op.create_table(
        'gl_export_batch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=20), nullable=False),
        sa.Column('cut_off', sa.Date(), nullable=False),
        sa.Column('layout_id', sa.Integer(), nullable=False),
        sa.Column('summarised', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('line_count', sa.Integer(), nullable=False),
        sa.Column('row_count', sa.Integer(), nullable=False),
        sa.Column('control_total', sa.BigInteger(), nullable=False),
        sa.Column('filename', sa.String(length=100), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('trigger', sa.String(length=10), nullable=False),
        sa.Column('voided_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('voided_by', sa.String(length=100), nullable=True),
        sa.Column('void_reason', sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('complete','void')", name='ck_gl_export_batch_status'),
        sa.ForeignKeyConstraint(['layout_id'], ['gl_layout.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('number'))
    op.create_table(
        'gl_export_line',
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('ledger_line_id', sa.Integer(), nullable=False),
        sa.Column('voided', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['batch_id'], ['gl_export_batch.id']),
        sa.PrimaryKeyConstraint('batch_id', 'ledger_line_id'))
    op.create_index('uq_gl_export_line_live', 'gl_export_line', ['ledger_line_id'], unique=True,
                    postgresql_where=sa.text("voided = false"),
                    sqlite_where=sa.text("voided = false"))
    # plain ADD COLUMN (no batch copy): SQLite would otherwise rebuild posting_group and lose
    # its append-only triggers
    op.add_column('posting_group', sa.Column('accounting_date', sa.Date(), nullable=True))
    op.add_column('fund', sa.Column('cost_centre', sa.String(length=30), nullable=True))
    op.add_column('vat_code', sa.Column('gl_code', sa.String(length=30), nullable=True))


def downgrade():
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE vat_code DROP COLUMN gl_code')
        op.execute('ALTER TABLE fund DROP COLUMN cost_centre')
        op.execute('ALTER TABLE posting_group DROP COLUMN accounting_date')
    else:
        op.drop_column('vat_code', 'gl_code')
        op.drop_column('fund', 'cost_centre')
        op.drop_column('posting_group', 'accounting_date')
    op.drop_index('uq_gl_export_line_live', table_name='gl_export_line')
    op.drop_table('gl_export_line')
    op.drop_table('gl_export_batch')
    op.drop_table('gl_layout')
    op.drop_index('uq_period_request_pending', table_name='period_request')
    op.drop_index('ix_period_request_period_start', table_name='period_request')
    op.drop_table('period_request')
    op.drop_table('accounting_period')
