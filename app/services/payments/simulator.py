"""A payment provider simulator for demos and tests (no network).

Payment ids starting with "FAIL" are refused (e.g. "FAIL-expired-card"); ids starting with
"DOWN" raise ProviderError (provider unreachable). A repeat of an idempotency key returns the
first answer, and ``refunds`` records every refund actually made.
"""

from __future__ import annotations

import threading
import uuid

from app.services.payments.base import ProviderError, RefundResult


class SimulatorProvider:
    name = "simulator"

    def __init__(self):
        self._lock = threading.Lock()
        self._answers: dict[str, RefundResult] = {}
        #: (payment_id, amount, idempotency_key) of each refund made
        self.refunds: list[tuple[str, int, str]] = []

    def refund(self, *, payment_id: str, amount: int, refund_amount_available: int,
               idempotency_key: str, reference: str) -> RefundResult:
        with self._lock:
            if idempotency_key in self._answers:
                return self._answers[idempotency_key]
            pid = (payment_id or "").upper()
            if pid.startswith("DOWN"):
                raise ProviderError("The simulated provider is unreachable.")
            if pid.startswith("FAIL") or not payment_id:
                result = RefundResult(False, None, "error",
                                      "The card issuer refused the refund (simulated).")
            elif amount > refund_amount_available:
                result = RefundResult(False, None, "error",
                                      "The refund is more than the amount available (simulated).")
            else:
                result = RefundResult(True, "sim-" + uuid.uuid4().hex[:16], "success",
                                      "Refunded (simulated).")
                self.refunds.append((payment_id, amount, idempotency_key))
            self._answers[idempotency_key] = result
            return result

    def refunds_for_key(self, idempotency_key: str) -> int:
        return sum(1 for _, _, k in self.refunds if k == idempotency_key)
