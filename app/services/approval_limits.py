"""Approval limits (scheme of delegation): validation, the demo seed, and route look-up."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit
from app.security import roles as R
from app.services.audit import audited

audited(ApprovalLimit)

#: the demo scheme: (action, min pence, max pence or None, approvals required, roles in order)
DEMO_SCHEME = [
    ("refund", 0, 50_000, 1, [R.MANAGER]),
    ("refund", 50_001, None, 2, [R.MANAGER, R.HEAD]),
    ("write_off", 0, 10_000, 1, [R.MANAGER]),
    ("write_off", 10_001, 500_000, 1, [R.HEAD]),
    ("write_off", 500_001, None, 2, [R.HEAD, R.MANAGER]),
    ("suspense_allocation", 0, 1_000_000, 0, []),
    ("suspense_allocation", 1_000_001, None, 1, [R.MANAGER]),
]


def seed_approval_limits(session: Session) -> int:
    """Add the demo scheme for every action that has no limits yet (idempotent). Flushes only."""
    have = set(session.scalars(select(ApprovalLimit.action).distinct()))
    added = 0
    for action, lo, hi, n, roles in DEMO_SCHEME:
        if action in have:
            continue
        session.add(ApprovalLimit(action=action, min_amount=lo, max_amount=hi,
                                  approvals_required=n, roles=",".join(roles)))
        added += 1
    session.flush()
    return added


def check_limit(session: Session, limit: ApprovalLimit) -> None:
    """Raise ValidationError unless the limit is coherent and does not overlap another band."""
    errors: dict[str, list[str]] = {}
    if limit.action not in APPROVAL_ACTIONS:
        errors["action"] = [f"Choose one of: {', '.join(APPROVAL_ACTIONS)}."]
    if limit.min_amount is None or limit.min_amount < 0:
        errors["min_amount"] = ["The minimum must be zero or more."]
    if limit.max_amount is not None and limit.min_amount is not None \
            and limit.max_amount < limit.min_amount:
        errors["max_amount"] = ["The maximum is less than the minimum."]
    if limit.approvals_required is None or limit.approvals_required < 0:
        errors["approvals_required"] = ["Approvals required must be zero or more."]
    names = limit.role_list
    unknown = [n for n in names if n not in R.ROLES]
    if unknown:
        errors["roles"] = [f"Unknown role(s): {', '.join(unknown)}. Roles: {', '.join(R.ROLES)}."]
    elif limit.approvals_required is not None and len(names) != limit.approvals_required:
        errors["roles"] = [f"Name exactly {limit.approvals_required} role(s), in approval order "
                           f"(one per approval)."]
    if not errors:
        lo, hi = limit.min_amount, limit.max_amount
        for other in session.scalars(select(ApprovalLimit).where(
                ApprovalLimit.action == limit.action)):
            if other is limit or (limit.id is not None and other.id == limit.id):
                continue
            o_hi = other.max_amount
            if (hi is None or other.min_amount <= hi) and (o_hi is None or lo <= o_hi):
                errors["min_amount"] = [f"This band overlaps another {limit.action} band ({other!r})."]
                break
    if errors:
        raise ValidationError("The approval limit is not valid.", errors)


def route_for(session: Session, action: str, amount_pence: int) -> tuple[int, list[str]]:
    """(approvals required, roles in approval order) for an action and amount.

    Raises ValidationError when no band covers the amount (the scheme must be complete).
    """
    limit = session.scalars(
        select(ApprovalLimit)
        .where(ApprovalLimit.action == action, ApprovalLimit.min_amount <= amount_pence,
               (ApprovalLimit.max_amount.is_(None)) | (ApprovalLimit.max_amount >= amount_pence))
        .order_by(ApprovalLimit.min_amount.desc())
        .limit(1)).first()
    if limit is None:
        raise ValidationError(f"No approval limit covers a {action} of {amount_pence} pence.",
                              {"amount": ["No approval limit covers this amount."]})
    return limit.approvals_required, limit.role_list
