"""TOTP secrets encrypted at rest: user_signin.totp_secret widens to hold a Fernet token, and
every secret stored in plain text is sealed with the key in force (IMS_TOTP_KEY, else
SECRET_KEY: app/security/secret_box.py). The downgrade opens them again (it needs the same key)
and narrows the column back.

Revision ID: 0024_totp_secrets_sealed
Revises: 0023_notification_funds
Create Date: 2026-12-06 19:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0024_totp_secrets_sealed'
down_revision = '0023_notification_funds'
branch_labels = None
depends_on = None


def _config():
    from flask import current_app, has_app_context

    if not has_app_context():
        raise RuntimeError("Run this migration through `flask db upgrade` (it needs the app's "
                           "IMS_TOTP_KEY or SECRET_KEY).")
    return current_app.config


def _rewrite(change) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT user_id, totp_secret FROM user_signin "
                                "WHERE totp_secret IS NOT NULL")).all()
    for user_id, value in rows:
        new = change(value)
        if new != value:
            conn.execute(sa.text("UPDATE user_signin SET totp_secret = :v WHERE user_id = :u"),
                         {"v": new, "u": user_id})


def upgrade():
    from app.security import secret_box

    config = _config()
    with op.batch_alter_table('user_signin', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=64),
                              type_=sa.String(length=255), existing_nullable=True)
    _rewrite(lambda v: v if secret_box.is_sealed(v) else secret_box.seal(v, config))


def downgrade():
    from app.security import secret_box

    config = _config()

    def opened(value):
        plain = secret_box.unseal(value, config)
        if plain is None:
            raise RuntimeError("A TOTP secret does not open with IMS_TOTP_KEY / SECRET_KEY: "
                               "set the key it was sealed with before downgrading.")
        return plain

    _rewrite(opened)
    with op.batch_alter_table('user_signin', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=255),
                              type_=sa.String(length=64), existing_nullable=True)
