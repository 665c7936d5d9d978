"""The payment-provider simulator: GOV.UK Pay's public API subset and a hosted card page over
HTTP, mounted at /simulator in development and tests (never in production: create_app does not
register it there and its requests are refused if it is).

API (``Authorization: Bearer <IMS_SIMULATOR_API_KEY>``), as GOV.UK Pay's:
- ``POST /simulator/v1/payments`` ``{"amount", "reference", "description", "return_url",
  "language"?, "email"?, "moto"?, "metadata"?, "prefilled_cardholder_details"?}`` → 201 payment
- ``GET /simulator/v1/payments/<payment_id>`` → the payment (``state.status`` created, started,
  submitted, success, failed, cancelled, error; ``card_details``; ``settlement_summary`` whose
  ``settled_date`` is the next working day after capture; ``fee`` (0.75%) and ``net_amount``
  once it succeeded, as GOV.UK Pay reports them for Stripe accounts)
- ``POST /simulator/v1/payments/<payment_id>/cancel`` → 204
- ``POST /simulator/v1/payments/<payment_id>/refunds`` (``Idempotency-Key``) → 202 refund
- the hosted card page ``/simulator/secure/<token>`` (``_links.next_url``) with GOV.UK Pay's
  sandbox test cards: 4444333322221111 (Visa) and 5101180000000007 (Mastercard) succeed,
  4000000000000002 is declined, 4000000000000119 is a processing error; "Cancel payment".
- signed webhooks: when a payment finishes, a POST of GOV.UK Pay's webhook message to
  IMS_SIMULATOR_WEBHOOK_URL (default: this server's /payments/webhooks/simulator), the body
  signed with IMS_SIMULATOR_WEBHOOK_SECRET (hex HMAC-SHA256 in ``Pay-Signature``).

Refunds of payment ids the simulator never created (demonstration data) are accepted, except
ids starting "FAIL" (refused) and "DOWN" (503, provider unreachable).

State is kept in memory (one process: `make run`); ``STORE`` is what tests inspect.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import secrets
import threading
import urllib.request
from dataclasses import dataclass, field

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request

from app.services.payments import SIMULATOR_DEFAULT_KEY, SIMULATOR_DEFAULT_SECRET
from app.services.payments.govuk_pay import sign

log = logging.getLogger(__name__)

bp = Blueprint("simulator", __name__, url_prefix="/simulator", template_folder="templates")

#: card number -> (outcome, brand)
TEST_CARDS = {
    "4444333322221111": ("success", "Visa"),
    "5101180000000007": ("success", "Mastercard"),
    "4000000000000002": ("declined", "Visa"),
    "4000000000000119": ("error", "Visa"),
}
MAX_AMOUNT = 10_000_000


@dataclass
class SimPayment:
    payment_id: str
    secure_token: str
    amount: int
    reference: str
    description: str
    return_url: str
    language: str
    email: str | None
    moto: bool
    metadata: dict
    cardholder_name: str | None
    created_date: str
    status: str = "created"
    code: str | None = None
    message: str | None = None
    card_brand: str | None = None
    last_four: str | None = None
    first_six: str | None = None
    captured_date: str | None = None
    refunded: int = 0
    refunds: list = field(default_factory=list)
    host_url: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("success", "failed", "cancelled", "error")

    def as_json(self) -> dict:
        base = f"{self.host_url.rstrip('/')}/simulator"
        state = {"status": self.status, "finished": self.finished}
        if self.code:
            state.update(code=self.code, message=self.message)
        data = {
            "payment_id": self.payment_id, "amount": self.amount, "reference": self.reference,
            "description": self.description, "return_url": self.return_url,
            "language": self.language, "moto": self.moto, "metadata": self.metadata,
            "created_date": self.created_date, "state": state, "payment_provider": "sandbox",
            "delayed_capture": False, "authorisation_mode": "web",
            "refund_summary": {
                "status": ("available" if self.status == "success" and self.refunded < self.amount
                           else "full" if self.status == "success" else "pending"),
                "amount_available": self.amount - self.refunded if self.status == "success" else 0,
                "amount_submitted": self.refunded},
            "settlement_summary": ({"capture_submit_time": self.captured_date + "T00:00:00.000Z",
                                    "captured_date": self.captured_date,
                                    "settled_date": settled_date(self.captured_date)}
                                   if self.captured_date else {}),
            "_links": {
                "self": {"href": f"{base}/v1/payments/{self.payment_id}", "method": "GET"},
                "refunds": {"href": f"{base}/v1/payments/{self.payment_id}/refunds", "method": "GET"},
            },
        }
        if self.status == "success":  # as GOV.UK Pay reports for Stripe accounts
            data["fee"] = simulated_fee(self.amount)
            data["net_amount"] = self.amount - data["fee"]
        if self.email:
            data["email"] = self.email
        if not self.finished:
            data["_links"]["next_url"] = {"href": f"{base}/secure/{self.secure_token}",
                                          "method": "GET"}
            data["_links"]["cancel"] = {"href": f"{base}/v1/payments/{self.payment_id}/cancel",
                                        "method": "POST"}
        if self.card_brand:
            data["card_details"] = {"card_brand": self.card_brand,
                                    "last_digits_card_number": self.last_four,
                                    "first_digits_card_number": self.first_six,
                                    "cardholder_name": self.cardholder_name,
                                    "expiry_date": "12/30", "card_type": "debit"}
        return data


def simulated_fee(amount: int) -> int:
    """The simulator's card fee: 0.75% of the amount, rounded to the penny (half up)."""
    return (amount * 75 + 5000) // 10000


def settled_date(captured: str) -> str:
    """The day the simulator pays a captured payment to the bank: the next working day."""
    day = dt.date.fromisoformat(captured) + dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day.isoformat()


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.payments: dict[str, SimPayment] = {}
        self.by_token: dict[str, str] = {}
        self.refund_answers: dict[str, tuple[int, dict]] = {}
        #: (payment_id, amount, idempotency_key) of each refund made
        self.refunds: list[tuple[str, int, str]] = []
        #: every webhook delivered: (url, event_type, payment_id, http status or error)
        self.webhooks: list[tuple[str, str, str, object]] = []

    def refunds_for_key(self, key: str) -> int:
        return sum(1 for _, _, k in self.refunds if k == key)


STORE = Store()


def _error(status: int, code: str, description: str, field_name: str | None = None):
    body = {"code": code, "description": description}
    if field_name:
        body["field"] = field_name
    return jsonify(body), status


@bp.before_request
def _guard():
    if current_app.config.get("IMS_ENV") == "production":
        abort(404)
    if request.path.startswith("/simulator/v1/"):
        key = current_app.config.get("IMS_SIMULATOR_API_KEY") or SIMULATOR_DEFAULT_KEY
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return _error(401, "P0940", "Credentials are required to access this resource")
    return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@bp.post("/v1/payments")
def create_payment():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "P0197", "Unable to parse JSON")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        return _error(422, "P0102", "Invalid attribute value: amount. Must be less than or equal "
                      f"to {MAX_AMOUNT}", "amount")
    for name, limit in (("reference", 255), ("description", 255), ("return_url", 2000)):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            return _error(400, "P0101", f"Missing mandatory attribute: {name}", name)
        if len(value) > limit:
            return _error(422, "P0102", f"Invalid attribute value: {name}. Must be less than or "
                          f"equal to {limit} characters length", name)
    if not body["return_url"].startswith(("https://", "http://")):
        return _error(422, "P0102", "Invalid attribute value: return_url. Must be a valid URL "
                      "format", "return_url")
    language = body.get("language", "en")
    if language not in ("en", "cy"):
        return _error(422, "P0102", "Invalid attribute value: language. Must be \"en\" or \"cy\"",
                      "language")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 10 or any(
            not isinstance(k, str) or len(k) > 30 or (isinstance(v, str) and len(v) > 100)
            or isinstance(v, dict | list) for k, v in metadata.items()):
        return _error(422, "P0102", "Invalid attribute value: metadata", "metadata")
    moto = body.get("moto", False)
    if not isinstance(moto, bool):
        return _error(422, "P0102", "Invalid attribute value: moto", "moto")
    prefilled = body.get("prefilled_cardholder_details") or {}
    payment = SimPayment(
        payment_id=secrets.token_hex(13), secure_token=secrets.token_urlsafe(18), amount=amount,
        reference=body["reference"], description=body["description"],
        return_url=body["return_url"], language=language,
        email=body.get("email") if isinstance(body.get("email"), str) else None, moto=moto,
        metadata=metadata, created_date=_now(), host_url=request.host_url,
        cardholder_name=prefilled.get("cardholder_name") if isinstance(prefilled, dict) else None)
    with STORE.lock:
        STORE.payments[payment.payment_id] = payment
        STORE.by_token[payment.secure_token] = payment.payment_id
    return jsonify(payment.as_json()), 201


def _payment(payment_id: str) -> SimPayment | None:
    with STORE.lock:
        return STORE.payments.get(payment_id)


@bp.get("/v1/payments/<payment_id>")
def get_payment(payment_id):
    payment = _payment(payment_id)
    if payment is None:
        return _error(404, "P0200", "Not found")
    return jsonify(payment.as_json())


@bp.post("/v1/payments/<payment_id>/cancel")
def cancel_payment(payment_id):
    payment = _payment(payment_id)
    if payment is None:
        return _error(404, "P0500", "Not found")
    with STORE.lock:
        if payment.finished:
            return _error(400, "P0501", "Cancellation of payment failed")
        payment.status, payment.code, payment.message = "cancelled", "P0040", \
            "Payment was cancelled by the service"
    _webhook_soon(payment, "card_payment_cancelled")
    return "", 204


@bp.post("/v1/payments/<payment_id>/refunds")
def refund(payment_id):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "P0697", "Unable to parse JSON")
    amount, available = body.get("amount"), body.get("refund_amount_available")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return _error(422, "P0602", "Invalid attribute value: amount", "amount")
    key = request.headers.get("Idempotency-Key") or secrets.token_hex(8)
    with STORE.lock:
        if key in STORE.refund_answers:
            status, answer = STORE.refund_answers[key]
            return jsonify(answer), status
        payment = STORE.payments.get(payment_id)
        pid = payment_id.upper()
        if payment is None and pid.startswith("DOWN"):
            return _error(503, "P0698", "Downstream system error (simulated)")
        if payment is None and pid.startswith("FAIL"):
            status, answer = 400, {"code": "P0603", "description":
                                   "The card issuer refused the refund (simulated)."}
        elif payment is not None and payment.status != "success":
            status, answer = 400, {"code": "P0603", "description": "The payment is not refundable."}
        elif payment is not None and available is not None and available != payment.amount - payment.refunded:
            status, answer = 412, {"code": "P0604", "description":
                                   "Refund amount available mismatch."}
        elif amount > (available if isinstance(available, int) else amount) or (
                payment is not None and amount > payment.amount - payment.refunded):
            status, answer = 400, {"code": "P0603", "description":
                                   "The refund is more than the amount available (simulated)."}
        else:
            if payment is not None:
                payment.refunded += amount
            refund_id = "sim" + secrets.token_hex(10)
            status, answer = 202, {"refund_id": refund_id, "amount": amount,
                                   "status": "submitted", "created_date": _now()}
            STORE.refunds.append((payment_id, amount, key))
        STORE.refund_answers[key] = (status, answer)
    return jsonify(answer), status


# ---------------------------------------------------------------------- hosted card page
TEXTS = {
    "en": {"title": "Enter card details", "number": "Card number", "expiry": "Expiry date (MM/YY)",
           "cvc": "Card security code", "name": "Name on card", "pay": "Continue",
           "cancel": "Cancel payment", "amount": "Total amount", "moto": "Telephone payment (MOTO)",
           "bad": "Enter a valid card number", "sim": "Payment-provider simulator — test cards only"},
    "cy": {"title": "Rhowch fanylion y cerdyn", "number": "Rhif y cerdyn",
           "expiry": "Dyddiad dod i ben (MM/BB)", "cvc": "Cod diogelwch y cerdyn",
           "name": "Yr enw ar y cerdyn", "pay": "Parhau", "cancel": "Canslo’r taliad",
           "amount": "Cyfanswm", "moto": "Taliad dros y ffôn (MOTO)",
           "bad": "Rhowch rif cerdyn dilys", "sim": "Efelychydd darparwr taliadau — cardiau prawf yn unig"},
}


def _by_token(token: str) -> SimPayment:
    with STORE.lock:
        pid = STORE.by_token.get(token)
        payment = STORE.payments.get(pid) if pid else None
    if payment is None:
        abort(404)
    return payment


@bp.get("/secure/<token>")
def card_page(token):
    payment = _by_token(token)
    if payment.finished:
        return redirect(payment.return_url, 303)
    with STORE.lock:
        if payment.status == "created":
            payment.status = "started"
    return _render(payment)


def _render(payment: SimPayment, error: str | None = None, status: int = 200):
    t = TEXTS.get(payment.language, TEXTS["en"])
    pounds = f"£{payment.amount // 100:,}.{payment.amount % 100:02d}"
    return render_template("simulator/card.html", p=payment, t=t, pounds=pounds,
                           error=error), status


@bp.post("/secure/<token>")
def card_submit(token):
    payment = _by_token(token)
    if payment.finished:
        return redirect(payment.return_url, 303)
    if request.form.get("action") == "cancel":
        outcome, brand, number = "cancel", None, ""
    else:
        number = "".join(ch for ch in (request.form.get("card_number") or "") if ch.isdigit())
        if number not in TEST_CARDS:
            t = TEXTS.get(payment.language, TEXTS["en"])
            return _render(payment, t["bad"], 200)
        outcome, brand = TEST_CARDS[number]
    with STORE.lock:
        if payment.finished:
            return redirect(payment.return_url, 303)
        if outcome == "success":
            payment.status = "success"
            payment.captured_date = dt.date.today().isoformat()
        elif outcome == "declined":
            payment.status, payment.code, payment.message = "failed", "P0010", \
                "Payment method rejected"
        elif outcome == "error":
            payment.status, payment.code, payment.message = "error", "P0050", \
                "Payment provider returned an error"
        else:
            payment.status, payment.code, payment.message = "failed", "P0030", \
                "Payment was cancelled by the user"
        if brand:
            payment.card_brand, payment.last_four, payment.first_six = brand, number[-4:], number[:6]
            payment.cardholder_name = (request.form.get("cardholder_name") or "")[:100] or \
                payment.cardholder_name
    _webhook_soon(payment, "card_payment_succeeded" if outcome == "success"
                  else "card_payment_failed")
    return redirect(payment.return_url, 303)


# ---------------------------------------------------------------------- webhooks
def webhook_message(payment: SimPayment, event_type: str) -> bytes:
    return json.dumps({
        "webhook_message_id": secrets.token_hex(13), "created_date": _now(), "api_version": 1,
        "resource_id": payment.payment_id, "resource_type": "payment", "event_type": event_type,
        "resource": payment.as_json()}).encode()


def deliver_webhook(payment_id: str, url: str, secret: str,
                    event_type: str = "card_payment_succeeded") -> object:
    """POST the signed webhook message of ``payment_id`` to ``url`` now; the HTTP status."""
    payment = _payment(payment_id)
    if payment is None:
        raise KeyError(payment_id)
    body = webhook_message(payment, event_type)
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 (config URL)
        "Content-Type": "application/json", "Pay-Signature": sign(body, secret)})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (config URL)
            result: object = resp.status
    except urllib.error.HTTPError as exc:
        result = exc.code
    except OSError as exc:
        result = f"error: {exc}"
    with STORE.lock:
        STORE.webhooks.append((url, event_type, payment_id, result))
    return result


def _webhook_soon(payment: SimPayment, event_type: str) -> None:
    cfg = current_app.config
    if not cfg.get("IMS_SIMULATOR_WEBHOOKS", True):
        return
    url = cfg.get("IMS_SIMULATOR_WEBHOOK_URL") or request.host_url.rstrip("/") + \
        "/payments/webhooks/simulator"
    secret = cfg.get("IMS_SIMULATOR_WEBHOOK_SECRET") or SIMULATOR_DEFAULT_SECRET
    delay = float(cfg.get("IMS_SIMULATOR_WEBHOOK_DELAY", 1.0))
    timer = threading.Timer(delay, deliver_webhook, (payment.payment_id, url, secret, event_type))
    timer.daemon = True
    timer.start()


def register(app) -> None:
    """Mount the simulator (create_app calls this outside production)."""
    if app.config.get("IMS_ENV") == "production":
        return
    from app.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
