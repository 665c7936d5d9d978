"""IMS security manager: FAB database auth, with these changes to FAB's defaults:

* the API login is rate-limited like the form (and so is changing one's own password);
* roles and permissions are read-only in the UI and the API: they are code
  (app/security/roles.py), applied only by `ims sync-roles`. Users and the roles given to them
  stay editable by Administrators;
* a browser session lives on the server too (app/security/sessions.py): logout ends it for good;
* changing one's own password asks for the current one;
* the login form's ``next`` leads only to a page of this site;
* a bad, forged or expired API token is a 401 with the API's error shape;
* permission checks read a request's roles' permissions once (one query, not one per check).
"""

import time

from flask import abort, current_app, flash, g, jsonify, redirect, request, session, url_for
from flask_appbuilder._compat import as_unicode
from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.security import views as fab_views
from flask_appbuilder.api import safe
from flask_appbuilder.security.api import SecurityApi
from flask_appbuilder.security.decorators import has_access, no_cache
from flask_appbuilder.security.sqla import apis as fab_apis
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import assoc_permissionview_role
from flask_appbuilder.utils.limit import Limit
from flask_appbuilder.validators import PasswordComplexityValidator
from flask_appbuilder.views import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter.util import get_remote_address
from flask_login import login_user, user_logged_in, user_logged_out
from werkzeug.security import check_password_hash
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, ValidationError

from app.domain.errors import ValidationError as DomainValidationError
from app.security import sessions
from app.security.redirects import local_path

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_MESSAGE = ("Roles and permissions are defined in code (app/security/roles.py) and "
                     "changed only by `ims sync-roles`; assign roles to users instead.")


#: where a request keeps the (permission, view) pairs of the roles it checked
_PERMISSION_CACHE = "_ims_role_permissions"
#: the permission pairs' queries, built once (by kind and role model)
_PAIRS_QUERIES: dict = {}



def _forget_permissions() -> None:
    g.pop(_PERMISSION_CACHE, None)

def _login_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


#: why an API token by password was refused, in words (API answers are English)
API_REFUSALS = {
    "sso_user": "This user signs in through single sign-on and cannot get an API token with a "
                "password; integrations use service accounts.",
    "two_factor_user": "This user signs in with two-factor authentication and cannot get an API "
                       "token with a password; integrations use service accounts.",
    "local_passwords_off": "Sign-in with local passwords is switched off; integrations use "
                           "service accounts.",
}


class ImsSecurityApi(SecurityApi):
    """`/api/v1/security/login` with the same rate limit as the login form; users who must use
    two-factor sign-in or single sign-on get no token with a password (401, audited)."""

    limits = [Limit(limit_value=_login_limit, key_func=get_remote_address, methods=("POST",),
                    error_message="Too many login attempts; wait and try again.")]

    @expose("/login", methods=["POST"])
    @safe
    def login(self):
        g._ims_api_login = True
        try:
            response = super().login()
        finally:
            g.pop("_ims_api_login", None)
        refusal = g.pop("_ims_api_refusal", None)
        if refusal:
            return self.response(401, message=API_REFUSALS.get(refusal, refusal))
        return response

    login.__doc__ = SecurityApi.login.__doc__  # FAB's OpenAPI description of the endpoint


def _without_download(view_cls):
    """Drop two routes from FAB's security CRUD views: `download`, never used (it fails with a 500
    on any filename), and `delete`, which FAB accepts by GET (a cross-site link could delete a
    user). Users are deactivated instead, which keeps their audit history meaningful."""
    excluded = set(getattr(view_cls, "exclude_route_methods", None) or ()) | {"download", "delete"}
    return type(view_cls.__name__, (view_cls,), {"exclude_route_methods": excluded})


# --------------------------------------------------------------------------- read-only roles
def _read_only_view(view_cls):
    """FAB's role or permission pages with only their list and show pages usable: every other
    route (add, edit, actions) answers 403 whatever the database grants, as FAB's own
    permission pages already do for add and edit (has_access refuses a permission missing from
    base_permissions). The permissions they drop are no longer created by `ims sync-roles`."""

    @expose("/action/<string:name>/<pk>", methods=["GET", "POST"])
    @has_access
    def action(self, name, pk):
        abort(403)

    @expose("/action_post", methods=["POST"])
    @has_access
    def action_post(self):
        abort(403)

    reads = [p for p in (view_cls.base_permissions or ("can_list", "can_show"))
             if p in ("can_list", "can_show")]
    base = _without_download(view_cls)
    return type(view_cls.__name__, (base,), {
        "base_permissions": reads, "action": action, "action_post": action_post,
        # FAB's "Copy Role" list action: without it no action is offered
        "copy_role": None})


class _ReadOnlyApi:
    """A refusal that says why, for the writes of a read-only security API."""

    def response_403(self):
        if request.method not in SAFE_METHODS:
            return self.response(403, message=READ_ONLY_MESSAGE)
        return super().response_403()


def _read_only_api(api_cls, *extra_reads: str):
    """FAB's role or permission API with its reads only: every POST, PUT and DELETE (including
    a role's permissions, users and groups) answers 403, because @protect refuses a permission
    missing from base_permissions before it looks at the database. FAB ships PermissionApi
    without write routes at all (405); ours lists them like the others, so that every write to
    roles and permissions is refused the same way."""
    reads = ["can_get", "can_info", *extra_reads]
    return type(api_cls.__name__, (_ReadOnlyApi, api_cls), {
        "base_permissions": reads, "include_route_methods": None})


# --------------------------------------------------------------------------- own password
class ResetMyPasswordForm(DynamicForm):
    """Change one's own password: the current one first, so that a borrowed or stolen session
    cannot take the account over."""

    current_password = PasswordField(_l("Current password"), validators=[DataRequired()],
                                     widget=BS3PasswordFieldWidget())
    password = PasswordField(_l("Password"), validators=[DataRequired(),
                                                         PasswordComplexityValidator()],
                             widget=BS3PasswordFieldWidget())
    conf_password = PasswordField(
        _l("Confirm Password"), description=_l("Please rewrite the password to confirm"),
        validators=[EqualTo("password", message=_l("Passwords must match"))],
        widget=BS3PasswordFieldWidget())

    def validate_current_password(self, field):
        user = current_app.appbuilder.sm.get_user_by_id(g.user.id)
        if user is None or not user.password or not check_password_hash(user.password,
                                                                         field.data or ""):
            raise ValidationError(_l("The current password is not correct."))

    def validate_password(self, field):
        user = current_app.appbuilder.sm.get_user_by_id(g.user.id)
        if user is not None and user.password and field.data \
                and check_password_hash(user.password, field.data):
            raise ValidationError(_l("Choose a new password that differs from the current one."))


class ResetMyPasswordView(fab_views.ResetMyPasswordView):
    """Same page and permissions as FAB's; asks for the current password and keeps the user
    signed in here while ending their other sessions."""

    form = ResetMyPasswordForm

    def form_post(self, form) -> None:
        self.appbuilder.sm.reset_password(g.user.id, form.password.data)
        sessions.start(g.user.id)
        flash(as_unicode(self.message), "info")


# --------------------------------------------------------------------------- login
#: the session key of a sign-in waiting for its second factor: {"user_id", "at", "next"}
PENDING_KEY = "_ims_pending_2fa"
#: Set in the session of a user signed in through the identity provider: logout goes on there.
SSO_SIGNED_IN = "_ims_sso"
PENDING_SECONDS = 300


class AuthDBView(fab_views.AuthDBView):
    """The login page: local passwords (unless IMS_LOCAL_PASSWORDS is off) with a second factor
    for the users who need one, and single sign-on by OpenID Connect when configured. The
    redirect after login goes only to a page of this site (FAB's own check lets
    ``/\\evil.example`` through, which browsers read as another host)."""

    login_template = "ims/login.html"

    def _next_url(self) -> str:
        return local_path(request.args.get("next", "")) or self.appbuilder.get_url_for_index

    def _render_login(self, form):
        from app.security import oidc

        if session.pop("_ims_idle_ended", None):
            flash(_("Your session ended after a time without activity: sign in again."), "info")
        return self.render_template(
            self.login_template, title=self.title, form=form, appbuilder=self.appbuilder,
            local_passwords=current_app.config.get("IMS_LOCAL_PASSWORDS", True),
            sso_enabled=oidc.enabled(), sso_label=oidc.button_label(),
            next_url=local_path(request.args.get("next", "")))

    @expose("/login/", methods=["GET", "POST"])
    @no_cache
    def login(self):
        from app.extensions import db
        from app.services import signin

        if g.user is not None and g.user.is_authenticated:
            return redirect(self._next_url())
        form = fab_views.LoginForm_db()
        if not form.validate_on_submit():
            return self._render_login(form)
        next_url = self._next_url()
        if not current_app.config.get("IMS_LOCAL_PASSWORDS", True):
            signin.record_signin(db.session, method=signin.PASSWORD, outcome="refused",
                                 username=form.username.data, detail="local_passwords_off")
            flash(_("Sign-in with a password is switched off: use single sign-on."), "warning")
            return redirect(self.appbuilder.get_url_for_login_with(next_url))
        user = self.appbuilder.sm.auth_user_db(form.username.data, form.password.data)
        if not user:
            known = self.appbuilder.sm.find_user(username=form.username.data)
            signin.record_signin(db.session, method=signin.PASSWORD, outcome="refused",
                                 user=known, username=form.username.data,
                                 detail="wrong_password")
            flash(as_unicode(self.invalid_login_message), "warning")
            return redirect(self.appbuilder.get_url_for_login_with(next_url))
        refusal = signin.form_login_refusal(db.session, user)
        if refusal:
            signin.record_signin(db.session, method=signin.PASSWORD, outcome="refused",
                                 user=user, detail=refusal)
            flash(_("This account cannot sign in here with a password."), "warning")
            return redirect(self.appbuilder.get_url_for_login_with(next_url))
        if signin.totp_required(db.session, user):
            session[PENDING_KEY] = {"user_id": user.id, "at": int(time.time()),
                                    "next": next_url}
            return redirect(url_for(self.endpoint + ".two_factor"))
        login_user(user, remember=False)
        signin.record_signin(db.session, method=signin.PASSWORD, outcome="ok", user=user)
        return redirect(next_url)

    def _pending_user(self):
        pending = session.get(PENDING_KEY)
        if not isinstance(pending, dict) or not isinstance(pending.get("user_id"), int) \
                or time.time() - float(pending.get("at") or 0) > PENDING_SECONDS:
            session.pop(PENDING_KEY, None)
            return None, None
        user = self.appbuilder.sm.get_user_by_id(pending["user_id"])
        if user is None or not user.is_active:
            session.pop(PENDING_KEY, None)
            return None, None
        return user, local_path(pending.get("next")) or self.appbuilder.get_url_for_index

    @expose("/login/two-factor/", methods=["GET", "POST"])
    @no_cache
    def two_factor(self):
        """The second step of a password sign-in: a code from the authenticator app or a
        recovery code; or, for a user whose role requires two-factor sign-in and who has not
        set it up, setting it up now."""
        from app.extensions import db
        from app.services import signin

        user, next_url = self._pending_user()
        if user is None:
            flash(_("Sign in again."), "warning")
            return redirect(self.appbuilder.get_url_for_login)
        error = None
        if not signin.totp_enabled(db.session, user):
            return self._two_factor_setup(user, next_url)
        if request.method == "POST":
            try:
                signin.check_second_factor(db.session, user, request.form.get("code", ""))
            except signin.SigninRefused as exc:
                error = (_("Too many wrong codes: wait a few minutes and try again.")
                         if exc.reason == "locked" else
                         _("That recovery code has already been used.")
                         if exc.reason == "recovery_code_reused" else
                         _("The code is not correct."))
            else:
                session.pop(PENDING_KEY, None)
                login_user(user, remember=False)
                return redirect(next_url)
        return self.render_template("ims/login_two_factor.html", appbuilder=self.appbuilder,
                                    title=_("Two-factor sign-in"), error=error,
                                    setup=None), 200 if error is None else 401

    def _two_factor_setup(self, user, next_url):
        from app.extensions import db
        from app.services import signin

        p = signin.profile(db.session, user.id)
        error = None
        if request.method == "POST" and p is not None and p.totp_secret:
            try:
                codes = signin.confirm_totp_setup(db.session, user, request.form.get("code", ""))
            except DomainValidationError:
                signin.record_signin(db.session, method=signin.TOTP, outcome="refused",
                                     user=user, detail="wrong_setup_code")
                error = _("The code is not correct.")
            else:
                session.pop(PENDING_KEY, None)
                login_user(user, remember=False)
                signin.record_signin(db.session, method=signin.TOTP, outcome="ok", user=user)
                return self.render_template("ims/recovery_codes.html", appbuilder=self.appbuilder,
                                            title=_("Recovery codes"), codes=codes,
                                            next_url=next_url)
        if p is None or not p.totp_secret:
            secret = signin.start_totp_setup(db.session, user)
        else:
            secret = signin.totp_secret(p)
        return self.render_template(
            "ims/login_two_factor.html", appbuilder=self.appbuilder,
            title=_("Set up two-factor sign-in"), error=error,
            setup={"secret": secret, "uri": signin.provisioning_uri(user, secret),
                   "qr": signin.qr_code_data_uri(signin.provisioning_uri(user, secret))}
        ), 200 if error is None else 401

    # ----------------------------------------------------------------------- single sign-on
    @expose("/login/sso/")
    @no_cache
    def sso(self):
        from app.security import oidc

        if not oidc.enabled():
            abort(404)
        nxt = local_path(request.args.get("next", ""))
        if nxt:
            session["_ims_sso_next"] = nxt
        redirect_uri = url_for(self.endpoint + ".sso_callback", _external=True)
        try:
            return oidc.client().authorize_redirect(redirect_uri)
        except Exception:  # noqa: BLE001 - the provider is down or its metadata is wrong
            current_app.logger.exception("single sign-on: the provider cannot be reached")
            flash(_("Single sign-on is not available just now; try again later."), "danger")
            return redirect(self.appbuilder.get_url_for_login)

    @expose("/login/sso/callback")
    @no_cache
    def sso_callback(self):
        from app.extensions import db
        from app.security import oidc
        from app.services import signin

        if not oidc.enabled():
            abort(404)
        try:
            token = oidc.client().authorize_access_token()
            claims = token.get("userinfo")
            if not claims:
                raise ValueError("no ID token")
        except Exception as exc:  # noqa: BLE001 - every failure is a refusal, audited
            db.session.rollback()
            reason = type(exc).__name__
            detail = getattr(exc, "error", None) or getattr(exc, "description", None) or ""
            signin.record_signin(db.session, method=signin.SSO, outcome="refused",
                                 detail=f"{reason}: {detail}"[:200])
            flash(_("Single sign-on failed: sign in again."), "danger")
            return redirect(self.appbuilder.get_url_for_login)
        try:
            result = signin.sso_sign_in(db.session, dict(claims))
        except signin.SigninRefused as exc:
            flash(_("Your account may not sign in to the IMS; ask an Administrator.")
                  if exc.reason != "inactive" else _("This account is disabled."), "danger")
            return redirect(self.appbuilder.get_url_for_login)
        login_user(result.user, remember=False)
        session[SSO_SIGNED_IN] = True
        return redirect(local_path(session.pop("_ims_sso_next", None))
                        or self.appbuilder.get_url_for_index)

    @expose("/logout/")
    def logout(self):
        """Sign out of the IMS; a user who signed in through the provider is then sent on to the
        provider's own sign-out (OpenID Connect RP-initiated logout, when its metadata names an
        end_session_endpoint), which sends them back to the IMS's login page, so a shared
        counter PC is not left signed in at the council's identity provider."""
        from app.security import oidc

        via_sso = session.pop(SSO_SIGNED_IN, False)
        response = super().logout()
        if via_sso and oidc.enabled():
            url = oidc.end_session_url(url_for(self.endpoint + ".login", _external=True))
            if url:
                return redirect(url)
        return response


class ApiUser:
    """The user of an API token as the request sees it (``g.user``): id, username, names,
    email, whether active, roles and groups (with their roles), copied from the ORM user. Kept
    between requests by the shared cache, so it is read-only; any other attribute reads the
    ORM user (``full``) of the request's session."""

    __slots__ = ("id", "username", "first_name", "last_name", "email", "active", "roles",
                 "groups", "__weakref__")

    is_authenticated = True
    is_anonymous = False

    @classmethod
    def of(cls, user) -> "ApiUser":
        from app.services.sharedcache import snapshot

        me = object.__new__(cls)
        for name in ("id", "username", "first_name", "last_name", "email", "active"):
            object.__setattr__(me, name, getattr(user, name))
        # lists, as FAB's get_user_roles adds them up (user.roles + groups' roles)
        object.__setattr__(me, "roles", [snapshot(r) for r in user.roles])
        object.__setattr__(me, "groups", [snapshot(gr, {"roles": None}) for gr in user.groups])
        return me

    def __setattr__(self, name, value):
        raise AttributeError("The API user of a request is read-only.")

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def get_id(self) -> str:
        return str(self.id)

    def full(self):
        """The ORM user, read in the request's session."""
        return current_app.appbuilder.sm.get_user_by_id(self.id)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full(), name)

    def __eq__(self, other) -> bool:
        return getattr(other, "id", None) == self.id and hasattr(other, "username") \
            and other.username == self.username

    def __hash__(self) -> int:
        return hash(("ApiUser", self.id))

    def __repr__(self) -> str:
        return self.username


def _token_refused(message: str):
    return jsonify(message=message), 401


class ImsSecurityManager(SecurityManager):
    security_api = ImsSecurityApi
    authdbview = AuthDBView
    resetmypasswordview = ResetMyPasswordView
    userdbmodelview = _without_download(SecurityManager.userdbmodelview)
    rolemodelview = _read_only_view(SecurityManager.rolemodelview)
    groupmodelview = _without_download(SecurityManager.groupmodelview)
    permissionmodelview = _read_only_view(SecurityManager.permissionmodelview)
    viewmenumodelview = _read_only_view(SecurityManager.viewmenumodelview)
    permissionviewmodelview = _read_only_view(SecurityManager.permissionviewmodelview)
    registerusermodelview = _without_download(SecurityManager.registerusermodelview)
    userstatschartview = None  # FAB's login-count chart 500s on a bad group_by; not needed
    # FAB's GroupApi searches its dotted list columns ("roles.name", "users.id"...), which no
    # filter supports: FAB warned "Filter type not supported for column" five times at start-up
    group_api = type("GroupApi", (fab_apis.GroupApi,), {
        "search_columns": ["id", "name", "label", "description", "roles", "users"]})
    role_api = _read_only_api(fab_apis.RoleApi, "can_list_role_permissions")
    permission_api = _read_only_api(fab_apis.PermissionApi)
    view_menu_api = _read_only_api(fab_apis.ViewMenuApi)
    permission_view_menu_api = _read_only_api(fab_apis.PermissionViewMenuApi)

    @property
    def auth_rate_limit(self):
        """A callable, so the limit follows the config at request time (form login)."""
        return _login_limit

    # ----------------------------------------------------------------------- permission checks
    def exist_permission_on_roles(self, view_name: str, permission_name: str,
                                  role_ids: list[int]) -> bool:
        """Whether any of the roles holds the permission: FAB asks once per menu entry, button
        and endpoint (30-odd EXISTS queries a page); this reads all the roles' (permission, view)
        pairs in one query and answers the request's other checks from them. The pairs live on
        ``g`` for one request (cleared as each request starts) and in the worker's shared cache
        (app/services/sharedcache.py) while the database's cache version stands: a change made
        by `ims sync-roles` or to a user's roles counts from the next request."""
        return (permission_name, view_name) in self.permissions_of_roles(role_ids)

    def get_public_permissions(self):
        """The Public role's permissions (none: roles.py gives it nothing), read once a request
        though FAB asks before every check whether the item is public."""
        cache = g.setdefault(_PERMISSION_CACHE, {})
        if "public" not in cache:
            cache["public"] = list(super().get_public_permissions() or [])
        return cache["public"]

    def is_item_public(self, permission_name, view_name):
        """Whether the Public role holds the permission: FAB asks before every check (and
        @protect before reading the token); the Public role's (permission, view) pairs are read
        in one query, once a request."""
        return (permission_name, view_name) in self.public_pairs()

    def public_pairs(self) -> frozenset[tuple[str, str]]:
        cache = g.setdefault(_PERMISSION_CACHE, {})
        pairs = cache.get("public_pairs")
        if pairs is None:
            from app.services import sharedcache

            name = self.auth_role_public
            pairs = cache["public_pairs"] = sharedcache.get(
                self.session, ("public_pairs", name), lambda: frozenset(self.session.execute(
                    self._pairs_query("public"), {"name": name}).tuples()))
        return pairs

    def _pairs_query(self, which: str):
        """The (permission, view) pairs of roles by ids ("ids") or of the role named ("public"):
        built once, so SQLAlchemy compiles it once."""
        cached = _PAIRS_QUERIES.get((which, self.role_model))
        if cached is not None:
            return cached
        from sqlalchemy import bindparam, select

        pv, pvr = self.permissionview_model, assoc_permissionview_role
        q = (select(self.permission_model.name, self.viewmenu_model.name).select_from(pv)
             .join(pvr, pv.id == pvr.c.permission_view_id)
             .join(self.permission_model, self.permission_model.id == pv.permission_id)
             .join(self.viewmenu_model, self.viewmenu_model.id == pv.view_menu_id))
        if which == "public":
            q = q.join(self.role_model, self.role_model.id == pvr.c.role_id).where(
                self.role_model.name == bindparam("name"))
        else:
            q = q.where(pvr.c.role_id.in_(bindparam("ids", expanding=True)))
        _PAIRS_QUERIES[(which, self.role_model)] = q
        return q

    def permissions_of_roles(self, role_ids) -> frozenset[tuple[str, str]]:
        key = frozenset(role_ids)
        cache = g.setdefault(_PERMISSION_CACHE, {})
        pairs = cache.get(key)
        if pairs is None:
            from app.services import sharedcache

            pairs = cache[key] = sharedcache.get(
                self.session, ("role_pairs", key), lambda: frozenset(self.session.execute(
                    self._pairs_query("ids"), {"ids": sorted(key)}).tuples()))
        return pairs

    def register_views(self):
        super().register_views()
        for view in self.appbuilder.baseviews:
            if isinstance(view, ResetMyPasswordView) and self.is_auth_limited:
                # guessing the current password is limited like guessing it at login
                self.limiter.limit(self.auth_rate_limit, methods=["POST"])(view.blueprint)

    # ----------------------------------------------------------------------- API tokens' users
    def load_user_jwt(self, _jwt_header, jwt_data):
        """The user an API token names (active users only), with their roles and groups' roles:
        the permission check and the services read them next. An ``ApiUser``, a read-only copy
        kept in the worker's shared cache (app/services/sharedcache.py) until the user, their
        roles or groups change; read in one query when not kept."""
        try:
            user_id = int(jwt_data["sub"])
        except (KeyError, TypeError, ValueError):
            return None
        from app.services import sharedcache

        user = sharedcache.get(self.session, ("api_user", user_id),
                               lambda: self._api_user(user_id))
        if user is not None and user.is_active:
            g.user = user  # as FAB's own loader does
            return user
        return None

    def _api_user(self, user_id: int):
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        user_model, group_model = self.user_model, self.group_model
        user = self.session.scalars(
            select(user_model).where(user_model.id == user_id).options(
                joinedload(user_model.roles),
                joinedload(user_model.groups).joinedload(group_model.roles))
        ).unique().first()
        return ApiUser.of(user) if user is not None else None

    # ----------------------------------------------------------------------- sessions
    def create_login_manager(self, app):
        lm = super().create_login_manager(app)
        lm.user_loader(self.load_session_user)
        # FAB passes current_app; signals are sent by (and matched against) the app itself
        flask_app = app._get_current_object() if hasattr(app, "_get_current_object") else app
        user_logged_in.connect(sessions.on_login, flask_app)
        user_logged_out.connect(sessions.on_logout, flask_app)
        # before any other hook may check a permission: each request reads roles afresh
        # (an app context, and so ``g``, can outlive one request: test clients, CLI)
        flask_app.before_request_funcs.setdefault(None, []).insert(0, _forget_permissions)
        return lm

    def load_session_user(self, pk):
        """The user of a browser session, only while the session is live on the server."""
        try:
            user_id = int(pk)
        except (TypeError, ValueError):
            return None
        if not sessions.is_live(user_id) or sessions.idle_expired():
            return None
        return self.load_user(user_id)

    def auth_user_db(self, username, password):
        """FAB's check of a password; an API login (``/api/v1/security/login``) is refused to
        users who must use two-factor sign-in or single sign-on (recorded, audited)."""
        user = super().auth_user_db(username, password)
        if g.get("_ims_api_login"):
            from app.extensions import db
            from app.services import signin

            refusal = signin.password_token_refusal(db.session, user) if user else None
            if not user:
                refusal = None
                if not current_app.config.get("IMS_LOCAL_PASSWORDS", True):
                    refusal = "local_passwords_off"
            if refusal:
                g._ims_api_refusal = refusal
                signin.record_signin(db.session, method=signin.API, outcome="refused",
                                     user=user, username=username, detail=refusal)
                return None
            if user:
                signin.record_signin(db.session, method=signin.API, outcome="ok", user=user)
        return user

    def reset_password(self, userid, password):
        """Set a password (own change or an administrator's reset) and end the user's sessions:
        whoever held one must sign in with the new password."""
        super().reset_password(userid, password)
        sessions.end_all(userid)

    # ----------------------------------------------------------------------- API tokens
    def create_jwt_manager(self, app):
        """Every refused token is a 401 {"message"} (flask-jwt-extended answers a malformed or
        forged one with 422 {"msg"})."""
        jwt = super().create_jwt_manager(app)
        jwt.invalid_token_loader(lambda reason: _token_refused(
            "The access token is not valid; log in again at /api/v1/security/login."))
        jwt.unauthorized_loader(lambda reason: _token_refused(
            "Log in at /api/v1/security/login and send Authorization: Bearer <access token>."))
        jwt.expired_token_loader(lambda header, data: _token_refused(
            "The access token has expired; log in again."))
        jwt.revoked_token_loader(lambda header, data: _token_refused(
            "The access token has been revoked; log in again."))
        jwt.needs_fresh_token_loader(lambda header, data: _token_refused(
            "A fresh access token is needed; log in again."))
        jwt.user_lookup_error_loader(lambda header, data: _token_refused(
            "The access token's user does not exist or is inactive."))
        jwt.token_verification_failed_loader(lambda header, data: _token_refused(
            "The access token was refused."))
        return jwt
