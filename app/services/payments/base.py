"""The payment-provider interface: take a card payment on the provider's hosted page, ask for
its state, refund it, and check the provider's signed webhooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RefundResult:
    """What the provider said. ``succeeded`` False means a definite refusal (nothing refunded)."""

    succeeded: bool
    provider_refund_id: str | None = None
    status: str = ""
    message: str = ""


@dataclass(frozen=True)
class ProviderPayment:
    """A card payment as the provider reports it (GOV.UK Pay's payment resource).

    ``status`` is GOV.UK Pay's ``state.status``: created, started, submitted, capturable,
    success, failed, cancelled or error; ``finished`` says whether it can still change.
    """

    payment_id: str
    status: str
    finished: bool
    amount: int
    next_url: str | None = None
    reference: str = ""
    card_brand: str | None = None
    last_four: str | None = None
    code: str | None = None
    message: str | None = None
    settled_date: str | None = None
    #: the provider's fee (pence) where it reports one (GOV.UK Pay's ``fee``), else None
    fee: int | None = None
    moto: bool = False
    metadata: dict = field(default_factory=dict)


class ProviderError(RuntimeError):
    """The provider could not be reached or answered ambiguously: the outcome is unknown, so the
    caller keeps the payment/refund open and asks again later (same idempotency key)."""


class PaymentRefused(ProviderError):
    """The provider definitely refused the request (4xx): nothing was created."""


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, *, amount: int, reference: str, description: str,
                       return_url: str, language: str = "en", email: str | None = None,
                       moto: bool = False, metadata: dict | None = None,
                       cardholder_name: str | None = None) -> ProviderPayment:
        ...

    def get_payment(self, payment_id: str) -> ProviderPayment:
        ...

    def refund(self, *, payment_id: str, amount: int, refund_amount_available: int,
               idempotency_key: str, reference: str) -> RefundResult:
        """Refund ``amount`` pence of card payment ``payment_id``.

        The same ``idempotency_key`` must never refund twice. Returns a RefundResult for a
        definite answer; raises ProviderError when the outcome is unknown.
        """
        ...

    def verify_webhook_signature(self, body: bytes, signature: str | None) -> bool:
        ...
