"""transaction_narrative.transaction_date: the transaction's date beside its narrative

A search by narrative shows the newest matches first. With the date beside the narrative, the
page's rows are chosen from transaction_narrative alone, and only those rows are read from
income_transaction; before, a common surname's thousands of matches were each looked up in
income_transaction to be sorted by date (issue 22: 6,000 look-ups, about half the search's
time at a million transactions). Like fund_code, the column copies a value of the transaction,
which never changes (income_transaction is append-only), written in the same statement or
transaction as the narrative.

The backfill updates the table its guard keeps unchanged: the guard is lifted for the
migration's own UPDATE only (PostgreSQL: disabled and enabled again in this transaction;
SQLite: dropped, and put back by install_ledger_triggers after the table is rebuilt with the
column NOT NULL).

Revision ID: 0028_narrative_date
Revises: 0027_cache_version
Create Date: 2026-12-07 01:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0028_narrative_date'
down_revision = '0027_cache_version'
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.add_column('transaction_narrative',
                      sa.Column('transaction_date', sa.Date(), nullable=True))
        op.execute("ALTER TABLE transaction_narrative "
                   "DISABLE TRIGGER transaction_narrative_no_update")
        op.execute("UPDATE transaction_narrative n SET transaction_date = t.transaction_date "
                   "FROM income_transaction t WHERE t.id = n.transaction_id")
        op.execute("ALTER TABLE transaction_narrative "
                   "ENABLE TRIGGER transaction_narrative_no_update")
        op.alter_column('transaction_narrative', 'transaction_date', nullable=False)
        return
    op.execute("DROP TRIGGER IF EXISTS transaction_narrative_no_update")
    op.add_column('transaction_narrative',
                  sa.Column('transaction_date', sa.Date(), nullable=True))
    op.execute("UPDATE transaction_narrative SET transaction_date = (SELECT t.transaction_date "
               "FROM income_transaction t WHERE t.id = transaction_narrative.transaction_id)")
    with op.batch_alter_table('transaction_narrative', recreate='always') as batch:
        batch.alter_column('transaction_date', existing_type=sa.Date(), nullable=False)
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(bind)  # the guard again (CREATE ... IF NOT EXISTS: the rest stays)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_column('transaction_narrative', 'transaction_date')
        return
    op.execute("DROP TRIGGER IF EXISTS transaction_narrative_no_update")
    with op.batch_alter_table('transaction_narrative', recreate='always') as batch:
        batch.drop_column('transaction_date')
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(bind)
