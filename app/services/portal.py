"""The citizen payment portal (/pay): funds offered online, public reference checks, baskets.

What the public may learn from a check
--------------------------------------
A reference is checked as receipts check it (app/services/validation.py: the fund's validator
chain, check digit, amount limits, "account must exist", stops), but the portal answers with one
plain message per field and never says which rule failed:

* every reference failure (format, check digit, no such account, account on stop) gives the SAME
  message, built only from the fund's public texts ("Check your <reference label>", then its help
  text), so the portal cannot be used to find out which accounts exist or are on stop;
* a fund's public stop message is shown, when the fund has one, in that same message for EVERY
  reference failure, not only for accounts on stop (shown only for accounts on stop, it would
  tell the public that the account exists and is on stop). The staff stop reason and the account
  holder's name are never shown;
* amount failures (not a number, zero, more than the fund's maximum) are about the fund, not the
  account, and say so plainly.

Checks are rate-limited per address (PORTAL_CHECK_RATE_LIMIT, PORTAL_CHECKOUT_RATE_LIMIT) in the
store Flask-Limiter uses for logins (RATELIMIT_STORAGE_URI, shared by the processes).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.i18n import N_, Fixed
from app.domain.money import Money
from app.models.base import utcnow
from app.models.portal import PortalBasket
from app.models.reference import Fund
from app.services.validation import normalise_reference, validate_reference

#: references typed by the public: letters, digits, "/" and spaces (LocalGov IMS's rule), and no
#: longer than an account reference column
PUBLIC_REFERENCE = re.compile(r"^[A-Za-z0-9/ ]{1,30}$")
DEFAULT_MAX_ITEMS = 10
#: baskets untouched for this long are forgotten
BASKET_LIFETIME = dt.timedelta(days=2)

NOT_AVAILABLE = N_("You cannot pay for this online. Choose another payment type.")
CHOOSE_FUND = N_("Select what you want to pay for")
ENTER_REFERENCE = N_("Enter your reference")
ENTER_AMOUNT = N_("Enter the amount you want to pay")
AMOUNT_FORMAT = N_("Enter the amount in pounds and pence, like 12.50")
AMOUNT_ZERO = N_("The amount must be more than £0.00")
AMOUNT_REFUSED = N_("We cannot take this amount online. Contact us to pay it.")
IN_BASKET = N_("This reference is already in your basket")


@dataclass
class PublicCheck:
    """The outcome a citizen may see: ``errors`` maps a field (fund, reference, amount) to one
    plain message (a Fixed, translated by the page). ``reference`` is the normalised reference."""

    fund: Fund | None
    reference: str
    amount: int | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _config(key: str, default):
    from flask import current_app, has_app_context

    return current_app.config.get(key, default) if has_app_context() else default


def max_items() -> int:
    """At most this many items in a basket: IMS_BASKET_MAX_ITEMS (default 10), the setting
    card_payments.start_payment also enforces."""
    return int(_config("IMS_BASKET_MAX_ITEMS", DEFAULT_MAX_ITEMS) or DEFAULT_MAX_ITEMS)


def online_method_code(session: Session) -> str | None:
    """The payment method online card payments post with (IMS_CARD_ONLINE_METHOD), when it exists:
    its amount limits apply to portal items as they do at checkout."""
    from app.models.reference import PaymentMethod

    code = str(_config("IMS_CARD_ONLINE_METHOD", "WEB") or "")
    if not code:
        return None
    return session.scalar(select(PaymentMethod.code).where(PaymentMethod.code == code.upper()))


# --------------------------------------------------------------------------- funds
def online_funds(session: Session) -> list[Fund]:
    """The funds the public may pay online (offered online and not disabled), by public name."""
    funds = session.scalars(select(Fund).where(Fund.offered_online.is_(True),
                                               Fund.disabled.is_(False))).all()
    return sorted(funds, key=lambda f: f.public_title().lower())


def online_fund(session: Session, code: str | None) -> Fund | None:
    """The fund with this code when the public may pay it online; None when it is unknown,
    disabled or not offered online (the pages say NOT_AVAILABLE for each)."""
    if not isinstance(code, str) or not code.strip() or len(code) > 10 or "\x00" in code:
        return None
    fund = session.scalar(select(Fund).where(Fund.code == code.strip().upper()))
    if fund is None or fund.disabled or not fund.offered_online:
        return None
    return fund


def reference_message(fund: Fund, language: str | None = None) -> str:
    """The one message for every reference failure of this fund (see the module docstring)."""
    from flask_babel import gettext

    label = fund.text("reference_label", language) or gettext("reference")
    parts = [gettext("Check your %(label)s", label=label[:1].lower() + label[1:])]
    help_text = fund.text("reference_help", language)
    if help_text:
        parts.append(help_text)
    stop = fund.text("public_stop_message", language)
    if stop:
        parts.append(stop)
    return " – ".join(parts[:2]) + ("" if len(parts) < 3 else ". " + parts[2])


# --------------------------------------------------------------------------- checks
def parse_amount(text) -> tuple[int | None, Fixed | None]:
    """Pence from what the citizen typed ("12.50", "£1,234.50"), or the message to show."""
    if not isinstance(text, str) or not text.strip():
        return None, ENTER_AMOUNT
    try:
        money = Money.parse_form(text[:40], allow_zero=True)
    except (ValidationError, ValueError):
        return None, AMOUNT_FORMAT
    if money.pence <= 0:
        return None, AMOUNT_ZERO
    return money.pence, None


def public_check(session: Session, fund: Fund | None, reference, amount: int | None, *,
                 basket: list[dict] | None = None, method_code: str | None = "") -> PublicCheck:
    """Check one item as receipts are checked; the result tells only what the public may know.

    ``amount`` is pence (already parsed; None when the amount field had its own error),
    ``basket`` the items already in the basket (a reference may be there once per fund).
    """
    ref = normalise_reference(reference if isinstance(reference, str) else "")
    result = PublicCheck(fund=fund, reference=ref, amount=amount)
    if fund is None or fund.disabled or not fund.offered_online:
        result.errors["fund"] = NOT_AVAILABLE
        return result
    if not ref:
        result.errors["reference"] = ENTER_REFERENCE
    elif not PUBLIC_REFERENCE.match(ref):
        result.errors["reference"] = "reference"  # the fund's own message, below
    if amount is not None and fund.maximum_amount is not None and amount > fund.maximum_amount:
        result.errors["amount"] = N_("The amount must be £%(max)s or less",
                                     max=str(Money(fund.maximum_amount)))
    if method_code == "":
        method_code = online_method_code(session)
    if "reference" not in result.errors:
        checked = validate_reference(session, fund.code, ref, amount, method_code)
        for fld in checked.field_errors:
            if fld == "account_reference":
                result.errors.setdefault("reference", "reference")
            elif fld == "amount" and amount is not None:
                result.errors.setdefault("amount", AMOUNT_REFUSED)
            elif fld in ("fund_code", "payment_method_code"):
                result.errors.setdefault("fund", NOT_AVAILABLE)
        if "reference" not in result.errors and basket and any(
                i.get("fund_code") == fund.code and i.get("reference") == ref for i in basket):
            result.errors["reference"] = IN_BASKET
    if result.errors.get("reference") == "reference":
        result.errors["reference"] = reference_message(fund)
    return result


# --------------------------------------------------------------------------- rate limits
def rate_limited(kind: str, address: str | None) -> bool:
    """Count one ``kind`` ("check" or "checkout") from ``address``; True when over its limit
    (PORTAL_CHECK_RATE_LIMIT / PORTAL_CHECKOUT_RATE_LIMIT, e.g. "30 per minute")."""
    from flask import current_app
    from limits import parse

    limit = current_app.config.get(f"PORTAL_{kind.upper()}_RATE_LIMIT")
    if not limit:
        return False
    limiter = current_app.appbuilder.sm.limiter
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return False
    return not limiter.limiter.hit(parse(limit), "ims-portal", kind, address or "unknown")


# --------------------------------------------------------------------------- baskets
def new_basket(session: Session, items: list[dict] | None = None) -> PortalBasket:
    """A new empty (or prefilled) basket; forgets baskets untouched for BASKET_LIFETIME."""
    session.execute(delete(PortalBasket).where(PortalBasket.updated_at < utcnow() - BASKET_LIFETIME))
    basket = PortalBasket(token=secrets.token_urlsafe(32))
    basket.items = items or []
    basket.payer = {}
    session.add(basket)
    session.flush()
    return basket


def find_basket(session: Session, token) -> PortalBasket | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 64:
        return None
    basket = session.scalar(select(PortalBasket).where(PortalBasket.token == token))
    if basket is None or basket.updated_at < utcnow() - BASKET_LIFETIME:
        return None
    return basket


def add_item(basket: PortalBasket, fund: Fund, reference: str, amount: int) -> Fixed | None:
    """Add a checked item; the message when the basket is full."""
    items = basket.items
    if len(items) >= max_items():
        return N_("Your basket is full: you can pay for up to %(n)s items at a time",
                  n=max_items())
    items.append({"fund_code": fund.code, "reference": reference, "amount": int(amount)})
    basket.items = items
    return None


def remove_item(basket: PortalBasket, index: int) -> bool:
    items = basket.items
    if not 0 <= index < len(items):
        return False
    del items[index]
    basket.items = items
    return True


def basket_lines(session: Session, basket: PortalBasket) -> list[dict]:
    """The basket's items with their funds (None when a fund is gone), for the pages."""
    codes = {i.get("fund_code") for i in basket.items}
    funds = {f.code: f for f in session.scalars(select(Fund).where(Fund.code.in_(codes)))}
    return [{**i, "index": n, "fund": funds.get(i.get("fund_code"))}
            for n, i in enumerate(basket.items)]


def payer_fields(session: Session, basket: PortalBasket) -> list[str]:
    """What the basket's funds ask of the payer: some of "name", "email", "address"."""
    asked: list[str] = []
    for line in basket_lines(session, basket):
        fund = line["fund"]
        if fund is None:
            continue
        for name in ("name", "email", "address"):
            if getattr(fund, f"ask_payer_{name}") and name not in asked:
                asked.append(name)
    return [n for n in ("name", "email", "address") if n in asked]


def recheck_basket(session: Session, basket: PortalBasket) -> list[Fixed]:
    """Problems with the basket as it stands (before checkout): empty, too many items, an item
    whose fund is no longer offered online or that no longer passes (same public messages)."""
    items = basket.items
    if not items:
        return [N_("Your basket is empty. Add something to pay for first.")]
    problems: list[Fixed] = []
    if len(items) > max_items():
        problems.append(N_("Your basket is full: you can pay for up to %(n)s items at a time",
                           n=max_items()))
    for line in basket_lines(session, basket):
        fund = line["fund"]
        check = public_check(session, fund if fund is not None and fund.offered_online
                             and not fund.disabled else None, line["reference"], line["amount"])
        if not check.ok:
            problems.append(N_("Item %(n)s cannot be paid: remove it or change it. %(why)s",
                               n=line["index"] + 1,
                               why=" ".join(str(m) for m in check.errors.values())))
    return problems


def validate_payer(asked: list[str], form) -> tuple[dict, dict[str, Fixed]]:
    """The payer details from a form, and the errors for the fields the basket's funds ask."""
    payer = {n: (form.get(n) or "").strip()[:limit] for n, limit in
             (("name", 200), ("email", 254), ("address", 1000))}
    errors: dict[str, Fixed] = {}
    if "name" in asked and not payer["name"]:
        errors["name"] = N_("Enter your full name")
    if "email" in asked:
        if not payer["email"]:
            errors["email"] = N_("Enter your email address")
        elif not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", payer["email"]):
            errors["email"] = N_("Enter an email address in the correct format, like "
                                 "name@example.com")
    elif payer["email"] and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", payer["email"]):
        errors["email"] = N_("Enter an email address in the correct format, like "
                             "name@example.com")
    if "address" in asked and not payer["address"]:
        errors["address"] = N_("Enter your address")
    for name, value in payer.items():
        if any(ord(c) < 32 and c not in "\r\n" for c in value):
            errors[name] = N_("Remove the special characters")
    return payer, errors


# --------------------------------------------------------------------------- demo data
#: The demo council's funds offered online, with their public texts in English and Welsh.
DEMO_FUNDS = {
    "CTAX": dict(public_name="Council Tax", public_name_cy="Treth Gyngor",
                 reference_label="Council Tax account number",
                 reference_label_cy="Rhif cyfrif Treth Gyngor",
                 reference_help="9 characters, at the top of your bill",
                 reference_help_cy="9 nod, ar frig eich bil",
                 ask_payer_email=True),
    "HRA": dict(public_name="Housing rent", public_name_cy="Rhent tai",
                reference_label="Rent account number", reference_label_cy="Rhif cyfrif rhent",
                reference_help="HR, then 7 characters, on your rent card",
                reference_help_cy="HR, yna 7 nod, ar eich cerdyn rhent",
                public_stop_message="If your reference is right, phone 01632 960 000 to pay.",
                public_stop_message_cy="Os yw eich cyfeirnod yn gywir, ffoniwch 01632 960 000 i "
                                       "dalu.",
                ask_payer_name=True, ask_payer_email=True),
    "PCN": dict(public_name="Parking fine (penalty charge notice)",
                public_name_cy="Dirwy parcio (hysbysiad tâl cosb)",
                reference_label="Penalty charge notice number",
                reference_label_cy="Rhif yr hysbysiad tâl cosb",
                reference_help="10 characters, like LW12345678, on the notice",
                reference_help_cy="10 nod, fel LW12345678, ar yr hysbysiad",
                ask_payer_email=True),
    "LIB": dict(public_name="Library charges", public_name_cy="Taliadau llyfrgell",
                reference_label="Library card number", reference_label_cy="Rhif cerdyn llyfrgell",
                reference_help="10 digits, on the back of your card",
                reference_help_cy="10 digid, ar gefn eich cerdyn",
                ask_payer_name=True, ask_payer_email=True, ask_payer_address=True),
}


def seed_portal(session: Session) -> int:
    """Offer the demo funds online with their public texts, once (a fund that already has a
    public name is left as the council set it). Returns how many funds it set up."""
    done = 0
    for code, texts in DEMO_FUNDS.items():
        fund = session.scalar(select(Fund).where(Fund.code == code))
        if fund is None or fund.public_name is not None:
            continue
        fund.offered_online = True
        for key, value in texts.items():
            setattr(fund, key, value)
        done += 1
    return done
