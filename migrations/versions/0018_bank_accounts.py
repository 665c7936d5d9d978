"""bank accounts and bank reconciliation

bank_account is reference data; today's single BANK account becomes the default bank account
(MAIN, ledger dimension NULL, so every Bank posting made so far is its). bank_statement keeps a
statement's balances and statement_line its settlement credits and debit lines; card_settlement
groups a provider's payments settled on a day; recon_match and recon_sign_off record matches and
sign-offs. expected_bank_credit gains its bank account, fee and live match; card_payment its
settled date, fee and settlement; import_batch its bank account and settlement counts;
processing_rule a line kind; bank_profile a balance column. The ledger gains CARD_FEES and
BANK_CHARGES.

Revision ID: 0018_bank_accounts
Revises: 0016_portal_funds
Create Date: 2026-12-06 15:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0018_bank_accounts'
down_revision = '0017_signin'
branch_labels = None
depends_on = None

_BEFORE = ('BANK', 'SUSPENSE', 'REFUNDS_PAYABLE', 'WRITE_OFFS', 'FUND', 'CASH_IN_HAND',
           'CASH_IN_TRANSIT', 'CARD_CLEARING', 'AGENT_CLEARING', 'CASH_VARIANCE', 'MIGRATION')


def _check(accounts) -> str:
    return "account IN (" + ",".join(f"'{a}'" for a in accounts) + ")"


def upgrade():
    op.create_table(
        'bank_account',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=20), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('sort_code', sa.String(length=8), nullable=False),
        sa.Column('account_number', sa.String(length=8), nullable=False),
        sa.Column('ledger_account_code', sa.String(length=30), nullable=False),
        sa.Column('ledger_reference', sa.String(length=30), nullable=True),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code'),
        sa.UniqueConstraint('ledger_reference'))
    op.execute(sa.text(
        "INSERT INTO bank_account (code, name, sort_code, account_number, ledger_account_code, "
        "ledger_reference, is_default, disabled) VALUES ('MAIN', 'Main income account', "
        "'00-00-00', '00000000', 'BANK', NULL, :t, :f)").bindparams(t=True, f=False))
    op.create_table(
        'bank_statement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bank_account_id', sa.Integer(), nullable=False),
        sa.Column('import_id', sa.Integer(), nullable=True),
        sa.Column('statement_date', sa.Date(), nullable=False),
        sa.Column('first_date', sa.Date(), nullable=True),
        sa.Column('opening_balance', sa.BigInteger(), nullable=True),
        sa.Column('closing_balance', sa.BigInteger(), nullable=True),
        sa.Column('reference', sa.String(length=100), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['bank_account_id'], ['bank_account.id']),
        sa.ForeignKeyConstraint(['import_id'], ['import_batch.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('import_id'))
    with op.batch_alter_table('bank_statement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bank_statement_bank_account_id'), ['bank_account_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_bank_statement_statement_date'), ['statement_date'],
                              unique=False)
    op.create_table(
        'statement_line',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('statement_id', sa.Integer(), nullable=False),
        sa.Column('bank_account_id', sa.Integer(), nullable=False),
        sa.Column('line_number', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('transaction_date', sa.Date(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('reference', sa.String(length=100), nullable=False),
        sa.Column('narrative', sa.String(length=500), nullable=True),
        sa.Column('match_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("amount <> 0", name='ck_statement_line_amount'),
        sa.CheckConstraint("kind IN ('settlement','debit')", name='ck_statement_line_kind'),
        sa.ForeignKeyConstraint(['bank_account_id'], ['bank_account.id']),
        sa.ForeignKeyConstraint(['statement_id'], ['bank_statement.id']),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('statement_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statement_line_statement_id'), ['statement_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_statement_line_match_id'), ['match_id'], unique=False)
        batch_op.create_index('ix_statement_line_open', ['bank_account_id', 'transaction_date'],
                              unique=False, postgresql_where=sa.text('match_id IS NULL'),
                              sqlite_where=sa.text('match_id IS NULL'))
    op.create_table(
        'card_settlement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('settled_date', sa.Date(), nullable=False),
        sa.Column('payments', sa.Integer(), nullable=False),
        sa.Column('gross', sa.BigInteger(), nullable=False),
        sa.Column('fees', sa.BigInteger(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('card_settlement', schema=None) as batch_op:
        batch_op.create_index('uq_card_settlement_day', ['provider', 'settled_date'], unique=True)
    op.create_table(
        'recon_match',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bank_account_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('lines_total', sa.BigInteger(), nullable=False),
        sa.Column('items_total', sa.BigInteger(), nullable=False),
        sa.Column('fee_amount', sa.BigInteger(), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.Column('posting_group_id', sa.Integer(), nullable=True),
        sa.Column('reversal_group_id', sa.Integer(), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('unmatched_by', sa.String(length=100), nullable=True),
        sa.Column('unmatched_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('unmatch_reason', sa.String(length=500), nullable=True),
        sa.Column('line_ids', sa.Text(), nullable=False),
        sa.Column('item_ids', sa.Text(), nullable=False),
        sa.CheckConstraint("status IN ('matched','unmatched')", name='ck_recon_match_status'),
        sa.ForeignKeyConstraint(['bank_account_id'], ['bank_account.id']),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('recon_match', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recon_match_bank_account_id'), ['bank_account_id'],
                              unique=False)
    op.create_table(
        'recon_sign_off',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bank_account_id', sa.Integer(), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=False),
        sa.Column('statement_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('statement_balance', sa.BigInteger(), nullable=False),
        sa.Column('ledger_balance', sa.BigInteger(), nullable=False),
        sa.Column('explained', sa.BigInteger(), nullable=False),
        sa.Column('unexplained', sa.BigInteger(), nullable=False),
        sa.Column('snapshot', sa.Text(), nullable=False),
        sa.Column('prepared_by', sa.String(length=100), nullable=False),
        sa.Column('prepared_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('decided_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('comment', sa.String(length=500), nullable=True),
        sa.CheckConstraint("status IN ('prepared','signed_off','rejected')",
                           name='ck_recon_sign_off_status'),
        sa.ForeignKeyConstraint(['bank_account_id'], ['bank_account.id']),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('recon_sign_off', schema=None) as batch_op:
        batch_op.create_index('ix_recon_sign_off_account_date', ['bank_account_id', 'as_of'],
                              unique=False)
    with op.batch_alter_table('expected_bank_credit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bank_account_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('fee', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('match_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_expected_bank_credit_match_id'), ['match_id'],
                              unique=False)
        batch_op.create_check_constraint('ck_expected_bank_credit_fee', 'fee >= 0')
    with op.batch_alter_table('card_payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settled_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('fee', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('settlement_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_card_payment_settlement_id'), ['settlement_id'],
                              unique=False)
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bank_account_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rows_settlement', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('settlement_amount', sa.BigInteger(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('processing_rule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('set_line_kind', sa.String(length=20), nullable=True))
    with op.batch_alter_table('bank_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('balance_column', sa.String(length=50), nullable=True))
    from app.models.ddl import replace_ledger_account_check

    replace_ledger_account_check(op, _check(_BEFORE + ('CARD_FEES', 'BANK_CHARGES')))


def downgrade():
    from app.models.ddl import replace_ledger_account_check

    replace_ledger_account_check(op, _check(_BEFORE))
    with op.batch_alter_table('bank_profile', schema=None) as batch_op:
        batch_op.drop_column('balance_column')
    with op.batch_alter_table('processing_rule', schema=None) as batch_op:
        batch_op.drop_column('set_line_kind')
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.drop_column('settlement_amount')
        batch_op.drop_column('rows_settlement')
        batch_op.drop_column('bank_account_id')
    with op.batch_alter_table('card_payment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_payment_settlement_id'))
        batch_op.drop_column('settlement_id')
        batch_op.drop_column('fee')
        batch_op.drop_column('settled_date')
    with op.batch_alter_table('expected_bank_credit', schema=None) as batch_op:
        batch_op.drop_constraint('ck_expected_bank_credit_fee', type_='check')
        batch_op.drop_index(batch_op.f('ix_expected_bank_credit_match_id'))
        batch_op.drop_column('match_id')
        batch_op.drop_column('fee')
        batch_op.drop_column('bank_account_id')
    op.drop_table('recon_sign_off')
    op.drop_table('recon_match')
    op.drop_table('card_settlement')
    op.drop_table('statement_line')
    op.drop_table('bank_statement')
    op.drop_table('bank_account')
