"""The payment-provider interface used for card refunds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RefundResult:
    """What the provider said. ``succeeded`` False means a definite refusal (nothing refunded)."""

    succeeded: bool
    provider_refund_id: str | None = None
    status: str = ""
    message: str = ""


class ProviderError(RuntimeError):
    """The provider could not be reached or answered ambiguously: the refund may or may not have
    happened, so the caller keeps it payable and retries with the same idempotency key."""


class PaymentProvider(Protocol):
    name: str

    def refund(self, *, payment_id: str, amount: int, refund_amount_available: int,
               idempotency_key: str, reference: str) -> RefundResult:
        """Refund ``amount`` pence of card payment ``payment_id``.

        The same ``idempotency_key`` must never refund twice. Returns a RefundResult for a
        definite answer; raises ProviderError when the outcome is unknown.
        """
        ...
