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

from flask import abort, current_app, flash, g, jsonify, redirect, request
from flask_appbuilder._compat import as_unicode
from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.security import views as fab_views
from flask_appbuilder.security.api import SecurityApi
from flask_appbuilder.security.decorators import has_access, no_cache
from flask_appbuilder.security.sqla import apis as fab_apis
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import assoc_permissionview_role
from flask_appbuilder.utils.limit import Limit
from flask_appbuilder.validators import PasswordComplexityValidator
from flask_appbuilder.views import expose
from flask_babel import lazy_gettext as _l
from flask_limiter.util import get_remote_address
from flask_login import user_logged_in, user_logged_out
from werkzeug.security import check_password_hash
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, ValidationError

from app.security import sessions
from app.security.redirects import local_path

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_MESSAGE = ("Roles and permissions are defined in code (app/security/roles.py) and "
                     "changed only by `ims sync-roles`; assign roles to users instead.")


#: where a request keeps the (permission, view) pairs of the roles it checked
_PERMISSION_CACHE = "_ims_role_permissions"



def _forget_permissions() -> None:
    g.pop(_PERMISSION_CACHE, None)

def _login_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


class ImsSecurityApi(SecurityApi):
    """`/api/v1/security/login` with the same rate limit as the login form."""

    limits = [Limit(limit_value=_login_limit, key_func=get_remote_address, methods=("POST",),
                    error_message="Too many login attempts; wait and try again.")]


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
class AuthDBView(fab_views.AuthDBView):
    """FAB's login form; its redirect after login goes only to a page of this site (FAB's own
    check lets ``/\\evil.example`` through, which browsers read as another host)."""

    @expose("/login/", methods=["GET", "POST"])
    @no_cache
    def login(self):
        response = super().login()
        if 300 <= getattr(response, "status_code", 200) < 400 \
                and local_path(response.location) is None:
            return redirect(self.appbuilder.get_url_for_index)
        return response


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
        ``g`` for one request (cleared as each request starts), so a change made by
        `ims sync-roles` or to a user's roles counts from the next request."""
        return (permission_name, view_name) in self.permissions_of_roles(role_ids)

    def get_public_permissions(self):
        """The Public role's permissions (none: roles.py gives it nothing), read once a request
        though FAB asks before every check whether the item is public."""
        cache = g.setdefault(_PERMISSION_CACHE, {})
        if "public" not in cache:
            cache["public"] = list(super().get_public_permissions() or [])
        return cache["public"]

    def permissions_of_roles(self, role_ids) -> frozenset[tuple[str, str]]:
        key = frozenset(role_ids)
        cache = g.setdefault(_PERMISSION_CACHE, {})
        pairs = cache.get(key)
        if pairs is None:
            pairs = cache[key] = frozenset(self.session.query(
                self.permission_model.name, self.viewmenu_model.name)
                .select_from(self.permissionview_model)
                .join(assoc_permissionview_role, self.permissionview_model.id
                      == assoc_permissionview_role.c.permission_view_id)
                .join(self.permission_model).join(self.viewmenu_model)
                .filter(assoc_permissionview_role.c.role_id.in_(sorted(key))).all())
        return pairs

    def register_views(self):
        super().register_views()
        for view in self.appbuilder.baseviews:
            if isinstance(view, ResetMyPasswordView) and self.is_auth_limited:
                # guessing the current password is limited like guessing it at login
                self.limiter.limit(self.auth_rate_limit, methods=["POST"])(view.blueprint)

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
        if not sessions.is_live(user_id):
            return None
        return self.load_user(user_id)

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
