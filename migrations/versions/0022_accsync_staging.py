"""account-holder sync: no per-row foreign keys on the staged lines and the change list

account_sync_row holds a file's parsed lines between the check and the apply (a million for a
large council). Its foreign key to account_sync cost a look-up per staged line (most of the
staging time): the key goes. Its (sync_id, account_reference) index stays (PostgreSQL joins
the lines by hash, but SQLite finds the accounts missing from a file through it).
account_sync_change (the change list, a row per account created, changed or closed) loses its
foreign key to account_sync too: only the apply writes it, for the sync it holds locked, and
syncs are never deleted; the key's check for each row cost as much as the row.

Revision ID: 0022_accsync_staging
Revises: 0021_dashboard_index
Create Date: 2026-12-06 19:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0022_accsync_staging'
down_revision = '0021_dashboard_index'
branch_labels = None
depends_on = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _staging(with_key: bool) -> sa.Table:
    """account_sync_row as it is after (or, with_key, before) this migration (SQLite rebuilds)."""
    # the (sync_id, account_reference) index stays: SQLite, which has no hash join, finds the
    # accounts missing from a file through it (without it, a scan of the staged lines per account)
    extra = ([sa.ForeignKeyConstraint(['sync_id'], ['account_sync.id'], ondelete='CASCADE')]
             if with_key else []) + [
        sa.Index('ix_account_sync_row_sync_ref', 'sync_id', 'account_reference')]
    return sa.Table(
        'account_sync_row', sa.MetaData(),
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
        sa.PrimaryKeyConstraint('id'),
        *extra)


def _changes(with_key: bool) -> sa.Table:
    """account_sync_change after (or, with_key, before) this migration (SQLite rebuilds)."""
    extra = ([sa.ForeignKeyConstraint(['sync_id'], ['account_sync.id'])] if with_key else [])
    return sa.Table(
        'account_sync_change', sa.MetaData(),
        sa.Column('id', _BIGID, nullable=False),
        sa.Column('sync_id', sa.Integer(), nullable=False),
        sa.Column('account_holder_id', sa.Integer(), nullable=False),
        sa.Column('account_reference', sa.String(length=30), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('before', sa.Text(), nullable=True),
        sa.Column('after', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.Index('ix_account_sync_change_sync', 'sync_id', 'id'),
        sa.Index('ix_account_sync_change_account_holder_id', 'account_holder_id'),
        *extra)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('account_sync_change_sync_id_fkey', 'account_sync_change',
                           type_='foreignkey')
        op.drop_constraint('account_sync_row_sync_id_fkey', 'account_sync_row',
                           type_='foreignkey')
        return
    # SQLite keeps a foreign key in the table's definition: the tables are rebuilt without it
    with op.batch_alter_table('account_sync_row', copy_from=_staging(False), recreate='always'):
        pass
    with op.batch_alter_table('account_sync_change', copy_from=_changes(False),
                              recreate='always'):
        pass


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DELETE FROM account_sync_row WHERE sync_id NOT IN (SELECT id FROM account_sync)")
        op.create_foreign_key('account_sync_row_sync_id_fkey', 'account_sync_row', 'account_sync',
                              ['sync_id'], ['id'], ondelete='CASCADE')
        op.create_foreign_key('account_sync_change_sync_id_fkey', 'account_sync_change',
                              'account_sync', ['sync_id'], ['id'])
        return
    with op.batch_alter_table('account_sync_row', copy_from=_staging(True), recreate='always'):
        pass
    with op.batch_alter_table('account_sync_change', copy_from=_changes(True), recreate='always'):
        pass
