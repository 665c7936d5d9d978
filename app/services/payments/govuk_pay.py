"""GOV.UK Pay adapter: refund a card payment through the public API.

POST {GOVUK_PAY_URL}/v1/payments/{payment_id}/refunds with ``Authorization: Bearer <key>``, an
``Idempotency-Key`` header and body ``{"amount": pence, "refund_amount_available": pence}``.
A 2xx answer with status "submitted" or "success" is a refund; status "error" and 4xx answers
are refusals; 5xx answers and network failures are ProviderError (outcome unknown: retry with
the same idempotency key).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from app.services.payments.base import ProviderError, RefundResult


class GovUkPayProvider:
    name = "govuk_pay"

    def __init__(self, base_url: str, api_key: str, timeout: float = 20.0):
        self.base_url = (base_url or "").rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def refund(self, *, payment_id: str, amount: int, refund_amount_available: int,
               idempotency_key: str, reference: str) -> RefundResult:
        if not self.base_url or not self.api_key:
            raise ProviderError("GOV.UK Pay is not configured (GOVUK_PAY_URL, GOVUK_PAY_API_KEY).")
        if not payment_id:
            return RefundResult(False, None, "error", "The transaction has no card payment id.")
        url = f"{self.base_url}/v1/payments/{urllib.parse.quote(payment_id, safe='')}/refunds"
        body = json.dumps({"amount": int(amount),
                           "refund_amount_available": int(refund_amount_available)}).encode()
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
            "Accept": "application/json", "Idempotency-Key": idempotency_key})
        try:
            # the URL comes from config (GOVUK_PAY_URL), never from user input
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ProviderError(f"GOV.UK Pay could not be reached: {exc}") from None
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if status >= 500:
            raise ProviderError(f"GOV.UK Pay answered {status}: {data.get('description') or ''}".strip())
        if 200 <= status < 300:
            state = str(data.get("status") or "").lower()
            if state in ("submitted", "success"):
                return RefundResult(True, str(data.get("refund_id") or ""), state,
                                    f"GOV.UK Pay refund {state}.")
            return RefundResult(False, str(data.get("refund_id") or "") or None, state or "error",
                                f"GOV.UK Pay refund {state or 'not accepted'}.")
        message = (data.get("description") or data.get("message")
                   or raw[:200].decode("utf-8", "replace"))
        code = data.get("code")
        return RefundResult(False, None, "error",
                            f"GOV.UK Pay refused the refund ({status}{' ' + code if code else ''}): {message}")
