"""personal_data: personal values kept apart from the append-only records; legal holds

personal_data holds the personal values the audit trail records as tokens (pd:<id>:<salted
digest>), so that retention can erase them and the chain still verifies; legal_hold keeps records
from anonymisation. income_transaction's append-only guard now lets retention erase a narrative
(value -> NULL), nothing else. The retention periods are settings (retention_years_<kind>,
six years by default, created by `ims seed`).

Events written before this migration keep whatever personal values they recorded: they are
hashed into the chain, and rewriting them would break it (the subject-access report still finds
them; retention cannot erase them).

Revision ID: 0019_personal_data
Revises: 0016_portal_funds
Create Date: 2026-12-06 15:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0019_personal_data'
down_revision = '0018_bank_accounts'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'personal_data',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('record_type', sa.String(length=50), nullable=False),
        sa.Column('record_id', sa.String(length=50), nullable=True),
        sa.Column('subject_key', sa.String(length=60), nullable=True),
        sa.Column('value', sa.Text(), nullable=True),
        sa.Column('salt', sa.String(length=32), nullable=True),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('erased_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('personal_data', schema=None) as batch_op:
        batch_op.create_index('ix_personal_data_record', ['record_type', 'record_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_personal_data_subject_key'), ['subject_key'],
                              unique=False)
    op.create_table(
        'legal_hold',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('match', sa.String(length=10), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('released_by', sa.String(length=100), nullable=True),
        sa.Column('released_at', app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(op.get_bind())


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS income_transaction_append_only ON income_transaction")
        op.execute("CREATE TRIGGER income_transaction_append_only BEFORE UPDATE OR DELETE ON "
                   "income_transaction FOR EACH ROW EXECUTE FUNCTION ims_ledger_append_only()")
        op.execute("DROP FUNCTION IF EXISTS ims_income_transaction_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS income_transaction_no_update")
        op.execute("CREATE TRIGGER income_transaction_no_update BEFORE UPDATE ON "
                   "income_transaction BEGIN SELECT RAISE(ABORT, "
                   "'income_transaction is append-only'); END")
    op.drop_table('legal_hold')
    with op.batch_alter_table('personal_data', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_personal_data_subject_key'))
        batch_op.drop_index('ix_personal_data_record')
    op.drop_table('personal_data')
