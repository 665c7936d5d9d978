"""Approval limits (scheme of delegation) and the four-eyes floor no configuration lowers:
validation, the demo seed, and route look-up.

The scheme is data a Workflow Administrator proposes and a Head of Finance approves
(app/services/config_proposals.py). The floor is code: every refund and write-off needs at least one
approval, a suspense allocation above a ceiling needs at least one, and only the approving roles
may give them. The scheme is refused when it asks for less (``validate_scheme``), a request is
refused when the stored scheme asks for less (``route_for``), and the workflow service checks the
recorded decisions before it applies an approved outcome (``floor_for``, used by
app/services/workflow.py), whatever the BPMN says.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.domain.errors import ConfigurationError, Conflict, ValidationError
from app.domain.money import gbp
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit
from app.security import roles as R
from app.services.audit import audited
from app.services.locking import for_update

audited(ApprovalLimit)

# --------------------------------------------------------------------------- the floor (code)
#: Roles that may approve money (refunds, write-offs, suspense allocations): the only roles the
#: bands of the scheme and the lanes of the money workflows may name.
APPROVING_ROLES = (R.MANAGER, R.HEAD)
#: Roles that may approve a configuration change (a new workflow version, a roll back, new limits).
CONFIGURATION_APPROVERS = (R.HEAD,)
#: The subject type of configuration changes (app/services/config_proposals.py).
CONFIGURATION_SUBJECT = "configuration_change"
#: The process that approves configuration changes: deployed from workflows/ by an operator only.
CONFIGURATION_PROCESS = "configuration_approval"
#: closing or reopening an accounting period (app/services/periods.py): one Head of Finance
#: other than the requester approves it
PERIOD_SUBJECT = "period_close"
PERIOD_APPROVERS = (R.HEAD,)
#: Workflow processes whose outcome moves money or changes configuration, with the only roles their
#: lanes may name (checked at deploy, whoever deploys).
GUARDED_PROCESSES = {
    "refund_approval": APPROVING_ROLES,
    "write_off_approval": APPROVING_ROLES,
    "suspense_allocation_approval": APPROVING_ROLES,
    "cash_up_approval": APPROVING_ROLES,
    CONFIGURATION_PROCESS: CONFIGURATION_APPROVERS,
    "period_close_approval": PERIOD_APPROVERS,
}
#: Suspense allocations up to this many pence may post without approval (config
#: IMS_SUSPENSE_APPROVAL_CEILING, in pounds, overrides it).
DEFAULT_SUSPENSE_CEILING = 1_000_000
#: The largest amount a band may name (£999,999,999,999.99): well inside a 64-bit column.
MAX_PENCE = 99_999_999_999_999
MAX_APPROVALS = 5

ACTION_NOUNS = {"refund": "refunds", "write_off": "write-offs",
                "suspense_allocation": "suspense allocations", "cash_up": "cash-ups"}


@dataclass(frozen=True)
class Floor:
    """At least ``approvals`` approvals, by distinct people other than the requester, each in a
    task of one of ``roles``."""

    approvals: int
    roles: tuple[str, ...]


def suspense_ceiling() -> int:
    """Pence a suspense allocation may reach without approval (IMS_SUSPENSE_APPROVAL_CEILING)."""
    try:
        from flask import current_app, has_app_context
    except ImportError:  # pragma: no cover
        return DEFAULT_SUSPENSE_CEILING
    if not has_app_context():
        return DEFAULT_SUSPENSE_CEILING
    raw = current_app.config.get("IMS_SUSPENSE_APPROVAL_CEILING")
    if raw is None or raw == "":
        return DEFAULT_SUSPENSE_CEILING
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw  # set in code, in pence
    try:
        pence = int(Decimal(str(raw).strip()) * 100)
    except (InvalidOperation, ValueError):
        pence = -1
    if pence < 0:
        raise ConfigurationError(f"IMS_SUSPENSE_APPROVAL_CEILING must be pounds such as "
                                 f"\"10000.00\", not {raw!r}.")
    return pence


def minimum_approvals(action: str, amount_pence: int | None) -> int:
    """The floor for one request: approvals it needs whatever the scheme says."""
    if action in ("refund", "write_off", "cash_up"):
        return 1
    if action == "suspense_allocation":
        return 1 if amount_pence is None or amount_pence > suspense_ceiling() else 0
    return 0


def band_minimum(action: str, min_amount: int, max_amount: int | None) -> int:
    """The floor for a band: the most any amount in it needs."""
    if action == "suspense_allocation":
        return 1 if max_amount is None or max_amount > suspense_ceiling() else 0
    return minimum_approvals(action, min_amount)


def floor_for(subject_type: str, amount_pence: int | None) -> Floor | None:
    """The floor the workflow service checks before it applies an approved outcome (None: no
    floor, e.g. demonstration subjects)."""
    if subject_type == CONFIGURATION_SUBJECT:
        return Floor(1, CONFIGURATION_APPROVERS)
    if subject_type == PERIOD_SUBJECT:
        return Floor(1, PERIOD_APPROVERS)
    if subject_type in APPROVAL_ACTIONS:
        n = minimum_approvals(subject_type, amount_pence)
        return Floor(n, APPROVING_ROLES) if n else None
    return None


# --------------------------------------------------------------------------- seed and route
#: the demo scheme: (action, min pence, max pence or None, approvals required, roles in order)
DEMO_SCHEME = [
    ("refund", 0, 50_000, 1, [R.MANAGER]),
    ("refund", 50_001, None, 2, [R.MANAGER, R.HEAD]),
    ("write_off", 0, 10_000, 1, [R.MANAGER]),
    ("write_off", 10_001, 500_000, 1, [R.HEAD]),
    ("write_off", 500_001, None, 2, [R.HEAD, R.MANAGER]),
    ("suspense_allocation", 0, 1_000_000, 0, []),
    ("suspense_allocation", 1_000_001, None, 1, [R.MANAGER]),
    ("cash_up", 0, 500_000, 1, [R.MANAGER]),
    ("cash_up", 500_001, None, 2, [R.MANAGER, R.HEAD]),
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


def _band_of(column):
    """``column`` of the band covering the amount ``route_amount`` of the action ``route_action``
    (a scalar subquery: NULL when no band covers it)."""
    return (select(column)
            .where(ApprovalLimit.action == bindparam("route_action"),
                   ApprovalLimit.min_amount <= bindparam("route_amount"),
                   (ApprovalLimit.max_amount.is_(None))
                   | (ApprovalLimit.max_amount >= bindparam("route_amount")))
            .order_by(ApprovalLimit.min_amount.desc(), ApprovalLimit.id.desc())
            .limit(1).scalar_subquery())


#: The route's columns (approvals required, roles as stored) for a caller that reads them in a
#: statement of its own, binding ``route_action`` and ``route_amount``; then ``check_route``.
ROUTE_COLUMNS = (_band_of(ApprovalLimit.approvals_required).label("route_required"),
                 _band_of(ApprovalLimit.roles).label("route_roles"))
_ROUTE_Q = select(*ROUTE_COLUMNS)


def route_for(session: Session, action: str, amount_pence: int) -> tuple[int, list[str]]:
    """(approvals required, roles in approval order) for an action and amount.

    Raises ValidationError when no band covers the amount (the scheme must be complete), or when
    the band asks for fewer approvals than the four-eyes floor (a scheme stored before the floor
    existed, or changed in the database): the request is refused rather than waved through.
    """
    required, roles = session.execute(_ROUTE_Q, {"route_action": action,
                                                 "route_amount": amount_pence}).one()
    return check_route(action, amount_pence, required, roles)


def check_route(action: str, amount_pence: int, required: int | None,
                roles: str | None) -> tuple[int, list[str]]:
    """``route_for`` on the band's columns already read (``ROUTE_COLUMNS``; None: no band)."""
    if required is None:
        raise ValidationError(f"No approval limit covers a {action} of {amount_pence} pence.",
                              {"amount": ["No approval limit covers this amount."]})
    floor = minimum_approvals(action, amount_pence)
    if required < floor:
        raise ValidationError(
            f"The approval limits give {ACTION_NOUNS.get(action, action)} of "
            f"{gbp(amount_pence)} {required} approvals, fewer than the "
            f"{floor} the four-eyes rule requires, so nothing was saved. A Workflow "
            f"Administrator must propose corrected limits.",
            {"amount": ["The approval limits for this amount are below the four-eyes minimum."]})
    return required, [r.strip() for r in (roles or "").split(",") if r.strip()]


# --------------------------------------------------------------------------- whole schemes
def scheme(session: Session, action: str, lock: bool = False) -> list[ApprovalLimit]:
    """The bands of one action, lowest first (``lock``: locked to change them, locking.for_update)."""
    query = (select(ApprovalLimit).where(ApprovalLimit.action == action)
             .order_by(ApprovalLimit.min_amount, ApprovalLimit.id))
    if lock:
        query = for_update(session, query)
    return list(session.scalars(query))


def band_dicts(bands) -> list[dict]:
    """Stored bands as ``[{"min_amount", "max_amount", "roles": [...]}]`` (pence)."""
    return [{"min_amount": b.min_amount, "max_amount": b.max_amount, "roles": b.role_list}
            for b in bands]


def fingerprint(bands) -> str:
    """A short digest of a scheme as stored, so an editor can tell if someone else changed it."""
    text = "|".join(f"{b.min_amount}:{b.max_amount}:{b.approvals_required}:{b.roles}"
                    for b in bands)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pounds(pence: int) -> str:
    return gbp(pence)


def scheme_problems(bands, gaps: bool = True) -> list[str]:
    """Overlaps (and, with ``gaps``, gaps) between bands (sorted by minimum); empty when the
    scheme covers every amount from 0.00 up exactly once."""
    out = []
    bands = sorted(bands, key=lambda b: b.min_amount)
    if not bands:
        return ["There are no bands: every request would be refused."] if gaps else []
    if gaps and bands[0].min_amount != 0:
        out.append(f"Nothing covers amounts below {_pounds(bands[0].min_amount)}: "
                   f"the first band must start at £0.00.")
    for prev, nxt in zip(bands, bands[1:], strict=False):
        if prev.max_amount is None:
            out.append(f"The band from {_pounds(prev.min_amount)} has no upper limit, so it "
                       f"overlaps the band from {_pounds(nxt.min_amount)}.")
        elif nxt.min_amount <= prev.max_amount:
            out.append(f"The bands from {_pounds(prev.min_amount)} and from "
                       f"{_pounds(nxt.min_amount)} overlap.")
        elif gaps and nxt.min_amount > prev.max_amount + 1:
            out.append(f"Nothing covers {_pounds(prev.max_amount + 1)} to "
                       f"{_pounds(nxt.min_amount - 1)}: the next band must start at "
                       f"{_pounds(prev.max_amount + 1)}.")
    if gaps and bands[-1].max_amount is not None:
        out.append(f"Nothing covers amounts above {_pounds(bands[-1].max_amount)}: leave the "
                   f"last band's upper limit empty.")
    return out


def floor_problems(action: str, bands) -> list[str]:
    """Bands (stored or proposed) below the four-eyes floor or naming roles that may not approve
    (shown on the approval limits page for a scheme stored before the floor existed)."""
    out = []
    for b in sorted(bands, key=lambda b: b.min_amount):
        roles = b.role_list if isinstance(b, ApprovalLimit) else b["roles"]
        lo, hi = (b.min_amount, b.max_amount) if isinstance(b, ApprovalLimit) \
            else (b["min_amount"], b["max_amount"])
        out.extend(_band_floor_errors(action, lo, hi, roles, _band_label(lo, hi)))
    return out


def _band_label(lo: int, hi: int | None) -> str:
    return f"{_pounds(lo)} to {'no limit' if hi is None else _pounds(hi)}"


def _band_floor_errors(action: str, lo: int, hi: int | None, roles: list[str], label: str
                       ) -> list[str]:
    out = []
    not_approving = [r for r in roles if r not in APPROVING_ROLES]
    if not_approving:
        out.append(f"Band {label}: {', '.join(not_approving)} may not approve "
                   f"{ACTION_NOUNS.get(action, action)}; only {' or '.join(APPROVING_ROLES)} may.")
    need = band_minimum(action, lo, hi)
    if len(roles) < need:
        if action == "suspense_allocation":
            out.append(f"Band {label}: suspense allocations above "
                       f"{_pounds(suspense_ceiling())} need at least {need} approval "
                       f"(four-eyes rule).")
        else:
            out.append(f"Band {label}: {ACTION_NOUNS.get(action, action)} need at least "
                       f"{need} approval (four-eyes rule).")
    return out


def _clean_roles(raw, n: int, errors: dict[str, list[str]]) -> list[str]:
    """A band's roles: a list of role names ("" entries, the web form's empty choices, are
    skipped) or a comma-separated string. Anything else (null, numbers) is refused."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list):
        errors.setdefault("roles", []).append(f"Band {n}: roles are a list of role names.")
        return []
    roles = []
    for value in raw:
        if not isinstance(value, str):
            shown = "null" if value is None else repr(value)
            errors.setdefault("roles", []).append(
                f"Band {n}: each role is a role name, not {shown}.")
            continue
        if value.strip():
            roles.append(value.strip())
    return roles


def _amount_ok(value, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PENCE


def validate_scheme(action: str, bands: list, complete: bool = True) -> list[ApprovalLimit]:
    """Check a whole scheme for one action; return its bands as unsaved rows, lowest first.

    ``bands``: ``[{"min_amount": pence, "max_amount": pence|None, "roles": [role, ...]}]``;
    approvals required = the number of roles. Raises ValidationError (field errors) for bad
    amounts, unknown roles, roles that may not approve money, bands below the four-eyes floor,
    overlaps and (``complete``) gaps.
    """
    if action not in APPROVAL_ACTIONS:
        raise ValidationError(f"Unknown action '{action}'.",
                              {"action": [f"Choose one of: {', '.join(APPROVAL_ACTIONS)}."]})
    if not isinstance(bands, list):
        raise ValidationError("The bands are a list.", {"bands": ["A list of bands is required."]})
    proposed, errors = [], {}
    for n, band in enumerate(bands, 1):
        if not isinstance(band, dict):
            errors.setdefault("bands", []).append(f"Band {n} is not an object.")
            continue
        roles = _clean_roles(band.get("roles"), n, errors)
        lo, hi = band.get("min_amount"), band.get("max_amount")
        unknown = [r for r in roles if r not in R.ROLES]
        if unknown:
            errors.setdefault("roles", []).append(f"Band {n}: unknown role(s) {', '.join(unknown)}.")
        if not _amount_ok(lo, allow_none=False):
            errors.setdefault("min_amount", []).append(
                f"Band {n}: the minimum must be from £0.00 up to {_pounds(MAX_PENCE)}.")
        elif not _amount_ok(hi, allow_none=True):
            errors.setdefault("max_amount", []).append(
                f"Band {n}: the maximum must be empty (no limit) or up to {_pounds(MAX_PENCE)}.")
        elif hi is not None and hi < lo:
            errors.setdefault("max_amount", []).append(
                f"Band {n}: the maximum is less than the minimum.")
        elif not unknown:
            floor = _band_floor_errors(action, lo, hi, roles, str(n))
            if floor:
                errors.setdefault("roles", []).extend(floor)
        if len(roles) > MAX_APPROVALS:
            errors.setdefault("roles", []).append(f"Band {n}: at most {MAX_APPROVALS} approvals.")
        proposed.append(ApprovalLimit(action=action, min_amount=lo, max_amount=hi,
                                      approvals_required=len(roles), roles=",".join(roles)))
    if not errors:
        problems = scheme_problems(proposed, gaps=complete)
        if problems:
            errors["bands"] = problems
    if errors:
        raise ValidationError("The approval limits were not saved.", errors)
    proposed.sort(key=lambda b: b.min_amount)
    return proposed


def replace_scheme(session: Session, action: str, bands: list[dict], expected: str | None = None,
                   complete: bool = True, commit: bool = True) -> list[ApprovalLimit]:
    """Replace every band of ``action`` at once (rows updated, added or removed; each audited).

    Validated by ``validate_scheme``: refuses (422) bad amounts, unknown or non-approving roles,
    bands below the floor, overlaps and (``complete``) gaps, and (409) a scheme changed by someone
    else since ``expected`` (its fingerprint) was read. Used when a Head of Finance approves a
    proposal, and by operators' scripts; the portal and API propose instead. Commits unless
    ``commit`` is False (then it only flushes, inside the caller's unit of work).
    """
    try:
        proposed = validate_scheme(action, bands, complete=complete)
        current = scheme(session, action, lock=True)
        if expected is not None and fingerprint(current) != expected:
            raise Conflict("Someone else changed these approval limits since you opened them. "
                           "Reload to see their changes, then make yours again.",
                           {"fingerprint": ["The approval limits changed meanwhile."]})
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
        session.flush()
    except Exception:
        if commit:
            session.rollback()
        raise
    if commit:
        session.commit()
    return scheme(session, action)
