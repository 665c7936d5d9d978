"""Provider webhooks for card payments (no login: the provider's signature authenticates them).

``POST /payments/webhooks/<provider>`` (shared/API.md) and ``POST /api/v1/card-payments/webhook``
(the configured provider): the ``Pay-Signature`` header must be the body's HMAC-SHA256 with the
webhook signing secret; the payment's state is then asked of the provider, never read from the
body. Bad signature → 401; unknown payment → 200 (the provider stops retrying), nothing confirmed.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.extensions import db
from app.services import card_payments as CP

bp = Blueprint("card_payment_webhooks", __name__)
MAX_BODY = 256 * 1024


def _handle(provider_key: str):
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        return jsonify(message="Too large."), 413
    try:
        status, message = CP.handle_webhook(db.session, provider_key, body,
                                            request.headers.get("Pay-Signature"))
    finally:
        db.session.remove()
    return jsonify(message=message), status


@bp.post("/payments/webhooks/<provider_key>")
def provider_webhook(provider_key):
    return _handle(provider_key)


@bp.post("/api/v1/card-payments/webhook")
def webhook():
    return _handle(current_app.config.get("IMS_PAYMENT_PROVIDER") or "simulator")


def register_webhooks(app) -> None:
    from app.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
