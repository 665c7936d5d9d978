"""ledger: balance checked per statement; partial indexes for mostly-NULL columns

The deferred constraint trigger that summed a posting group at commit, once per ledger line,
becomes a statement-level trigger that sums each group the statement wrote to, once per group.
posting_group.reverses_id (unique), ledger_line.transaction_id and
income_transaction.source_transaction_id are NULL on most rows: their indexes now hold only the
rows with a value. import_batch records the file's first and last transaction dates, so an
import looks up possible duplicates only where an earlier import covers its dates.

Revision ID: 0004_ledger_checks
Revises: 0003_import_lookups
Create Date: 2026-11-26 00:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004_ledger_checks'
down_revision = '0003_import_lookups'
branch_labels = None
depends_on = None


def _not_null(column):
    cond = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": cond, "sqlite_where": cond}


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_constraint('posting_group_reverses_id_key', 'posting_group', type_='unique')
    else:  # SQLite: the constraint has no name; batch mode names it by this convention
        with op.batch_alter_table('posting_group', naming_convention={
                "uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch_op:
            batch_op.drop_constraint('uq_posting_group_reverses_id', type_='unique')
    op.create_index('uq_posting_group_reverses_id', 'posting_group', ['reverses_id'], unique=True,
                    **_not_null('reverses_id'))
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_transaction_id')
        batch_op.create_index('ix_ledger_line_transaction_id', ['transaction_id'], unique=False,
                              **_not_null('transaction_id'))
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_income_transaction_source_transaction_id')
        batch_op.create_index('ix_income_transaction_source_transaction_id',
                              ['source_transaction_id'], unique=False,
                              **_not_null('source_transaction_id'))
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('last_date', sa.Date(), nullable=True))
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(bind)


def downgrade():
    # the statement-level balance check stays: it is stricter than the trigger it replaced
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.drop_column('last_date')
        batch_op.drop_column('first_date')
    with op.batch_alter_table('income_transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_income_transaction_source_transaction_id')
        batch_op.create_index('ix_income_transaction_source_transaction_id',
                              ['source_transaction_id'], unique=False)
    with op.batch_alter_table('ledger_line', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_line_transaction_id')
        batch_op.create_index('ix_ledger_line_transaction_id', ['transaction_id'], unique=False)
    with op.batch_alter_table('posting_group', schema=None) as batch_op:
        batch_op.drop_index('uq_posting_group_reverses_id')
        batch_op.create_unique_constraint('posting_group_reverses_id_key', ['reverses_id'])
