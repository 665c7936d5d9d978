"""transaction_narrative: payment narratives out of the append-only income rows

A narrative is free text that may name a person (issue 19): it moves from
income_transaction.narrative into transaction_narrative (transaction_id, narrative, fund_code; a
row only for a transaction with a narrative), an erasable table, so retention erases a narrative
by deleting its row and income_transaction becomes strictly append-only again (the guard's one
exception, setting the narrative to NULL, goes). Each row keeps its transaction's fund_code (not
personal data; written with the narrative, never changed), so that on PostgreSQL one GIN index
(fund_code, narrative gin_trgm_ops; btree_gin) serves "contains" searches both for all funds and
for a user of some fund groups, in place of the trigram index the column had. The narratives'
reference to the transaction is checked per statement like the ledger's own
(app/models/ledger.py install_ledger_triggers). Empty narratives are not copied (they hold
nothing).

The downgrade puts the column back with the narratives still kept, and the guard that lets
retention set it to NULL.

Revision ID: 0025_narratives
Revises: 0024_totp_secrets_sealed
Create Date: 2026-12-06 19:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0025_narratives'
down_revision = '0024_totp_secrets_sealed'
branch_labels = None
depends_on = None

def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        'transaction_narrative',
        sa.Column('transaction_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('narrative', sa.String(length=500), nullable=False),
        sa.Column('fund_code', sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(['transaction_id'], ['income_transaction.id']),
        sa.PrimaryKeyConstraint('transaction_id'))
    op.execute("INSERT INTO transaction_narrative (transaction_id, narrative, fund_code) "
               "SELECT id, narrative, fund_code FROM income_transaction "
               "WHERE narrative IS NOT NULL AND narrative <> '' ORDER BY id")
    if postgres:
        op.execute("DROP INDEX IF EXISTS ix_income_transaction_narrative_trgm")
        op.drop_column('income_transaction', 'narrative')
    else:
        # the old guard names the column (SQLite cannot drop a column a trigger names); SQLite
        # drops the column in place (3.35+), keeping the table's other triggers and indexes
        op.execute("DROP TRIGGER IF EXISTS income_transaction_no_update")
        op.execute("ALTER TABLE income_transaction DROP COLUMN narrative")
    from app.models.ledger import install_ledger_triggers, install_search_indexes

    install_ledger_triggers(bind)  # income_transaction strictly append-only; the narratives' checks
    install_search_indexes(bind)


def downgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TRIGGER IF EXISTS income_transaction_append_only ON income_transaction")
        op.add_column('income_transaction',
                      sa.Column('narrative', sa.String(length=500), nullable=True))
        op.execute("UPDATE income_transaction t SET narrative = n.narrative "
                   "FROM transaction_narrative n WHERE n.transaction_id = t.id")
        # the guard of 0019: one change only, erasing a narrative (value -> NULL)
        op.execute("""
            CREATE OR REPLACE FUNCTION ims_income_transaction_guard() RETURNS trigger AS $$
            BEGIN
              IF TG_OP = 'DELETE' OR NEW.narrative IS NOT NULL
                 OR (to_jsonb(NEW) - 'narrative') IS DISTINCT FROM (to_jsonb(OLD) - 'narrative')
              THEN
                RAISE EXCEPTION 'income_transaction is append-only';
              END IF;
              RETURN NEW;
            END; $$ LANGUAGE plpgsql;
        """)
        op.execute("CREATE TRIGGER income_transaction_append_only BEFORE UPDATE OR DELETE ON "
                   "income_transaction FOR EACH ROW EXECUTE FUNCTION "
                   "ims_income_transaction_guard()")
        op.execute("CREATE INDEX IF NOT EXISTS ix_income_transaction_narrative_trgm "
                   "ON income_transaction USING gin (narrative gin_trgm_ops)")
        op.execute("DROP TRIGGER IF EXISTS transaction_narrative_references "
                   "ON transaction_narrative")
        op.execute("DROP TRIGGER IF EXISTS transaction_narrative_no_update "
                   "ON transaction_narrative")
        op.execute("DROP FUNCTION IF EXISTS ims_narrative_transactions_exist()")
        op.execute("DROP FUNCTION IF EXISTS ims_narrative_unchanged()")
        # (btree_gin stays installed: an extension other objects may use; harmless)
    else:
        op.execute("DROP TRIGGER IF EXISTS income_transaction_no_update")
        op.execute("DROP TRIGGER IF EXISTS transaction_narrative_no_update")
        op.add_column('income_transaction',
                      sa.Column('narrative', sa.String(length=500), nullable=True))
        op.execute("UPDATE income_transaction SET narrative = (SELECT n.narrative FROM "
                   "transaction_narrative n WHERE n.transaction_id = income_transaction.id) "
                   "WHERE id IN (SELECT transaction_id FROM transaction_narrative)")
        # the guard of 0019: an UPDATE may only erase the narrative (every other column compared)
        others = [c["name"] for c in sa.inspect(bind).get_columns("income_transaction")
                  if c["name"] != "narrative"]
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in others)
        op.execute(f"CREATE TRIGGER income_transaction_no_update BEFORE UPDATE ON "
                   f"income_transaction WHEN NEW.narrative IS NOT NULL OR {changed} "
                   f"BEGIN SELECT RAISE(ABORT, 'income_transaction is append-only'); END")
    op.drop_table('transaction_narrative')
