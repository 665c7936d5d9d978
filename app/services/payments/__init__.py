"""Card payment providers behind one small interface: refund a card payment by its payment id.

``get_provider(name, config)`` returns the adapter named by IMS_PAYMENT_PROVIDER: "simulator"
(the default for demos and tests) or "govuk_pay" (GOV.UK Pay's public API).
"""

from __future__ import annotations

from app.services.payments.base import PaymentProvider, ProviderError, RefundResult  # noqa: F401
from app.services.payments.govuk_pay import GovUkPayProvider
from app.services.payments.simulator import SimulatorProvider

PROVIDERS = {"simulator": SimulatorProvider, "govuk_pay": GovUkPayProvider}

_simulator = SimulatorProvider()


def get_provider(name: str | None = None, config: dict | None = None) -> PaymentProvider:
    """The configured provider. Raises ValueError for an unknown name."""
    config = config or {}
    name = (name or config.get("IMS_PAYMENT_PROVIDER") or "simulator").strip().lower()
    if name == "simulator":
        return _simulator  # one in-process instance, so its idempotency memory is shared
    if name in ("govuk_pay", "govukpay", "govuk"):
        return GovUkPayProvider(base_url=config.get("GOVUK_PAY_URL") or "",
                                api_key=config.get("GOVUK_PAY_API_KEY") or "")
    raise ValueError(f"Unknown payment provider {name!r}; choose one of {', '.join(PROVIDERS)}.")
