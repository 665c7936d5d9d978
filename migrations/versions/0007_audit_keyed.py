"""audit: keyed hash chain, signed checkpoints, TRUNCATE refused

audit_event.key_id names the audit key (IMS_AUDIT_KEY) whose HMAC-SHA256 is the event's hash;
events from before have none (plain SHA-256) and stay as they are: `ims audit-rekey` verifies
them and continues the chain keyed (`make run` runs it; so must a production upgrade). Until
then new events continue the chain unkeyed and `ims audit-verify` says it is not keyed.
audit_checkpoint holds signed checkpoints of the chain's head. Both tables refuse UPDATE and
DELETE, and on PostgreSQL TRUNCATE.

Downgrading drops the checkpoints and the key ids: keyed events then no longer verify.

Revision ID: 0007_audit_keyed
Revises: 0006_sqlite_strict
Create Date: 2026-12-06 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import app.models.base

# revision identifiers, used by Alembic.
revision = '0007_audit_keyed'
down_revision = '0006_sqlite_strict'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('audit_event', sa.Column('key_id', sa.String(length=16), nullable=True))
    op.create_table('audit_checkpoint',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('created_at', app.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('last_event_id', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_checkpoint_last_event_id'), ['last_event_id'],
                              unique=False)
    from app.models.ddl import audit_append_only

    audit_append_only(op.get_bind())


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    op.drop_table('audit_checkpoint')
    if bind.dialect.name == "postgresql":
        op.drop_column('audit_event', 'key_id')
    else:
        # SQLite copies the table to drop a column, losing its triggers: put them back.
        with op.batch_alter_table('audit_event', schema=None) as batch_op:
            batch_op.drop_column('key_id')
        from app.models.ddl import audit_append_only

        audit_append_only(bind)
