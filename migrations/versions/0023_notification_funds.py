"""notification funds: the funds each notification is about, so that a user of a fund group sees
only notifications about their own funds' records

notification_fund (notification_id, fund_code). Existing notifications about a refund, a
write-off or a suspense item (found by their link) are given that record's funds; the others
are about no fund and stay visible to their recipient.

Revision ID: 0023_notification_funds
Revises: 0022_accsync_staging
Create Date: 2026-12-06 19:00:00.000000

"""
import re

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0023_notification_funds'
down_revision = '0022_accsync_staging'
branch_labels = None
depends_on = None

_LINK = re.compile(r"^/(refunds|write-offs|suspense)/([0-9]{1,10})$")


def _funds_of(conn, kind: str, pk: int) -> set[str]:
    if kind == "refunds":
        rows = conn.execute(sa.text(
            "SELECT t.fund_code FROM refund r JOIN income_transaction t ON t.id = r.transaction_id "
            "WHERE r.id = :pk"), {"pk": pk})
    elif kind == "write-offs":
        rows = conn.execute(sa.text(
            "SELECT w.fund_code FROM write_off w WHERE w.id = :pk AND w.transaction_id IS NOT NULL "
            "UNION SELECT s.fund_code FROM write_off w JOIN suspense_item s "
            "ON s.id = w.suspense_item_id WHERE w.id = :pk"), {"pk": pk})
    else:
        rows = conn.execute(sa.text(
            "SELECT s.fund_code FROM suspense_item s WHERE s.id = :pk "
            "UNION SELECT l.fund_code FROM suspense_allocation_line l JOIN suspense_allocation a "
            "ON a.id = l.allocation_id WHERE a.suspense_item_id = :pk AND a.status <> 'rejected'"),
            {"pk": pk})
    return {r[0] for r in rows if r[0]}


def upgrade():
    op.create_table(
        'notification_fund',
        sa.Column('notification_id', sa.Integer(), nullable=False),
        sa.Column('fund_code', sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('notification_id', 'fund_code'))
    backfill(op.get_bind())


def backfill(conn) -> int:
    """Give each notification that has no funds yet the funds of the refund, write-off or
    suspense item its link names. Returns how many fund rows it added."""
    insert = sa.text("INSERT INTO notification_fund (notification_id, fund_code) "
                     "VALUES (:nid, :code)")
    cache: dict[tuple[str, int], set[str]] = {}
    added = 0
    for nid, link in conn.execute(sa.text(
            "SELECT n.id, n.link FROM notification n WHERE n.link IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM notification_fund f WHERE f.notification_id = n.id)")).all():
        m = _LINK.match(link or "")
        if m is None:
            continue
        key = (m.group(1), int(m.group(2)))
        if key not in cache:
            cache[key] = _funds_of(conn, *key)
        for code in sorted(cache[key]):
            conn.execute(insert, {"nid": nid, "code": code})
            added += 1
    return added


def downgrade():
    op.drop_table('notification_fund')
