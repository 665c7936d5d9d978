"""IMS security manager: FAB database auth, with the API login rate-limited like the form."""

from flask import current_app
from flask_appbuilder.security.api import SecurityApi
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.utils.limit import Limit
from flask_limiter.util import get_remote_address


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


class ImsSecurityManager(SecurityManager):
    security_api = ImsSecurityApi
    userdbmodelview = _without_download(SecurityManager.userdbmodelview)
    rolemodelview = _without_download(SecurityManager.rolemodelview)
    groupmodelview = _without_download(SecurityManager.groupmodelview)
    permissionmodelview = _without_download(SecurityManager.permissionmodelview)
    viewmenumodelview = _without_download(SecurityManager.viewmenumodelview)
    permissionviewmodelview = _without_download(SecurityManager.permissionviewmodelview)
    registerusermodelview = _without_download(SecurityManager.registerusermodelview)
    userstatschartview = None  # FAB's login-count chart 500s on a bad group_by; not needed

    @property
    def auth_rate_limit(self):
        """A callable, so the limit follows the config at request time (form login)."""
        return _login_limit
