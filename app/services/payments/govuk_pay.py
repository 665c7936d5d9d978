"""GOV.UK Pay adapter: GOV.UK Pay's public REST API over HTTP (also spoken by the simulator).

- create: POST {base}/v1/payments ``{"amount", "reference", "description", "return_url",
  "language", "email"?, "moto"?, "metadata"?, "prefilled_cardholder_details"?}`` → 201 with
  ``payment_id``, ``state`` and ``_links.next_url.href`` (the hosted card page);
- get: GET {base}/v1/payments/{payment_id} → ``state.status`` (created, started, submitted,
  capturable, success, failed, cancelled, error), ``card_details.card_brand`` and
  ``last_digits_card_number``, ``settlement_summary``;
- refund: POST {base}/v1/payments/{payment_id}/refunds with an ``Idempotency-Key`` header and
  ``{"amount", "refund_amount_available"}``: 2xx "submitted"/"success" is a refund, "error" and
  4xx are refusals, 5xx and network failures are ProviderError (outcome unknown: retry with the
  same key);
- webhooks: the body is signed with the webhook's signing secret, HMAC-SHA256 in hex, in the
  ``Pay-Signature`` header.

All calls send ``Authorization: Bearer <API key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request

from app.services.payments.base import (
    PaymentRefused,
    ProviderError,
    ProviderPayment,
    RefundResult,
)


def sign(body: bytes, secret: str) -> str:
    """GOV.UK Pay's webhook signature of ``body``: hex HMAC-SHA256 with the signing secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_payment(data: dict) -> ProviderPayment:
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    card = data.get("card_details") if isinstance(data.get("card_details"), dict) else {}
    links = data.get("_links") if isinstance(data.get("_links"), dict) else {}
    nxt = links.get("next_url") if isinstance(links.get("next_url"), dict) else {}
    settle = data.get("settlement_summary") if isinstance(data.get("settlement_summary"), dict) else {}
    amount = data.get("amount")
    fee = data.get("fee")
    return ProviderPayment(
        payment_id=str(data.get("payment_id") or ""),
        status=str(state.get("status") or "").lower(),
        finished=bool(state.get("finished")),
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else -1,
        next_url=nxt.get("href"),
        reference=str(data.get("reference") or ""),
        card_brand=card.get("card_brand") or None,
        last_four=(str(card.get("last_digits_card_number") or "")[-4:] or None),
        code=state.get("code"), message=state.get("message"),
        settled_date=settle.get("settled_date"), moto=bool(data.get("moto")),
        fee=fee if isinstance(fee, int) and not isinstance(fee, bool) and fee >= 0 else None,
        metadata=data.get("metadata") if isinstance(data.get("metadata"), dict) else {})


class GovUkPayProvider:
    name = "govuk_pay"

    def __init__(self, base_url: str, api_key: str, timeout: float = 20.0,
                 webhook_secret: str = "", name: str | None = None):
        self.base_url = (base_url or "").rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.webhook_secret = webhook_secret or ""
        if name:
            self.name = name

    # ------------------------------------------------------------------ transport
    def _call(self, method: str, path: str, body: dict | None = None,
              headers: dict | None = None) -> tuple[int, dict, bytes]:
        if not self.base_url or not self.api_key:
            raise ProviderError(f"The payment provider ({self.name}) is not configured "
                                "(its URL and API key).")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers={  # noqa: S310
            "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
            "Accept": "application/json", **(headers or {})})
        try:
            # the URL comes from config (GOVUK_PAY_URL / IMS_SIMULATOR_URL), never from user input
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ProviderError(f"The payment provider ({self.name}) could not be reached: "
                                f"{exc}") from None
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = {}
        return status, parsed if isinstance(parsed, dict) else {}, raw

    def _fail(self, what: str, status: int, data: dict, raw: bytes) -> ProviderError:
        message = data.get("description") or data.get("message") or raw[:200].decode("utf-8", "replace")
        code = data.get("code")
        text = f"{self.name} {what}: {status}{' ' + code if code else ''} {message}".strip()
        return ProviderError(text) if status >= 500 or status == 429 else PaymentRefused(text)

    # ------------------------------------------------------------------ payments
    def create_payment(self, *, amount: int, reference: str, description: str,
                       return_url: str, language: str = "en", email: str | None = None,
                       moto: bool = False, metadata: dict | None = None,
                       cardholder_name: str | None = None) -> ProviderPayment:
        body: dict = {"amount": int(amount), "reference": reference, "description": description,
                      "return_url": return_url, "language": language if language in ("en", "cy") else "en"}
        if email:
            body["email"] = email
        if moto:
            body["moto"] = True
        if metadata:
            body["metadata"] = metadata
        if cardholder_name:
            body["prefilled_cardholder_details"] = {"cardholder_name": cardholder_name}
        status, data, raw = self._call("POST", "/v1/payments", body)
        if status not in (200, 201):
            raise self._fail("refused to create the payment", status, data, raw)
        payment = parse_payment(data)
        if not payment.payment_id or not payment.next_url:
            raise ProviderError(f"{self.name} answered without a payment id or next_url.")
        return payment

    def get_payment(self, payment_id: str) -> ProviderPayment:
        if not payment_id:
            raise PaymentRefused("No provider payment id.")
        status, data, raw = self._call("GET", "/v1/payments/" + urllib.parse.quote(payment_id, safe=""))
        if status != 200:
            raise self._fail("did not return the payment", status, data, raw)
        return parse_payment(data)

    def cancel_payment(self, payment_id: str) -> bool:
        status, _, _ = self._call(
            "POST", "/v1/payments/" + urllib.parse.quote(payment_id, safe="") + "/cancel")
        return status == 204

    # ------------------------------------------------------------------ refunds
    def refund(self, *, payment_id: str, amount: int, refund_amount_available: int,
               idempotency_key: str, reference: str) -> RefundResult:
        if not payment_id:
            return RefundResult(False, None, "error", "The transaction has no card payment id.")
        path = f"/v1/payments/{urllib.parse.quote(payment_id, safe='')}/refunds"
        try:
            status, data, raw = self._call(
                "POST", path, {"amount": int(amount),
                               "refund_amount_available": int(refund_amount_available)},
                {"Idempotency-Key": idempotency_key})
        except ProviderError as exc:
            if self.name == "govuk_pay":
                raise ProviderError(str(exc).replace("govuk_pay", "GOV.UK Pay")) from None
            raise
        label = "GOV.UK Pay" if self.name == "govuk_pay" else self.name
        if status >= 500:
            raise ProviderError(f"{label} answered {status}: {data.get('description') or ''}".strip())
        if 200 <= status < 300:
            state = str(data.get("status") or "").lower()
            if state in ("submitted", "success"):
                return RefundResult(True, str(data.get("refund_id") or ""), state,
                                    f"{label} refund {state}.")
            return RefundResult(False, str(data.get("refund_id") or "") or None, state or "error",
                                f"{label} refund {state or 'not accepted'}.")
        message = (data.get("description") or data.get("message")
                   or raw[:200].decode("utf-8", "replace"))
        code = data.get("code")
        return RefundResult(False, None, "error",
                            f"{label} refused the refund ({status}{' ' + code if code else ''}): {message}")

    # ------------------------------------------------------------------ webhooks
    def verify_webhook_signature(self, body: bytes, signature: str | None) -> bool:
        """True when ``signature`` (the Pay-Signature header) is the body's HMAC with the
        configured signing secret; False without a secret or a signature."""
        if not self.webhook_secret or not signature or not isinstance(body, bytes | bytearray):
            return False
        return hmac.compare_digest(sign(bytes(body), self.webhook_secret),
                                   signature.strip().lower())
