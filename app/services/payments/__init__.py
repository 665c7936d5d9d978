"""Card payment providers behind one interface (base.PaymentProvider): create a payment on the
provider's hosted card page, ask for its state, refund it, check its signed webhooks.

``get_provider(name, config)`` returns the adapter named by IMS_PAYMENT_PROVIDER: "simulator"
(the default for development and tests: the GOV.UK Pay adapter talking to the payment-provider
simulator mounted at /simulator, app/simulator) or "govuk_pay" (GOV.UK Pay itself).
"""

from __future__ import annotations

from app.services.payments.base import (  # noqa: F401
    PaymentProvider,
    PaymentRefused,
    ProviderError,
    ProviderPayment,
    RefundResult,
)
from app.services.payments.govuk_pay import GovUkPayProvider

PROVIDERS = ("simulator", "govuk_pay")
SIMULATOR_DEFAULT_KEY = "simulator-api-key"
SIMULATOR_DEFAULT_SECRET = "simulator-webhook-secret"  # noqa: S105 (the simulator's, not a secret)


def provider_name(config: dict | None = None, name: str | None = None) -> str:
    name = (name or (config or {}).get("IMS_PAYMENT_PROVIDER") or "simulator").strip().lower()
    if name in ("govukpay", "govuk"):
        name = "govuk_pay"
    if name not in PROVIDERS:
        raise ValueError(f"Unknown payment provider {name!r}; choose one of {', '.join(PROVIDERS)}.")
    return name


def simulator_url(config: dict) -> str:
    return (config.get("IMS_SIMULATOR_URL")
            or str(config.get("IMS_BASE_URL") or "http://127.0.0.1:5000").rstrip("/") + "/simulator")


def get_provider(name: str | None = None, config: dict | None = None) -> PaymentProvider:
    """The configured provider. Raises ValueError for an unknown name."""
    config = config or {}
    name = provider_name(config, name)
    if name == "simulator":
        return GovUkPayProvider(base_url=simulator_url(config),
                                api_key=config.get("IMS_SIMULATOR_API_KEY") or SIMULATOR_DEFAULT_KEY,
                                webhook_secret=config.get("IMS_SIMULATOR_WEBHOOK_SECRET")
                                or SIMULATOR_DEFAULT_SECRET,
                                timeout=float(config.get("IMS_PAYMENT_TIMEOUT") or 20), name="simulator")
    return GovUkPayProvider(base_url=config.get("GOVUK_PAY_URL") or "",
                            api_key=config.get("GOVUK_PAY_API_KEY") or "",
                            webhook_secret=config.get("GOVUK_PAY_WEBHOOK_SECRET") or "",
                            timeout=float(config.get("IMS_PAYMENT_TIMEOUT") or 20))
