"""Fund scope: which funds the current user may see (fund groups, app/models/fund_group.py).

The one place every fund-scoped query asks. ``allowed_fund_codes()`` is None for a user with
"all funds" (and for work outside a signed-in request: the CLI, `ims tick`, the citizen portal),
else the frozen set of the codes of the funds of the user's groups (empty: no group). Queries
use ``restrict(stmt, column)``; a single record out of scope is ``require_fund(code)``, which
raises OutOfScope, a 404 (not 403: whether the record exists does not leak).

Central work (GL export, accounting periods, the trial balance, refund payment runs, the
clearing accounts' cash-up views) is for users with all funds: ``CENTRAL_PATHS`` lists it and
``install_scope`` refuses it to everyone else with 404, in one request hook, so a new central
page needs only its prefix here. The same hook refuses (404, before the view runs, so nothing is
saved) a FAB model view's add/edit form or a model API's post/put whose fund field names a fund
outside the user's scope: ``scope_fab_views`` notes those fields (``FUND_FIELDS``) for every
model view and API with a fund, so a new one is covered without code of its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from flask import g, has_request_context, request
from sqlalchemy import false, select
from werkzeug.exceptions import NotFound

from app.models.fund_group import UserFundAccess, fund_group_fund, user_fund_group
from app.models.reference import Fund

#: paths (prefixes) of central work, for users with all funds only
CENTRAL_PATHS = ("/periods", "/gl-exports", "/ledger/trial-balance", "/refund-payment-runs",
                 "/cash-ups", "/configuration-bundle", "/account-sync", "/accountholderprofileview",
                 "/audit", "/auditeventview",
                 "/api/v1/accounting-periods", "/api/v1/gl-exports", "/api/v1/ledger/trial-balance",
                 "/api/v1/cash-ups", "/api/v1/configuration-bundle", "/api/v1/account-syncs",
                 "/api/v1/account-holder-profiles", "/api/v1/audit",
                 # bank reconciliation (and its bank accounts), retention and subject access
                 "/reconciliation", "/bankaccountview", "/api/v1/reconciliation", "/api/v1/bank-accounts",
                 "/retention", "/subject-access", "/api/v1/retention", "/api/v1/subject-access",
                 # processing rules, bank profiles and fund reference patterns apply to every
                 # import, whatever the fund a row is for: a fund group's clerk may read them,
                 # not change them (a rule, or a pattern ".*" of their own fund's, could send
                 # another group's income to a fund of theirs)
                 *(f"/{view}/{op}" for view in ("processingruleview", "bankprofileview",
                                                "fundreferencepatternview")
                   for op in ("add", "edit", "delete", "action", "action_post")))
#: ...except these (a Cashier of a fund group still cashes up their own till)
CENTRAL_EXCEPTIONS = ("/cash-ups/new", "/api/v1/cash-ups/till")

_unscoped: ContextVar[bool] = ContextVar("ims_unscoped", default=False)


class OutOfScope(NotFound):
    """A record of a fund the user does not hold: 404, as if it did not exist."""


@contextmanager
def unscoped():
    """Run system work inside a request (escalation look-ups, postings' own checks) unscoped."""
    token = _unscoped.set(True)
    try:
        yield
    finally:
        _unscoped.reset(token)


def _current_user():
    if not has_request_context():
        return None
    from app.security.current import _user

    user = _user()
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


def codes_for_user(session, user_id: int) -> frozenset[str] | None:
    """The fund codes user ``user_id`` holds, or None when they hold all funds (kept by the
    worker's shared cache until fund access, groups or funds change)."""
    from app.services import sharedcache

    return sharedcache.get(session, ("fund_scope", user_id),
                           lambda: _read_codes_for_user(session, user_id))


def _read_codes_for_user(session, user_id: int) -> frozenset[str] | None:
    if session.scalar(select(UserFundAccess.all_funds).where(
            UserFundAccess.user_id == user_id)):
        return None
    return frozenset(session.scalars(
        select(Fund.code).join(fund_group_fund, fund_group_fund.c.fund_id == Fund.id)
        .join(user_fund_group, user_fund_group.c.group_id == fund_group_fund.c.group_id)
        .where(user_fund_group.c.user_id == user_id)))


def allowed_fund_codes() -> frozenset[str] | None:
    """The codes of the funds the current user may see; None = all funds."""
    if _unscoped.get():
        return None
    user = _current_user()
    if user is None:
        return None
    cached = g.get("_ims_fund_scope")
    if cached is not None and cached[0] == user.id:
        return cached[1]
    from app.extensions import db

    codes = codes_for_user(db.session, user.id)
    g._ims_fund_scope = (user.id, codes)
    return codes


def allowed_fund_ids() -> frozenset[int] | None:
    """The ids of the funds the current user may see; None = all funds."""
    codes = allowed_fund_codes()
    if codes is None:
        return None
    from app.extensions import db

    return frozenset(db.session.scalars(select(Fund.id).where(Fund.code.in_(codes)))) \
        if codes else frozenset()


def has_all_funds() -> bool:
    return allowed_fund_codes() is None


def scope_key() -> tuple[str, ...] | None:
    """A hashable key of the current scope (for caches of scoped figures): None = all funds."""
    codes = allowed_fund_codes()
    return None if codes is None else tuple(sorted(codes))


def fund_allowed(code: str | None) -> bool:
    codes = allowed_fund_codes()
    return codes is None or (code is not None and code in codes)


def require_fund(*codes: str | None) -> None:
    """OutOfScope (404) unless the current user holds every fund of ``codes``."""
    for code in codes:
        if not fund_allowed(code):
            raise OutOfScope()


def require_all_funds() -> None:
    """OutOfScope (404) unless the current user holds all funds (central work)."""
    if not has_all_funds():
        raise OutOfScope()


def restrict(stmt, column):
    """``stmt`` limited to rows whose fund code ``column`` is in the current user's scope."""
    codes = allowed_fund_codes()
    if codes is None:
        return stmt
    if not codes:
        return stmt.where(false())
    return stmt.where(column.in_(sorted(codes)))


def condition(column):
    """The WHERE condition ``restrict`` adds (None when there is none to add)."""
    codes = allowed_fund_codes()
    if codes is None:
        return None
    return column.in_(sorted(codes)) if codes else false()


def keep(rows, code_of=lambda r: r.fund_code):
    """The rows (already loaded) whose fund is in scope."""
    codes = allowed_fund_codes()
    if codes is None:
        return list(rows)
    return [r for r in rows if code_of(r) in codes]


def is_central_path(path: str) -> bool:
    if path.startswith(CENTRAL_EXCEPTIONS):
        return False
    return any(path == p or path.startswith(p.rstrip("/") + "/") or path.startswith(p + "?")
               for p in CENTRAL_PATHS)


def _request_user():
    """The signed-in user, or the user of the request's API token (read now: the endpoint's
    own check refuses a bad token later)."""
    if _current_user() is None and request.headers.get("Authorization"):
        from flask_jwt_extended import get_current_user, verify_jwt_in_request

        try:
            verify_jwt_in_request(optional=True)
            user = get_current_user()
        except Exception:  # noqa: BLE001 - refused by the endpoint itself
            return None
        if user is not None:
            g.user = user
    return _current_user()


def install_scope(app) -> None:
    """Central work for users with all funds only, and no FAB form or model API body naming a
    fund outside the user's scope (404 to the others)."""

    @app.before_request
    def central_work_for_all_funds():
        g.pop("_ims_fund_scope", None)  # worked out afresh for each request
        if is_central_path(request.path):
            if _request_user() is not None and not has_all_funds():
                raise OutOfScope()
            return
        if request.method in WRITE_METHODS and request.endpoint in FUND_FIELDS:
            if _request_user() is not None and not has_all_funds():
                require_submitted_funds(FUND_FIELDS[request.endpoint])


# -- FAB's model views and model APIs ----------------------------------------------------------

WRITE_METHODS = ("POST", "PUT", "PATCH")
#: endpoint of a FAB model view's add/edit form or a model API's post/put -> its fund fields,
#: (field name, "id" | "code"): a relation to Fund (the form or API gives the fund's id) or a
#: fund_code column (the fund's code). Filled by scope_fab_views.
FUND_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {}


def _submitted(name: str) -> list:
    """The values a form or a JSON body gives for field ``name``."""
    values = list(request.form.getlist(name)) if request.form else []
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and name in body:
        value = body[name]
        values.extend(value if isinstance(value, list) else [value])
    return values


def require_submitted_funds(fields) -> None:
    """OutOfScope (404, nothing saved) when the request's form or JSON body names a fund outside
    the user's scope in one of ``fields`` (any value not a fund of theirs: an unknown fund is as
    unknown as another group's, so neither leaks)."""
    codes = allowed_fund_codes()
    if codes is None:
        return
    ids = None
    for name, kind in fields:
        for value in _submitted(name):
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # no fund chosen: the form's own validation speaks
            if kind == "code":
                if not isinstance(value, str) or value.strip().upper() not in codes:
                    raise OutOfScope()
                continue
            if isinstance(value, dict):  # {"id": n} in some API bodies
                value = value.get("id")
            ids = allowed_fund_ids() if ids is None else ids
            text = str(value).strip()
            if isinstance(value, bool) or not text.isdigit() or int(text) not in ids:
                raise OutOfScope()


def _fund_fields(model, columns) -> tuple[tuple[str, str], ...]:
    from sqlalchemy import inspect as sa_inspect

    try:
        relations = {r.key for r in sa_inspect(model).relationships if r.mapper.class_ is Fund}
    except Exception:  # noqa: BLE001 - not a mapped class
        return ()
    return tuple((c, "id") if c in relations else (c, "code") for c in columns or ()
                 if c in relations or c == "fund_code")


def _register_fund_fields(view, model) -> None:
    """Note the fund fields of ``view``'s add and edit (a model view's forms, a model API's
    post and put) for the request hook of install_scope."""
    if model is Fund:  # a fund's own record: its pk is scoped by the base filter
        return
    endpoint = getattr(view, "endpoint", None) or type(view).__name__
    pairs = (("add", "add_columns"), ("edit", "edit_columns")) if hasattr(view, "add_form") \
        else (("post", "add_columns"), ("put", "edit_columns"))
    for method, attr in pairs:
        fields = _fund_fields(model, getattr(view, attr, None))
        if fields:
            FUND_FIELDS[f"{endpoint}.{method}"] = fields


def _fab_filter_class():
    from flask_appbuilder.models.filters import BaseFilter
    from sqlalchemy import or_

    class FundScopeFilter(BaseFilter):
        """Rows of the current user's funds (and, where the column is nullable, rows of no fund
        yet: unallocated suspense items stay visible to those who work suspense)."""

        name = "Fund scope"
        arg_name = None

        def apply(self, query, value):
            column = getattr(self.model, self.column_name)
            cond = condition(column)
            if cond is None:
                return query
            if value == "nullable":
                cond = or_(column.is_(None), cond)
            return query.filter(cond)

    return FundScopeFilter


def _scope_fund_choices(view, model, FundScopeFilter) -> None:
    """The fund drop-downs of a FAB view's add, edit and search forms (and a model API's
    related-field choices) offer the user's funds only."""
    from sqlalchemy import inspect as sa_inspect

    try:
        relations = [r.key for r in sa_inspect(model).relationships if r.mapper.class_ is Fund]
    except Exception:  # noqa: BLE001 - not a mapped class
        return
    if not relations:
        return
    from wtforms.fields.core import UnboundField

    for form_attr in ("add_form", "edit_form", "search_form"):
        form = getattr(view, form_attr, None)
        for key in relations:
            field = getattr(form, key, None) if form is not None else None
            if isinstance(field, UnboundField) and callable(field.kwargs.get("query_func")):
                field.kwargs["query_func"] = _scoped_choices(field.kwargs["query_func"])
    rule = [["code", FundScopeFilter, ""]]
    for attr in ("add_query_rel_fields", "edit_query_rel_fields"):  # model APIs
        if hasattr(view, attr) and not hasattr(view, "add_form"):
            fields = dict(getattr(view, attr) or {})
            for key in relations:
                fields.setdefault(key, rule)
            setattr(view, attr, fields)


def _scoped_choices(query_func):
    def choices():
        rows = query_func()
        codes = allowed_fund_codes()
        return rows if codes is None else [f for f in rows if f.code in codes]

    return choices


def scope_fab_views(appbuilder) -> list[str]:
    """Give every FAB model view and model API whose model has a fund (``fund_code``; Fund itself
    by ``code``) the fund-scope base filter: lists, show, edit and the API's get all go through
    it, so a record of another group's fund is a 404. Returns the names of the views scoped."""
    FundScopeFilter = _fab_filter_class()
    scoped = []
    for view in appbuilder.baseviews:
        datamodel = getattr(view, "datamodel", None)
        filters = getattr(view, "_base_filters", None)
        if datamodel is None or filters is None:
            continue
        model = datamodel.obj
        _scope_fund_choices(view, model, FundScopeFilter)
        _register_fund_fields(view, model)
        if model is Fund:
            column = "code"
        elif hasattr(model, "fund_code"):
            column = "fund_code"
        else:
            continue
        nullable = model.__table__.c[column].nullable
        filters.add_filter(column, FundScopeFilter, "nullable" if nullable else "")
        scoped.append(type(view).__name__)
    return scoped


# -- records that reach a fund through another record -------------------------------------------

#: the "fund" of central work (cash-ups, periods): held by users with all funds only
CENTRAL = "*central*"


def _codes_or_none(codes):
    return None if codes is None else sorted(codes)


def transaction_condition(id_column, codes=...):
    """``id_column`` (a transaction id) names a transaction of the user's funds; None: all."""
    from app.models.ledger import Transaction

    codes = allowed_fund_codes() if codes is ... else codes
    if codes is None:
        return None
    return id_column.in_(select(Transaction.id).where(Transaction.fund_code.in_(sorted(codes))))


def suspense_condition(item_model, codes=...):
    """Suspense items the user may see: unallocated ones (no fund) and those of their funds,
    and none that is allocated, even in part, to a fund of another group."""
    from sqlalchemy import and_, exists, or_

    from app.models.suspense_work import SuspenseAllocation, SuspenseAllocationLine

    codes = allowed_fund_codes() if codes is ... else codes
    if codes is None:
        return None
    codes = sorted(codes)
    other = exists(select(SuspenseAllocationLine.id)
                   .join(SuspenseAllocation,
                         SuspenseAllocation.id == SuspenseAllocationLine.allocation_id)
                   .where(SuspenseAllocation.suspense_item_id == item_model.id,
                          SuspenseAllocation.status != "rejected",
                          SuspenseAllocationLine.fund_code.not_in(codes)))
    return and_(or_(item_model.fund_code.is_(None), item_model.fund_code.in_(codes)), ~other)


def suspense_item_allowed(session, item) -> bool:
    cond = suspense_condition(type(item))
    if cond is None:
        return True
    return bool(session.scalar(select(type(item).id).where(type(item).id == item.id, cond)))


def write_off_condition(model, codes=...):
    from sqlalchemy import or_

    from app.models.suspense import SuspenseItem

    codes = allowed_fund_codes() if codes is ... else codes
    if codes is None:
        return None
    return or_(model.transaction_id.is_not(None) & model.fund_code.in_(sorted(codes)),
               model.suspense_item_id.in_(select(SuspenseItem.id).where(
                   suspense_condition(SuspenseItem, codes))))


def items_allowed(items_json: str | None) -> bool:
    """A basket's items (card payments, payment requests) are all of the user's funds."""
    import json

    codes = allowed_fund_codes()
    if codes is None:
        return True
    try:
        items = json.loads(items_json or "[]")
    except ValueError:
        return False
    return all(isinstance(i, dict) and i.get("fund_code") in codes for i in items)


def subject_funds(session, subject_type: str, subject_id) -> set[str] | None:
    """The funds a workflow's subject is about (None: it is about no fund, e.g. a workflow
    definition change; {CENTRAL}: central work)."""
    from app.models.ledger import Transaction

    try:
        sid = int(subject_id)
    except (TypeError, ValueError):
        sid = None
    if subject_type == "refund" and sid is not None:
        from app.models.refund import Refund

        code = session.scalar(select(Transaction.fund_code)
                              .join(Refund, Refund.transaction_id == Transaction.id)
                              .where(Refund.id == sid))
        return {code} if code else set()
    if subject_type == "write_off" and sid is not None:
        from app.models.suspense import SuspenseItem
        from app.models.suspense_work import WriteOff

        wo = session.get(WriteOff, sid)
        if wo is None:
            return set()
        if wo.transaction_id is not None:
            return {wo.fund_code}
        item = session.get(SuspenseItem, wo.suspense_item_id) if wo.suspense_item_id else None
        return {item.fund_code} if item is not None and item.fund_code else set()
    if subject_type == "suspense_allocation" and sid is not None:
        from app.models.suspense_work import SuspenseAllocationLine

        return set(session.scalars(select(SuspenseAllocationLine.fund_code).where(
            SuspenseAllocationLine.allocation_id == sid)))
    if subject_type in ("cash_up", "period_close"):
        return {CENTRAL}
    return None


def subject_allowed(session, subject_type: str, subject_id, codes=...) -> bool:
    codes = allowed_fund_codes() if codes is ... else codes
    if codes is None:
        return True
    funds = subject_funds(session, subject_type, subject_id)
    return funds is None or funds <= set(codes)


def notification_condition(model, codes=...):
    """Notifications a user of ``codes`` may see: those about no fund, and those about funds
    they all hold (a notification's funds: app/models/notification.py NotificationFund)."""
    from sqlalchemy import exists

    from app.models.notification import NotificationFund

    codes = allowed_fund_codes() if codes is ... else codes
    if codes is None:
        return None
    other = select(NotificationFund.notification_id).where(
        NotificationFund.notification_id == model.id)
    if codes:
        other = other.where(NotificationFund.fund_code.not_in(sorted(codes)))
    return ~exists(other)


def codes_for_username(session, username: str) -> frozenset[str] | None:
    """The fund codes the user named holds (None: all funds)."""
    from flask_appbuilder.security.sqla.models import User

    row = session.execute(select(User.id, UserFundAccess.all_funds)
                          .outerjoin(UserFundAccess, UserFundAccess.user_id == User.id)
                          .where(User.username == username)).first()
    # no such user: no scope to apply (the workflow's own checks refuse one without roles)
    if row is None or row.all_funds:
        return None
    return frozenset(session.scalars(
        select(Fund.code).join(fund_group_fund, fund_group_fund.c.fund_id == Fund.id)
        .join(user_fund_group, user_fund_group.c.group_id == fund_group_fund.c.group_id)
        .where(user_fund_group.c.user_id == row.id)))


def subject_allowed_for(session, subject_type: str, subject_id, username: str) -> bool:
    """``subject_allowed`` for the user named (not the signed-in one): whether they hold every
    fund of the subject. The user's funds are read only for a subject about some fund."""
    funds = subject_funds(session, subject_type, subject_id)
    if not funds:
        return True
    codes = codes_for_username(session, username)
    return codes is None or funds <= codes


def lane_for_funds(session, subject_type: str, subject_id, role: str) -> str:
    """The role a new approval task goes to: ``role``, unless no active user of that role holds
    the subject's funds, when it escalates to the Head of Finance."""
    from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

    from app.security.roles import HEAD
    from app.services.fund_groups import users_holding

    if role == HEAD:
        return role
    funds = subject_funds(session, subject_type, subject_id)
    if not funds:
        return role
    ids = set(session.scalars(
        select(User.id).join(assoc_user_role, assoc_user_role.c.user_id == User.id)
        .join(Role, Role.id == assoc_user_role.c.role_id)
        .where(Role.name == role, User.active.is_(True))))
    for code in funds:
        if code == CENTRAL:  # central work: users with all funds
            ids = set(session.scalars(select(UserFundAccess.user_id).where(
                UserFundAccess.user_id.in_(ids), UserFundAccess.all_funds.is_(True)))) \
                if ids else set()
        else:
            ids = users_holding(session, code, ids)
    return role if ids else HEAD
