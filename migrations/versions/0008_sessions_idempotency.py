"""access: server-side browser sessions; Idempotency-Key request fingerprints

user_session records each signed-in browser session (the SHA-256 of the random token its signed
cookie carries), so that logout, a password change or an administrator's reset ends sessions on
every worker. idempotency_key.request_fingerprint and refund.idempotency_fingerprint hold the
SHA-256 of the first request's canonical body: the same key with another body is refused (422).

Revision ID: 0008_sessions_idempotency
Revises: 0007_audit_keyed
Create Date: 2026-11-27 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = '0008_sessions_idempotency'
down_revision = '0007_audit_keyed'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('user_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_session_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_session_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_fingerprint', sa.String(length=64), nullable=True))
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_fingerprint', sa.String(length=64),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_column('idempotency_fingerprint')
    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.drop_column('request_fingerprint')
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_session_user_id'))
        batch_op.drop_index(batch_op.f('ix_user_session_created_at'))
    op.drop_table('user_session')
