"""audit_chain: the hash chain moves out of the request path into a table of its own

A request now writes its audit events sealed with a MAC (audit_event.mac: HMAC-SHA256 under the
audit key named by key_id, of the event's fields) and nothing else: no chain lock, no read of the
chain's head. The worker (`ims tick`, `ims worker`) links them in event order into audit_chain
(event_id, prev_hash, hash = HMAC of the hash before, the event id and its MAC, key_id), which
is append-only like the trail. audit_event stays insert-only.

Events written before this migration keep their link in audit_event.prev_hash and .hash (so
those columns become nullable): the chain runs through them and continues in audit_chain from
the last of them. Nothing is copied or rewritten.

The downgrade drops audit_chain and the MAC column; events written since have no link in
audit_event, so a downgraded trail with such events no longer verifies (downgrade only a
database that has none, e.g. just after upgrading).

Revision ID: 0026_audit_chain
Revises: 0025_narratives
Create Date: 2026-12-06 22:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0026_audit_chain'
down_revision = '0025_narratives'
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    op.create_table(
        'audit_chain',
        sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=False, nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=16), nullable=True),
        sa.Column('chained_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
        sa.UniqueConstraint('hash'),
    )
    if bind.dialect.name == "postgresql":
        op.add_column('audit_event', sa.Column('mac', sa.String(length=64), nullable=True))
        op.alter_column('audit_event', 'prev_hash', existing_type=sa.String(length=64),
                        nullable=True)
        op.alter_column('audit_event', 'hash', existing_type=sa.String(length=64), nullable=True)
    else:
        # SQLite copies the table to change a column, losing its triggers: the installer below
        # puts them back.
        with op.batch_alter_table('audit_event', schema=None) as batch_op:
            batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
            batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=True)
            batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=True)
    from app.models.ddl import audit_append_only

    audit_append_only(bind)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_chain_no_truncate ON audit_chain")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_append_only ON audit_chain")
    op.drop_table('audit_chain')
    if bind.dialect.name == "postgresql":
        op.drop_column('audit_event', 'mac')
    else:
        with op.batch_alter_table('audit_event', schema=None) as batch_op:
            batch_op.drop_column('mac')
        from app.models.ddl import audit_append_only

        audit_append_only(bind)
