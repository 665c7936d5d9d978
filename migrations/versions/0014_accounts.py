"""account-holder sync: profiles, sync runs, staged lines, change lists; account-holder columns

account_holder gains stop_source (file or staff), phonetic_key (Soundex of the surname, indexed,
for the sounds-alike search), balance, balance_date, closed_at and last_sync_id.

Revision ID: 0014_accounts
Revises: 0013_cashup
Create Date: 2026-12-06 12:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0014_accounts'
down_revision = '0013_cashup'
branch_labels = None
depends_on = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


#: ledger_line.account before this migration (0013_cashup) and after it (with MIGRATION)
CASHUP_CHECK = ("account IN ('BANK','SUSPENSE','REFUNDS_PAYABLE','WRITE_OFFS','FUND',"
                "'CASH_IN_HAND','CASH_IN_TRANSIT','CARD_CLEARING','AGENT_CLEARING','CASH_VARIANCE')")
ACCOUNTS_CHECK = CASHUP_CHECK[:-1] + ",'MIGRATION')"


def upgrade():
    op.create_table(
        'account_holder_profile',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('fund_code', sa.String(length=10), nullable=False),
        sa.Column('file_format', sa.String(length=10), nullable=False),
        sa.Column('encoding', sa.String(length=20), nullable=False),
        sa.Column('delimiter', sa.String(length=5), nullable=False),
        sa.Column('has_header', sa.Boolean(), nullable=False),
        sa.Column('date_format', sa.String(length=30), nullable=False),
        sa.Column('columns', sa.Text(), nullable=False),
        sa.Column('ignored_columns', sa.Text(), nullable=True),
        sa.Column('complete', sa.Boolean(), nullable=False),
        sa.Column('skip_bad_lines', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['fund_code'], ['fund.code']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table(
        'account_sync',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('profile_id', sa.Integer(), nullable=False),
        sa.Column('fund_code', sa.String(length=10), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('stored_path', sa.String(length=500), nullable=True),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('bytes_done', sa.BigInteger(), nullable=False),
        sa.Column('lines_total', sa.Integer(), nullable=False),
        sa.Column('new_count', sa.Integer(), nullable=False),
        sa.Column('changed_count', sa.Integer(), nullable=False),
        sa.Column('unchanged_count', sa.Integer(), nullable=False),
        sa.Column('missing_count', sa.Integer(), nullable=False),
        sa.Column('bad_count', sa.Integer(), nullable=False),
        sa.Column('bad_lines', sa.Text(), nullable=True),
        sa.Column('sample', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('apply_after_check', sa.Boolean(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('heartbeat_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('applied_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('applied_by', sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(['profile_id'], ['account_holder_profile.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_table(
        'account_sync_row',
        sa.Column('id', _BIGID, nullable=False),
        sa.Column('sync_id', sa.Integer(), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('account_reference', sa.String(length=30), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('address', sa.Text(), nullable=True),
        sa.Column('postcode', sa.String(length=10), nullable=True),
        sa.Column('balance', sa.BigInteger(), nullable=True),
        sa.Column('balance_date', sa.Date(), nullable=True),
        sa.Column('stop_message', sa.String(length=200), nullable=True),
        sa.Column('phonetic_key', sa.String(length=4), nullable=True),
        sa.ForeignKeyConstraint(['sync_id'], ['account_sync.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_account_sync_row_sync_ref', 'account_sync_row',
                    ['sync_id', 'account_reference'], unique=False)
    op.create_table(
        'account_sync_change',
        sa.Column('id', _BIGID, nullable=False),
        sa.Column('sync_id', sa.Integer(), nullable=False),
        sa.Column('account_holder_id', sa.Integer(), nullable=False),
        sa.Column('account_reference', sa.String(length=30), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('before', sa.Text(), nullable=True),
        sa.Column('after', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['sync_id'], ['account_sync.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_account_sync_change_sync', 'account_sync_change', ['sync_id', 'id'],
                    unique=False)
    op.create_index(op.f('ix_account_sync_change_account_holder_id'), 'account_sync_change',
                    ['account_holder_id'], unique=False)
    op.create_table(
        'migration_record',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('source_key', sa.String(length=100), nullable=False),
        sa.Column('target_id', sa.Integer(), nullable=True),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'kind', 'source_key', name='uq_migration_record_key'))
    # the MIGRATION control account (history migrated from LocalGov IMS is posted against it)
    from app.models.ddl import replace_ledger_account_check

    replace_ledger_account_check(op, ACCOUNTS_CHECK)
    with op.batch_alter_table('account_holder', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stop_source', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('phonetic_key', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('balance', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('balance_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', app.models.base.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('last_sync_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_account_holder_phonetic_key'), ['phonetic_key'],
                              unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE account_sync_row SET UNLOGGED")
    # existing stops were set by staff; existing names get their sounds-alike key
    op.execute("UPDATE account_holder SET stop_source = 'staff' WHERE stop_message IS NOT NULL")
    from app.domain.phonetic import name_key

    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name FROM account_holder")).fetchall()
    for row_id, name in rows:
        conn.execute(sa.text("UPDATE account_holder SET phonetic_key = :k WHERE id = :i"),
                     {"k": name_key(name), "i": row_id})


def downgrade():
    with op.batch_alter_table('account_holder', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_holder_phonetic_key'))
        batch_op.drop_column('last_sync_id')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('balance_date')
        batch_op.drop_column('balance')
        batch_op.drop_column('phonetic_key')
        batch_op.drop_column('stop_source')
    from app.models.ddl import replace_ledger_account_check

    replace_ledger_account_check(op, CASHUP_CHECK)
    op.drop_table('migration_record')
    op.drop_index(op.f('ix_account_sync_change_account_holder_id'),
                  table_name='account_sync_change')
    op.drop_index('ix_account_sync_change_sync', table_name='account_sync_change')
    op.drop_table('account_sync_change')
    op.drop_index('ix_account_sync_row_sync_ref', table_name='account_sync_row')
    op.drop_table('account_sync_row')
    op.drop_table('account_sync')
    op.drop_table('account_holder_profile')
