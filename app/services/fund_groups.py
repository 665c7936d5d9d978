"""Fund groups administration: define groups of funds, give users groups or "all funds".

Every change is written to the audit trail (``fund_group.*`` and ``user_fund_access.*``).
Which funds a user may see at request time is app/services/scope.py's business.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.models.fund_group import FundGroup, UserFundAccess, fund_group_fund, user_fund_group
from app.models.reference import Fund
from app.services import audit
from app.services.audit import current_actor

NAME_MAX = 100


def _funds(session: Session, codes) -> list[Fund]:
    codes = sorted({str(c).strip().upper() for c in codes or () if str(c).strip()})
    funds = list(session.scalars(select(Fund).where(Fund.code.in_(codes)))) if codes else []
    unknown = sorted(set(codes) - {f.code for f in funds})
    if unknown:
        raise ValidationError(f"Unknown fund(s): {', '.join(unknown)}.",
                              {"funds": [f"Unknown fund(s): {', '.join(unknown)}."]})
    return funds


def list_groups(session: Session) -> list[dict]:
    members = dict(session.execute(
        select(user_fund_group.c.group_id, func.count()).group_by(user_fund_group.c.group_id)
    ).all())
    return [group_dict(g, members.get(g.id, 0))
            for g in session.scalars(select(FundGroup).order_by(FundGroup.name))]


def group_dict(g: FundGroup, users: int | None = None) -> dict:
    out = {"id": g.id, "name": g.name, "description": g.description or "",
           "funds": [f.code for f in g.funds]}
    if users is not None:
        out["users"] = users
    return out


def get_group(session: Session, group_id: int) -> FundGroup:
    g = session.get(FundGroup, group_id)
    if g is None:
        raise NotFound("No such fund group.")
    return g


def save_group(session: Session, name: str, funds, description: str | None = None,
               group_id: int | None = None) -> FundGroup:
    """Create (group_id None) or change a fund group; commits."""
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationError("Give the group a name of at most 100 characters.",
                              {"name": [f"Required, at most {NAME_MAX} characters."]})
    description = (description or "").strip()[:300] or None
    chosen = _funds(session, funds)
    clash = session.scalar(select(FundGroup.id).where(func.lower(FundGroup.name) == name.lower()))
    if clash is not None and clash != group_id:
        raise Conflict("A fund group of that name exists.", {"name": ["Already in use."]})
    if group_id is None:
        g = FundGroup(name=name, description=description)
        session.add(g)
        before = None
    else:
        g = get_group(session, group_id)
        before = group_dict(g)
        g.name, g.description = name, description
    g.funds = chosen
    session.flush()
    audit.record(session, "fund_group.save", "FundGroup", g.id, before, group_dict(g))
    session.commit()
    return g


def delete_group(session: Session, group_id: int) -> None:
    g = get_group(session, group_id)
    before = group_dict(g)
    session.execute(delete(user_fund_group).where(user_fund_group.c.group_id == g.id))
    session.delete(g)
    audit.record(session, "fund_group.delete", "FundGroup", group_id, before, None)
    session.commit()


def _user(session: Session, user_id: int):
    from flask_appbuilder.security.sqla.models import User

    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def user_access(session: Session, user_id: int) -> dict:
    user = _user(session, user_id)
    row = session.get(UserFundAccess, user_id)
    groups = list(session.scalars(
        select(FundGroup).join(user_fund_group, user_fund_group.c.group_id == FundGroup.id)
        .where(user_fund_group.c.user_id == user_id).order_by(FundGroup.name)))
    return {"user_id": user.id, "username": user.username,
            "all_funds": bool(row and row.all_funds), "groups": [g.name for g in groups],
            "group_ids": [g.id for g in groups]}


def list_user_access(session: Session) -> list[dict]:
    from flask_appbuilder.security.sqla.models import User

    all_funds = set(session.scalars(select(UserFundAccess.user_id)
                                    .where(UserFundAccess.all_funds.is_(True))))
    names = {g.id: g.name for g in session.scalars(select(FundGroup))}
    held: dict[int, list[str]] = {}
    for uid, gid in session.execute(select(user_fund_group.c.user_id, user_fund_group.c.group_id)):
        held.setdefault(uid, []).append(names[gid])
    return [{"user_id": u.id, "username": u.username, "name": f"{u.first_name} {u.last_name}",
             "all_funds": u.id in all_funds, "groups": sorted(held.get(u.id, []))}
            for u in session.scalars(select(User).order_by(User.username))]


def set_user_access(session: Session, user_id: int, *, all_funds: bool,
                    group_ids=()) -> dict:
    """Give a user "all funds" or not, and exactly the groups ``group_ids``; commits."""
    ids = set()
    for raw in group_ids or ():
        try:
            ids.add(int(raw))
        except (TypeError, ValueError):
            raise ValidationError("Unknown fund group.", {"groups": ["Unknown fund group."]}) \
                from None
    known = set(session.scalars(select(FundGroup.id).where(FundGroup.id.in_(ids)))) if ids \
        else set()
    if known != ids:
        raise ValidationError("Unknown fund group.", {"groups": ["Unknown fund group."]})
    after = _replace_access(session, user_id, bool(all_funds), ids, "user_fund_access.set")
    session.commit()
    return after


def _replace_access(session: Session, user_id: int, all_funds: bool, ids: set[int],
                    action: str) -> dict:
    """The user's access becomes exactly ``all_funds`` and the groups ``ids``; audited as
    ``action``; no commit."""
    before = user_access(session, user_id)
    row = session.get(UserFundAccess, user_id)
    if row is None:
        row = UserFundAccess(user_id=user_id)
        session.add(row)
    row.all_funds = all_funds
    row.updated_by = current_actor()
    from app.models.base import utcnow

    row.updated_at = utcnow()
    session.execute(delete(user_fund_group).where(user_fund_group.c.user_id == user_id))
    if ids:
        session.execute(insert(user_fund_group), [{"user_id": user_id, "group_id": g}
                                                  for g in sorted(ids)])
    session.flush()
    after = user_access(session, user_id)
    audit.record(session, action, "User", user_id,
                 {k: before[k] for k in ("all_funds", "groups")},
                 {k: after[k] for k in ("all_funds", "groups")})
    return after


#: in IMS_OIDC_FUND_GROUP_MAP, the fund-group name that stands for every fund
ALL_FUNDS_NAME = "*"


def apply_sso_fund_groups(session: Session, user, claimed_groups, fund_group_names) -> None:
    """Single sign-on (app/services/signin.py calls this inside each sign-on's transaction):
    the user's funds become those of the fund groups the provider's groups map to, afresh at
    every sign-in; "*" maps to all funds; names of groups that do not exist are ignored (the
    ``signin.sso`` event records what was claimed and mapped)."""
    names = set(fund_group_names or ())
    ids = set(session.scalars(select(FundGroup.id).where(
        FundGroup.name.in_(names - {ALL_FUNDS_NAME})))) if names - {ALL_FUNDS_NAME} else set()
    current = user_access(session, user.id)
    if current["all_funds"] == (ALL_FUNDS_NAME in names) and set(current["group_ids"]) == ids:
        return
    _replace_access(session, user.id, ALL_FUNDS_NAME in names, ids, "user_fund_access.sso")


def grant_all_funds(session: Session, user_id: int) -> None:
    """Seeds and tests: ``user_id`` holds all funds (no commit)."""
    row = session.get(UserFundAccess, user_id)
    if row is None:
        session.add(UserFundAccess(user_id=user_id, all_funds=True, updated_by=current_actor()))
    else:
        row.all_funds = True
    session.flush()


def users_holding(session: Session, fund_code: str, user_ids) -> set[int]:
    """Of ``user_ids``, those who hold fund ``fund_code`` (all funds, or a group with it)."""
    ids = set(user_ids)
    if not ids:
        return set()
    whole = set(session.scalars(select(UserFundAccess.user_id).where(
        UserFundAccess.user_id.in_(ids), UserFundAccess.all_funds.is_(True))))
    grouped = set(session.scalars(
        select(user_fund_group.c.user_id)
        .join(fund_group_fund, fund_group_fund.c.group_id == user_fund_group.c.group_id)
        .join(Fund, Fund.id == fund_group_fund.c.fund_id)
        .where(Fund.code == fund_code, user_fund_group.c.user_id.in_(ids))))
    return whole | grouped
