"""Single sign-on by OpenID Connect (Authlib's Flask client), configured by IMS_OIDC_*.

The client is built from the configuration when first needed (again if the configuration
changed), so a deployment turns single sign-on on with environment variables only. Authlib keeps
the request's state and nonce in the session, checks the state on the way back (a replayed or
forged state is refused), exchanges the code at the provider's token endpoint and validates the
ID token: signature against the provider's published keys, issuer, audience, expiry, nonce.
"""

from __future__ import annotations

import threading

from flask import current_app

_lock = threading.Lock()
_clients: dict[tuple, object] = {}


def enabled() -> bool:
    cfg = current_app.config
    return bool(cfg.get("IMS_OIDC_CLIENT_ID") and (cfg.get("IMS_OIDC_METADATA_URL")
                                                   or cfg.get("IMS_OIDC_ISSUER")))


def metadata_url() -> str:
    cfg = current_app.config
    if cfg.get("IMS_OIDC_METADATA_URL"):
        return cfg["IMS_OIDC_METADATA_URL"]
    return cfg["IMS_OIDC_ISSUER"].rstrip("/") + "/.well-known/openid-configuration"


def client():
    """The Authlib client of the configured provider."""
    from authlib.integrations.flask_client import OAuth

    cfg = current_app.config
    key = (id(current_app._get_current_object()), metadata_url(), cfg["IMS_OIDC_CLIENT_ID"],
           cfg.get("IMS_OIDC_CLIENT_SECRET") or "", cfg.get("IMS_OIDC_SCOPE") or "openid")
    with _lock:
        found = _clients.get(key)
        if found is None:
            oauth = OAuth()
            oauth.init_app(current_app._get_current_object())
            found = oauth.register(
                "ims_oidc", client_id=key[2], client_secret=key[3] or None,
                server_metadata_url=key[1], client_kwargs={"scope": key[4], "timeout": 10})
            _clients[key] = found
    return found


def end_session_url(post_logout_redirect_uri: str) -> str | None:
    """The provider's sign-out address (RP-initiated logout: its metadata's
    end_session_endpoint, with our client id and where to come back to), or None when it
    publishes none or cannot be reached (signing out of the IMS still happens)."""
    from urllib.parse import urlencode

    try:
        endpoint = client().load_server_metadata().get("end_session_endpoint")
    except Exception:  # noqa: BLE001 - the provider is down: the IMS sign-out stands alone
        current_app.logger.warning("single sign-on: the provider's metadata cannot be read "
                                   "at sign-out")
        return None
    if not endpoint or not str(endpoint).startswith(("https://", "http://")):
        return None
    query = urlencode({"client_id": current_app.config["IMS_OIDC_CLIENT_ID"],
                       "post_logout_redirect_uri": post_logout_redirect_uri})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def button_label() -> str | None:
    return current_app.config.get("IMS_OIDC_LABEL") or None


def check_configuration(config) -> None:
    """Refuse a sign-in configuration nobody could sign in with, or maps that are not JSON
    objects (raised at start-up, not at the first sign-on)."""
    import json

    from app.domain.errors import ConfigurationError

    sso = bool(config.get("IMS_OIDC_CLIENT_ID") and (config.get("IMS_OIDC_METADATA_URL")
                                                     or config.get("IMS_OIDC_ISSUER")))
    if not config.get("IMS_LOCAL_PASSWORDS", True) and not sso:
        raise ConfigurationError(
            "IMS_LOCAL_PASSWORDS is off but single sign-on is not configured (IMS_OIDC_CLIENT_ID "
            "and IMS_OIDC_ISSUER or IMS_OIDC_METADATA_URL): nobody could sign in.")
    for name in ("IMS_OIDC_ROLE_MAP", "IMS_OIDC_FUND_GROUP_MAP"):
        raw = config.get(name) or "{}"
        try:
            value = raw if isinstance(raw, dict) else json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in value.values()):
            raise ConfigurationError(
                f"{name} must be a JSON object of group name to a name or a list of names, "
                'for example {"ims-parking": "Income Clerk"}.')
