"""Approval limits (scheme of delegation): validation, the demo seed, and route look-up."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, ValidationError
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit
from app.security import roles as R
from app.services.audit import audited
from app.services.locking import for_update

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


# --------------------------------------------------------------------------- whole schemes
def scheme(session: Session, action: str) -> list[ApprovalLimit]:
    """The bands of one action, lowest first."""
    return list(session.scalars(select(ApprovalLimit).where(ApprovalLimit.action == action)
                                .order_by(ApprovalLimit.min_amount, ApprovalLimit.id)))


def fingerprint(bands) -> str:
    """A short digest of a scheme as stored, so an editor can tell if someone else changed it."""
    text = "|".join(f"{b.min_amount}:{b.max_amount}:{b.approvals_required}:{b.roles}"
                    for b in bands)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scheme_problems(bands) -> list[str]:
    """Gaps and overlaps between bands (sorted by minimum); empty when the scheme covers every
    amount from 0.00 up exactly once."""
    out = []
    bands = sorted(bands, key=lambda b: b.min_amount)
    if not bands:
        return ["There are no bands: every request would be refused."]
    if bands[0].min_amount != 0:
        out.append(f"Nothing covers amounts below {bands[0].min_amount / 100:.2f}: "
                   f"the first band must start at 0.00.")
    for prev, nxt in zip(bands, bands[1:], strict=False):
        if prev.max_amount is None:
            out.append(f"The band from {prev.min_amount / 100:.2f} has no upper limit, so it "
                       f"overlaps the band from {nxt.min_amount / 100:.2f}.")
        elif nxt.min_amount <= prev.max_amount:
            out.append(f"The bands from {prev.min_amount / 100:.2f} and from "
                       f"{nxt.min_amount / 100:.2f} overlap.")
        elif nxt.min_amount > prev.max_amount + 1:
            out.append(f"Nothing covers {(prev.max_amount + 1) / 100:.2f} to "
                       f"{(nxt.min_amount - 1) / 100:.2f}: the next band must start at "
                       f"{(prev.max_amount + 1) / 100:.2f}.")
    if bands[-1].max_amount is not None:
        out.append(f"Nothing covers amounts above {bands[-1].max_amount / 100:.2f}: leave the "
                   f"last band's upper limit empty.")
    return out


def replace_scheme(session: Session, action: str, bands: list[dict], expected: str | None = None
                   ) -> list[ApprovalLimit]:
    """Replace every band of ``action`` at once (rows updated, added or removed; each audited).

    ``bands``: ``[{"min_amount": pence, "max_amount": pence|None, "roles": [role, ...]}]``;
    approvals required = the number of roles. Refuses (422) gaps, overlaps and unknown roles,
    and (409) a scheme changed by someone else since ``expected`` (its fingerprint) was read.
    Commits.
    """
    if action not in APPROVAL_ACTIONS:
        raise ValidationError(f"Unknown action '{action}'.",
                              {"action": [f"Choose one of: {', '.join(APPROVAL_ACTIONS)}."]})
    current = list(session.scalars(for_update(session, select(ApprovalLimit).where(
        ApprovalLimit.action == action).order_by(ApprovalLimit.min_amount, ApprovalLimit.id))))
    if expected is not None and fingerprint(current) != expected:
        raise Conflict("Someone else changed these approval limits since you opened them. "
                       "Reload to see their changes, then make yours again.",
                       {"fingerprint": ["The approval limits changed meanwhile."]})
    proposed, errors = [], {}
    for n, band in enumerate(bands, 1):
        roles = [r.strip() for r in band.get("roles") or [] if r and r.strip()]
        unknown = [r for r in roles if r not in R.ROLES]
        lo, hi = band.get("min_amount"), band.get("max_amount")
        if unknown:
            errors.setdefault("roles", []).append(f"Band {n}: unknown role(s) {', '.join(unknown)}.")
        if not isinstance(lo, int) or lo < 0:
            errors.setdefault("min_amount", []).append(f"Band {n}: the minimum must be 0.00 or more.")
        elif hi is not None and (not isinstance(hi, int) or hi < lo):
            errors.setdefault("max_amount", []).append(
                f"Band {n}: the maximum is less than the minimum.")
        if len(roles) > 5:
            errors.setdefault("roles", []).append(f"Band {n}: at most 5 approvals.")
        proposed.append(ApprovalLimit(action=action, min_amount=lo, max_amount=hi,
                                      approvals_required=len(roles), roles=",".join(roles)))
    if not errors:
        gaps = scheme_problems(proposed)
        if gaps:
            errors["bands"] = gaps
    if errors:
        session.rollback()
        raise ValidationError("The approval limits were not saved.", errors)
    proposed.sort(key=lambda b: b.min_amount)
    for row, new in zip(current, proposed, strict=False):
        if (row.min_amount, row.max_amount, row.approvals_required, row.roles) != \
                (new.min_amount, new.max_amount, new.approvals_required, new.roles):
            row.min_amount, row.max_amount = new.min_amount, new.max_amount
            row.approvals_required, row.roles = new.approvals_required, new.roles
    for row in current[len(proposed):]:
        session.delete(row)
    session.flush()  # deletes first: the remaining rows may take their ranges
    for new in proposed[len(current):]:
        session.add(new)
    session.commit()
    return scheme(session, action)
