"""SQLite: the posting groups a transaction wrote to must balance when it commits

PostgreSQL checks each statement's posting groups with a statement-level trigger. SQLite has
none: a row trigger notes the first ledger line a transaction writes in ledger_commit_check, and
app/models/sqlite.py refuses to commit while the group of that line or of a later one does not
balance (SQLite has one writer at a time, and a new line's id is above every existing one).
Foreign keys are enforced on every SQLite connection from now on (migrations/env.py turns them
off around Alembic's batch table rebuilds only). Nothing changes on PostgreSQL.

Revision ID: 0006_sqlite_strict
Revises: 0005_ledger_references
Create Date: 2026-12-06 09:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006_sqlite_strict'
down_revision = '0005_ledger_references'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    from app.models.ledger import install_ledger_triggers

    install_ledger_triggers(op.get_bind())


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS ledger_line_commit_check")
    op.execute("DROP TABLE IF EXISTS ledger_commit_check")
