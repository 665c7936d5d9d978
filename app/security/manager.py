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


class ImsSecurityManager(SecurityManager):
    security_api = ImsSecurityApi

    @property
    def auth_rate_limit(self):
        """A callable, so the limit follows the config at request time (form login)."""
        return _login_limit
