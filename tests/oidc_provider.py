"""A small, real OpenID Connect provider for the sign-in tests: Authlib's authorization server
(authorization-code grant with its OpenID Connect extension), served over HTTP from a thread.

It signs ID tokens with an RSA key it publishes at its JWKS address. The person it signs in is
whoever the test says (``provider.user``: no login form), with the groups the test gives. For
the refusal tests it can sign with a key it does not publish (``forge``) or issue tokens that
have already expired (``expired``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, ClientMixin
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import RSAKey


@dataclass
class Person:
    sub: str
    username: str
    email: str
    groups: list[str] = field(default_factory=list)
    given_name: str = "Test"
    family_name: str = "Person"


class Client(ClientMixin):
    def __init__(self, client_id, secret, redirect_uris):
        self.client_id, self.secret, self.redirect_uris = client_id, secret, redirect_uris

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri):
        return not self.redirect_uris or redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return client_secret == self.secret

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    person: Person
    created: float

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return int(self.created)

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class Provider:
    """The provider; ``url`` is its issuer once ``start()`` has run."""

    def __init__(self, client_id="ims", client_secret="ims-secret"):  # noqa: S107
        self.client = Client(client_id, client_secret, [])
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"},
                                       private=True)
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"},
                                             private=True)
        self.user: Person | None = None
        self.forge = False
        self.expired = False
        self.codes: dict[str, Code] = {}
        self.logouts: list[dict] = []
        self.url = ""
        self._server = None
        self.app = self._build()

    # -- the Authlib server parts
    def _build(self) -> Flask:
        provider = self
        app = Flask("test_oidc_provider")
        app.config["OAUTH2_SCOPES_SUPPORTED"] = ["openid", "email", "profile"]

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                provider.codes[code] = Code(
                    code=code, client_id=req.client.get_client_id(),
                    redirect_uri=req.payload.redirect_uri, scope=req.scope,
                    nonce=req.payload.data.get("nonce"), person=req.user, created=time.time())

            def query_authorization_code(self, code, client):
                item = provider.codes.get(code)
                if item is not None and item.client_id == client.get_client_id():
                    return item
                return None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.person

        class Oidc(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.other_key if provider.forge else provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": "k1"}

            def get_client_claims(self, client):
                now = int(time.time())
                exp = now - 3600 if provider.expired else now + 300
                return {"iss": provider.url, "aud": [client.get_client_id()], "iat": now - 7200
                        if provider.expired else now, "exp": exp}

            def generate_user_info(self, user, scope):
                return UserInfo(sub=user.sub, preferred_username=user.username,
                                email=user.email, given_name=user.given_name,
                                family_name=user.family_name, groups=list(user.groups))

        server = AuthorizationServer(app, query_client=lambda cid: provider.client
                                     if cid == provider.client.client_id else None,
                                     save_token=lambda token, req: None)
        server.register_grant(CodeGrant, [Oidc(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": provider.url,
                "authorization_endpoint": f"{provider.url}/authorize",
                "token_endpoint": f"{provider.url}/token",
                "end_session_endpoint": f"{provider.url}/logout",
                "jwks_uri": f"{provider.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
            })

        @app.get("/jwks")
        def jwks():
            return jsonify({"keys": [provider.key.as_dict(private=False)]})

        @app.get("/authorize")
        def authorize():
            # no login form: the test has already said who is signed in here
            if provider.user is None:
                return server.create_authorization_response(grant_user=None)
            return server.create_authorization_response(grant_user=provider.user)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.get("/logout")
        def end_session():
            # RP-initiated logout: the person is signed out here, then sent back
            provider.logouts.append(dict(request.args))
            provider.user = None
            back = request.args.get("post_logout_redirect_uri")
            return redirect(back) if back else "Signed out."

        return app

    # -- serving
    def start(self) -> str:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def configure(self, app, **extra) -> None:
        """Point the IMS app at this provider."""
        app.config.update(IMS_OIDC_ISSUER=self.url, IMS_OIDC_METADATA_URL="",
                          IMS_OIDC_CLIENT_ID=self.client.client_id,
                          IMS_OIDC_CLIENT_SECRET=self.client.secret, **extra)


def authorize_url_answer(url: str) -> str:
    """Follow the provider's authorization address as a browser would (the provider answers
    with a redirect back to the IMS); returns that redirect's address."""
    import requests

    resp = requests.get(url, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, (resp.status_code, resp.text[:300])
    return resp.headers["Location"]
