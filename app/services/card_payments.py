"""Card payments through the payment provider: pending baskets, confirmation exactly once,
expiry, webhooks, and the payment requests that clerks and other council systems create.

Flow: ``start_payment`` keeps the basket on the server (items and total, re-validated here),
creates the provider payment (GOV.UK Pay or the simulator) and gives the provider's hosted page
(``next_url``). The citizen pays there; nothing about the card reaches the IMS. The payment is
then confirmed by whichever comes first of the return page, the provider's signed webhook and
``ims tick``: each asks the provider for the payment's state (never trusting the return URL or
the webhook's body for the outcome), then locks the card payment row (locking.for_update) and
posts the receipt only if nobody has yet. The amount posted is the server-side basket's.

Paid money is never refused: an item that no longer validates when the payment is confirmed (a
fund disabled, an account put on stop) is posted to suspense, with the reason, in the same
receipt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import urllib.parse
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.money import MAX_PENCE, Money
from app.models.base import utcnow
from app.models.card_payment import (
    CARD_PAYMENT_STATUSES,
    CHANNELS,
    FINAL_STATUSES,
    OPEN_STATUSES,
    CardPayment,
    PaymentRequest,
)
from app.models.ledger import IdempotencyKey
from app.models.reference import Fund
from app.services import scope as SC
from app.services import audit
from app.services import receipts as R
from app.services.idempotency import check_same_request
from app.services.locking import for_update
from app.services.payments import (
    ProviderError,
    ProviderPayment,
    get_provider,
    provider_name,
)

log = logging.getLogger(__name__)

#: GOV.UK Pay's largest payment (pence)
PROVIDER_MAX_AMOUNT = 10_000_000
DEFAULT_MAX_ITEMS = 10
DEFAULT_EXPIRY_MINUTES = 90
LANGUAGES = ("en", "cy")
REQUEST_STATUSES = CARD_PAYMENT_STATUSES

STATUS_LABELS = {"created": N_("Created"), "pending": N_("Pending"), "paid": N_("Paid"),
                 "failed": N_("Failed"), "cancelled": N_("Cancelled"), "expired": N_("Expired")}
CHANNEL_LABELS = {"online": N_("Online"), "moto": N_("Card (phone)"),
                  "request": N_("Payment request")}


# --------------------------------------------------------------------------- configuration
def _cfg() -> dict:
    from flask import current_app, has_app_context

    return current_app.config if has_app_context() else {}


def _setting(name: str, default):
    value = _cfg().get(name)
    return default if value in (None, "") else value


def max_items() -> int:
    return int(_setting("IMS_BASKET_MAX_ITEMS", DEFAULT_MAX_ITEMS))


def expiry_minutes() -> int:
    return int(_setting("IMS_CARD_PAYMENT_EXPIRY_MINUTES", DEFAULT_EXPIRY_MINUTES))


def method_for(channel: str) -> str:
    if channel == "moto":
        return str(_setting("IMS_CARD_MOTO_METHOD", "TEL"))
    return str(_setting("IMS_CARD_ONLINE_METHOD", "WEB"))


def public_base_url() -> str:
    return str(_setting("IMS_PUBLIC_BASE_URL", "") or _setting("IMS_BASE_URL",
                                                                 "http://127.0.0.1:5000")).rstrip("/")


def provider(name: str | None = None):
    return get_provider(name, _cfg())


def return_url_for(payment: CardPayment) -> str:
    """The absolute URL the provider sends the payer back to (our own, from config)."""
    return public_base_url() + (payment.return_path or f"/pay/return/{payment.token}")


# --------------------------------------------------------------------------- look-ups
def _new_token() -> str:
    return secrets.token_urlsafe(24)


def find(session: Session, key) -> CardPayment | None:
    """A card payment by its public token (or its id, as an int)."""
    if isinstance(key, CardPayment):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return session.get(CardPayment, key)
    if isinstance(key, str) and 0 < len(key) <= 64:
        return session.scalar(select(CardPayment).where(CardPayment.token == key))
    return None


def get(session: Session, key) -> CardPayment:
    payment = find(session, key)
    if payment is not None and not SC.items_allowed(payment.items_json):
        raise SC.OutOfScope()
    if payment is None:
        raise NotFound("No such card payment.")
    return payment


# --------------------------------------------------------------------------- validation
def _int_pence(value, field: str, errors: dict) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.setdefault(field, []).append("Give the amount in whole pence.")
        return None
    if value <= 0 or value > MAX_PENCE:
        errors.setdefault(field, []).append("The amount must be more than zero.")
        return None
    return value


def check_items(session: Session, items, *, channel: str, method_code: str) -> list[dict]:
    """The basket's items re-validated on the server (fund exists, enabled, offered online for
    online payments; reference and amount as receipts check them). Items are {"fund_id" or
    "fund_code", "reference", "amount" (pence)}. ValidationError naming "items[i].field"."""
    errors: dict[str, list[str]] = {}
    if not isinstance(items, list) or not items:
        raise ValidationError("The basket is empty.", {"items": ["Add at least one item."]})
    if len(items) > max_items():
        raise ValidationError(f"A basket holds at most {max_items()} items.",
                              {"items": [f"At most {max_items()} items."]})
    cleaned: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        prefix = f"items[{i}]"
        if not isinstance(item, dict):
            errors.setdefault(prefix, []).append("Each item must be an object.")
            continue
        fund = None
        fid, fcode = item.get("fund_id"), item.get("fund_code")
        if isinstance(fid, int) and not isinstance(fid, bool):
            fund = session.get(Fund, fid) if 0 < fid < 2**31 else None
        elif isinstance(fcode, str) and fcode.strip():
            fund = session.scalar(select(Fund).where(Fund.code == fcode.strip().upper()))
        if fund is None:
            errors.setdefault(f"{prefix}.fund", []).append("Unknown fund.")
            continue
        if fund.disabled:
            errors.setdefault(f"{prefix}.fund", []).append(f"Fund {fund.code} is disabled.")
            continue
        if channel == "online" and not getattr(fund, "offered_online", True):
            errors.setdefault(f"{prefix}.fund", []).append(
                f"Fund {fund.code} is not offered online.")
            continue
        amount = _int_pence(item.get("amount"), f"{prefix}.amount", errors)
        ref = item.get("reference")
        if not isinstance(ref, str):
            errors.setdefault(f"{prefix}.reference", []).append("Give the reference as text.")
            continue
        if amount is None:
            continue
        local: dict[str, list[str]] = {}
        line = R.check_line(session, {"fund_code": fund.code, "account_reference": ref,
                                      "amount": Money(amount)}, prefix, local,
                            method_code=method_code)
        for k, v in local.items():
            errors.setdefault(k.replace(".account_reference", ".reference"), []).extend(v)
        if line is None:
            continue
        key = (fund.code, line["account_reference"] or "")
        if key in seen:
            errors.setdefault(f"{prefix}.reference", []).append(
                "This reference is already in the basket.")
            continue
        seen.add(key)
        cleaned.append({"fund_id": fund.id, "fund_code": fund.code,
                        "fund_name": fund.name, "reference": line["account_reference"],
                        "amount": amount})
    if errors:
        raise ValidationError("The basket is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    total = sum(c["amount"] for c in cleaned)
    if total > PROVIDER_MAX_AMOUNT:
        raise ValidationError(f"A card payment is at most {Money(PROVIDER_MAX_AMOUNT)}.",
                              {"items": [f"The total is more than {Money(PROVIDER_MAX_AMOUNT)}."]})
    return cleaned


def _payer(payer) -> dict:
    payer = payer if isinstance(payer, dict) else {}
    out = {}
    for key, limit in (("name", 200), ("email", 254), ("address", 1000)):
        value = payer.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()[:limit]
    if "email" in out and ("@" not in out["email"] or any(c in out["email"] for c in " \r\n<>,;")):
        raise ValidationError("Enter an email address like name@example.com.",
                              {"email": ["Enter an email address like name@example.com."]})
    return out


# --------------------------------------------------------------------------- start
def _description(items: list[dict], channel: str) -> str:
    council = str(_setting("COUNCIL_NAME", "Council"))
    names = ", ".join(dict.fromkeys(i["fund_name"] for i in items))
    return f"{council}: {names}"[:255]


def start_payment(session: Session, *, items: list[dict], channel: str, language: str = "en",
                  payer: dict | None = None, return_path: str | None = None, user=None,
                  payment_request: PaymentRequest | None = None,
                  provider_override=None) -> CardPayment:
    """Create the pending card payment of a basket and its provider payment.

    Returns the CardPayment (status "created") whose ``next_url`` is the provider's hosted card
    page. ``return_path`` is our own path the provider sends the payer back to; "{token}" (or
    "<token>") in it is replaced by the payment's public token (default "/pay/return/{token}").
    Raises ValidationError (nothing created) for a bad basket; ProviderError when the provider
    cannot be reached or refuses (the payment is then recorded as failed)."""
    if channel not in CHANNELS:
        raise ValidationError("Unknown payment channel.", {"channel": [f"One of {', '.join(CHANNELS)}."]})
    language = language if language in LANGUAGES else "en"
    method_code = method_for(channel)
    cleaned = check_items(session, items, channel=channel, method_code=method_code)
    who = _payer(payer)
    token = _new_token()
    path = return_path or "/pay/return/{token}"
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or len(path) > 400:
        raise ValidationError("The return path must be a path on this site.",
                              {"return_path": ["A path starting with /."]})
    path = path.replace("{token}", token).replace("<token>", token)
    prov = provider_override or provider()
    now = utcnow()
    username = getattr(user, "username", None) if user is not None and not isinstance(user, str) else user
    cp = CardPayment(token=token, status="created", channel=channel, language=language,
                     amount=sum(c["amount"] for c in cleaned), items_json=json.dumps(cleaned),
                     description=_description(cleaned, channel), provider=prov.name,
                     return_path=path, payer_name=who.get("name"), payer_email=who.get("email"),
                     payer_address=who.get("address"),
                     payment_request_id=payment_request.id if payment_request is not None else None,
                     created_by=username, created_at=now, updated_at=now,
                     expires_at=now + dt.timedelta(minutes=expiry_minutes()))
    session.add(cp)
    session.flush()
    audit.record(session, "card_payment.start", "CardPayment", cp.id, after={
        "channel": channel, "amount": str(Money(cp.amount)), "items": [
            f"{c['fund_code']}:{c['reference']}:{Money(c['amount'])}" for c in cleaned],
        "payment_request": cp.payment_request_id}, actor=username or "public")
    session.commit()
    try:
        made = prov.create_payment(
            amount=cp.amount, reference=f"IMS-CP{cp.id:06d}", description=cp.description,
            return_url=return_url_for(cp), language=language, email=cp.payer_email,
            moto=channel == "moto", cardholder_name=cp.payer_name,
            metadata={"ims_card_payment": cp.id, "channel": channel})
    except ProviderError as exc:
        cp = session.get(CardPayment, cp.id)
        cp.status, cp.failure_reason, cp.updated_at = "failed", str(exc)[:500], utcnow()
        audit.record(session, "card_payment.failed", "CardPayment", cp.id,
                     after={"status": "failed"}, reason=cp.failure_reason, actor="system")
        session.commit()
        log.warning("card payment %s: the provider did not create it: %s", cp.id, exc)
        raise
    cp.provider_payment_id = made.payment_id
    cp.provider_status = made.status
    cp.next_url = made.next_url
    cp.updated_at = utcnow()
    if payment_request is not None:
        payment_request.status = "pending"
    session.commit()
    return cp


# --------------------------------------------------------------------------- confirm
@dataclass
class Outcome:
    payment: CardPayment
    posted: bool = False


def _status_from(state: ProviderPayment) -> str:
    if state.status == "success":
        return "paid"
    if state.status in ("started", "submitted", "capturable"):
        return "pending"
    if state.status == "cancelled" or (state.status == "failed" and state.code == "P0030"):
        return "cancelled"
    if state.status == "failed" and state.code == "P0020":
        return "expired"
    if state.status in ("failed", "error"):
        return "failed"
    return "created"


def _lock(session: Session, payment_id: int) -> CardPayment:
    stmt = for_update(session, select(CardPayment).where(CardPayment.id == payment_id))
    return session.scalar(stmt.execution_options(populate_existing=True))


def confirm_payment(session: Session, payment_id_or_token, *, source: str = "return",
                    provider_override=None) -> CardPayment:
    """Ask the provider for the payment's state and record it; post the receipt exactly once
    when it succeeded. Idempotent and safe when the return page, the webhook and ``ims tick``
    run at once. Returns the card payment (its status, receipt_number)."""
    return _confirm(session, payment_id_or_token, source=source,
                    provider_override=provider_override).payment


def _confirm(session: Session, key, *, source: str, provider_override=None,
             expire_if_open: bool = False) -> Outcome:
    cp = find(session, key)
    if cp is None:
        raise NotFound("No such card payment.")
    # an expired payment is still asked about: if the payer paid after all, it is posted
    if cp.status in ("paid", "failed", "cancelled") or not cp.provider_payment_id:
        return Outcome(cp)
    prov = provider_override or provider(cp.provider)
    timed_out = False
    try:
        state = prov.get_payment(cp.provider_payment_id)
        if (expire_if_open and not state.finished and cp.status in OPEN_STATUSES
                and cp.expires_at <= utcnow()):
            # too old: cancel it at the provider first, so that it cannot be paid afterwards
            timed_out = True
            try:
                prov.cancel_payment(cp.provider_payment_id)
            except (ProviderError, AttributeError) as exc:
                log.info("card payment %s: the provider did not cancel it: %s", cp.id, exc)
            state = prov.get_payment(cp.provider_payment_id)
    except ProviderError as exc:
        log.warning("card payment %s: could not ask %s for its state (%s): %s", cp.id,
                    cp.provider, source, exc)
        session.rollback()
        return Outcome(cp)
    payment_id = cp.id
    session.rollback()  # the decision is taken on the locked row, read afresh
    try:
        cp = _lock(session, payment_id)
        if cp.status in FINAL_STATUSES and not (cp.status == "expired" and state.status == "success"):
            session.commit()
            return Outcome(cp)
        if state.payment_id != cp.provider_payment_id:
            log.error("card payment %s: the provider answered for another payment (%s)",
                      cp.id, state.payment_id)
            session.commit()
            return Outcome(cp)
        posted = _apply(session, cp, state, source=source, expire_if_open=expire_if_open,
                        timed_out=timed_out)
        session.commit()
    except Exception:
        session.rollback()
        raise
    if posted:
        _after_paid(session, cp)
    return Outcome(cp, posted)


def _apply(session: Session, cp: CardPayment, state: ProviderPayment, *, source: str,
           expire_if_open: bool = False, timed_out: bool = False) -> bool:
    """Record the provider's state on the locked card payment; True when the receipt was posted."""
    new = _status_from(state)
    if timed_out and new in ("cancelled", "created", "pending"):
        new = "expired"
        cp.failure_reason = "Not completed in time."
    before = {"status": cp.status, "provider_status": cp.provider_status}
    cp.provider_status = state.status
    cp.updated_at = utcnow()
    actor = f"card-payment:{source}"
    if new == "paid":
        if state.amount != cp.amount:
            cp.failure_reason = (f"The provider reports {state.amount} pence paid, the basket is "
                                 f"{cp.amount}: not posted, check with the provider.")[:500]
            log.error("card payment %s: amount mismatch %s != %s", cp.id, state.amount, cp.amount)
            audit.record(session, "card_payment.mismatch", "CardPayment", cp.id, before=before,
                         after={"provider_amount": state.amount}, reason=cp.failure_reason,
                         actor=actor)
            return False
        cp.card_brand = (state.card_brand or "")[:40] or None
        cp.last_four = (state.last_four or "")[-4:] or None
        _settlement_facts(cp, state)
        _post(session, cp, actor=actor)
        audit.record(session, "card_payment.paid", "CardPayment", cp.id, before=before, after={
            "status": "paid", "receipt_number": cp.receipt_number, "source": source,
            "provider_payment_id": cp.provider_payment_id, "card": f"{cp.card_brand} {cp.last_four}"},
            actor=actor)
        return True
    if new == "created" or new == "pending":
        if expire_if_open and cp.expires_at <= utcnow():
            new = "expired"
            cp.failure_reason = "Not completed in time."
        elif new == cp.status:
            return False
    elif not timed_out:
        cp.failure_reason = " ".join(x for x in (state.code, state.message) if x)[:500] or None
    cp.status = new
    if cp.payment_request_id and new in ("pending", "failed", "cancelled", "expired"):
        req = session.get(PaymentRequest, cp.payment_request_id)
        if req is not None and req.status not in ("paid", "cancelled", "expired"):
            # a failed or cancelled attempt leaves the request payable again
            req.status = "pending" if new == "pending" else "created"
    audit.record(session, "card_payment." + new, "CardPayment", cp.id, before=before,
                 after={"status": new, "source": source}, reason=cp.failure_reason, actor=actor)
    return False


def _settlement_facts(cp: CardPayment, state: ProviderPayment) -> None:
    """The provider's settlement date and fee, for bank reconciliation (a settlement groups a
    provider's payments settled on a day: app/services/reconciliation.py)."""
    if state.settled_date:
        try:
            cp.settled_date = dt.date.fromisoformat(str(state.settled_date)[:10])
        except ValueError:
            log.warning("card payment %s: unreadable settled date %r", cp.id, state.settled_date)
    if state.fee is not None and 0 <= state.fee <= cp.amount:
        cp.fee = state.fee


def _post(session: Session, cp: CardPayment, *, actor: str) -> None:
    method_code = method_for(cp.channel)
    cleaned, suspense = [], []
    for i, item in enumerate(cp.items):
        errors: dict[str, list[str]] = {}
        line = R.check_line(session, {"fund_code": item["fund_code"],
                                      "account_reference": item["reference"],
                                      "amount": Money(item["amount"])}, f"items[{i}]", errors,
                            method_code=method_code)
        if line is not None:
            line["narrative"] = f"Card payment {cp.id}"
            cleaned.append(line)
        else:
            reason = "; ".join(m for msgs in errors.values() for m in msgs)
            suspense.append({"amount": item["amount"], "reference_text": item["reference"],
                             "fund_code": item["fund_code"],
                             "narrative": f"Card payment {cp.id} ({cp.provider_payment_id})",
                             "reason": f"Paid by card but no longer valid: {reason}"})
    result = R.post_receipt(session, cleaned, payment_method_code=method_code, actor=actor,
                            transaction_date=dt.date.today(),
                            external_reference=cp.provider_payment_id, suspense=suspense,
                            provider=cp.provider)
    cp.status = "paid"
    cp.receipt_number = result.receipt_number
    cp.posting_group_id = result.group.id
    cp.paid_at = utcnow()
    cp.failure_reason = (f"{len(suspense)} item(s) posted to suspense" if suspense else None)
    if cp.payment_request_id:
        req = session.get(PaymentRequest, cp.payment_request_id)
        if req is not None:
            req.status, req.receipt_number, req.paid_at = "paid", cp.receipt_number, cp.paid_at


def _after_paid(session: Session, cp: CardPayment) -> None:
    """After the commit that posted the receipt: metrics and the emailed receipt."""
    try:
        from app import metrics

        metrics.receipt_posted(cp.amount)
    except Exception:  # noqa: BLE001 - metrics never break a payment
        log.debug("metrics not recorded", exc_info=True)
    if cp.payer_email:
        try:
            from app.services import mail

            if mail.send_card_receipt(cp):
                cp = session.get(CardPayment, cp.id)
                cp.emailed_at = utcnow()
                session.commit()
        except Exception:  # noqa: BLE001 - the receipt is posted; the email is a courtesy
            session.rollback()
            log.exception("card payment %s: the receipt email was not sent", cp.id)


# --------------------------------------------------------------------------- webhooks
def handle_webhook(session: Session, provider_key: str, body: bytes,
                   signature: str | None) -> tuple[int, str]:
    """A provider's webhook: the signature is checked, the payment looked up by the provider's
    payment id, and the state asked of the provider (the body is never trusted for it).
    Returns (HTTP status, message). Forged or unknown ones confirm nothing and are logged."""
    try:
        name = provider_name(_cfg(), provider_key)
    except ValueError:
        log.warning("webhook for unknown provider %r refused", provider_key)
        return 404, "Unknown provider."
    prov = provider(name)
    if not prov.verify_webhook_signature(body, signature):
        log.warning("webhook from %s refused: bad or missing Pay-Signature", name)
        audit.record(session, "card_payment.webhook_refused", "CardPayment", None,
                     reason="bad or missing signature", actor="webhook")
        session.commit()
        return 401, "Bad signature."
    try:
        message = json.loads(body)
    except ValueError:
        return 400, "Not JSON."
    if not isinstance(message, dict) or message.get("resource_type", "payment") != "payment":
        return 200, "Ignored."
    pid = message.get("resource_id")
    if not isinstance(pid, str) or not pid or len(pid) > 64:
        return 400, "No resource_id."
    cp = session.scalar(select(CardPayment).where(CardPayment.provider_payment_id == pid,
                                                  CardPayment.provider == name))
    if cp is None:
        log.warning("webhook from %s for unknown payment %r: nothing confirmed", name, pid)
        return 200, "Unknown payment."
    _confirm(session, cp.id, source="webhook")
    return 200, "OK"


# --------------------------------------------------------------------------- tick
def tick(session: Session, limit: int = 200) -> str | None:
    """Confirm open card payments by asking the provider; expire those past their time; expire
    payment requests past theirs."""
    now = utcnow()
    ids = session.scalars(select(CardPayment.id).where(CardPayment.status.in_(OPEN_STATUSES))
                          .order_by(CardPayment.id).limit(limit)).all()
    paid = expired = 0
    for pid in ids:
        try:
            out = _confirm(session, pid, source="tick", expire_if_open=True)
        except Exception:  # noqa: BLE001 - one bad payment never stops the others
            session.rollback()
            log.exception("card payment %s: tick could not confirm it", pid)
            continue
        paid += out.posted
        if out.payment.status == "expired":
            expired += 1
    # payments the provider never created (it was down) that are past their time
    stale = session.scalars(select(CardPayment.id).where(
        CardPayment.status.in_(OPEN_STATUSES), CardPayment.provider_payment_id.is_(None),
        CardPayment.expires_at <= now).limit(limit)).all()
    for pid in stale:
        cp = _lock(session, pid)
        if cp.status in OPEN_STATUSES:
            cp.status, cp.failure_reason = "expired", "Not completed in time."
            expired += 1
        session.commit()
    reqs = session.scalars(select(PaymentRequest).where(
        PaymentRequest.status.in_(("created", "failed")), PaymentRequest.expires_at <= now)
        .limit(limit)).all()
    for req in reqs:
        req.status = "expired"
        audit.record(session, "payment_request.expired", "PaymentRequest", req.id,
                     after={"status": "expired"}, actor="worker")
    session.commit()
    if not (paid or expired or reqs):
        return None
    return f"{paid} confirmed, {expired} expired, {len(reqs)} requests expired"


def _tick_job() -> str | None:
    from app.extensions import db

    return tick(db.session)


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("card-payments", _tick_job)


_register_job()


# --------------------------------------------------------------------------- staff list
def search(session: Session, *, status: str | None = None, channel: str | None = None,
           date_from: dt.date | None = None, date_to: dt.date | None = None,
           text: str | None = None, limit: int = 200) -> list[CardPayment]:
    stmt = select(CardPayment)
    if status:
        stmt = stmt.where(CardPayment.status == status)
    if channel:
        stmt = stmt.where(CardPayment.channel == channel)
    if date_from:
        stmt = stmt.where(CardPayment.created_at >= dt.datetime.combine(
            date_from, dt.time.min, dt.timezone.utc))
    if date_to:
        stmt = stmt.where(CardPayment.created_at < dt.datetime.combine(
            date_to + dt.timedelta(days=1), dt.time.min, dt.timezone.utc))
    if text:
        like = f"%{text.strip()[:100]}%"
        stmt = stmt.where(CardPayment.items_json.like(like) | CardPayment.receipt_number.like(like)
                          | CardPayment.provider_payment_id.like(like))
    rows = session.scalars(stmt.order_by(CardPayment.id.desc()).limit(limit))
    return [p for p in rows if SC.items_allowed(p.items_json)]  # the user's fund groups


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(CardPayment.status, func.count()).group_by(CardPayment.status))
    return {s: int(n) for s, n in rows}


def payment_json(cp: CardPayment) -> dict:
    return {"id": cp.id, "token": cp.token, "status": cp.status, "channel": cp.channel,
            "amount": str(Money(cp.amount)), "items": [
                {"fund_code": i["fund_code"], "reference": i["reference"],
                 "amount": str(Money(i["amount"]))} for i in cp.items],
            "receipt_number": cp.receipt_number, "provider": cp.provider,
            "provider_payment_id": cp.provider_payment_id, "card_brand": cp.card_brand,
            "last_four": cp.last_four, "created_at": cp.created_at.isoformat(),
            "paid_at": cp.paid_at.isoformat() if cp.paid_at else None}


# --------------------------------------------------------------------------- payment requests
def return_hosts() -> list[str]:
    raw = _setting("IMS_PAYMENT_RETURN_HOSTS", "")
    if isinstance(raw, list | tuple):
        return [h.strip().lower() for h in raw if h.strip()]
    return [h.strip().lower() for h in str(raw).split(",") if h.strip()]


def _check_return_url(url) -> str | None:
    if url in (None, ""):
        return None
    if not isinstance(url, str) or len(url) > 1000:
        raise ValidationError("return_url: not a URL.", {"return_url": ["Give a URL."]})
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise ValidationError("return_url: not an http(s) URL.",
                              {"return_url": ["Give an https URL."]})
    if host not in return_hosts():
        raise ValidationError(f"return_url: the host {host} is not on the allow-list.",
                              {"return_url": [f"The host {host} is not allowed "
                                              "(IMS_PAYMENT_RETURN_HOSTS)."]})
    return url


def _request_items(session: Session, items) -> list[dict]:
    """API/clerk items {"fund_code", "reference", "amount": "12.34" (or pence int)} checked as
    receipts are (the fund need not be offered online: a request is the council's own)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(items, list) or not items:
        raise ValidationError("Add at least one item.", {"items": ["Add at least one item."]})
    if len(items) > max_items():
        raise ValidationError(f"At most {max_items()} items.", {"items": [f"At most {max_items()} items."]})
    pence_items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.setdefault(f"items[{i}]", []).append("Each item must be an object.")
            continue
        amount = item.get("amount")
        if isinstance(amount, int) and not isinstance(amount, bool):
            pence = amount
        else:
            try:
                pence = R.parse_amount(amount, f"items[{i}].amount")
            except ValidationError as exc:
                for k, v in exc.errors.items():
                    errors.setdefault(k, []).extend(v)
                continue
        pence_items.append({"fund_code": item.get("fund_code"), "reference": item.get("reference"),
                            "amount": pence, "fund_id": item.get("fund_id")})
    if errors:
        raise ValidationError("The request is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    return check_items(session, pence_items, channel="request", method_code=method_for("request"))


#: IdempotencyKey.scope of POST /api/v1/payment-requests
IDEMPOTENCY_SCOPE = "payment_requests"


def _request_for_key(session: Session, key: str, actor: str,
                     fingerprint: str | None) -> PaymentRequest | None:
    """The payment request an earlier use of ``key`` by ``actor`` created (None: a new key);
    ValidationError (422) if that use had another body."""
    row = session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.scope == IDEMPOTENCY_SCOPE, IdempotencyKey.username == actor,
        IdempotencyKey.key == key))
    if row is None:
        return None
    check_same_request(row.request_fingerprint, fingerprint)
    return session.get(PaymentRequest, json.loads(row.response_body)["id"])


def create_request(session: Session, *, items, actor: str, email=None, name=None,
                   reference=None, return_url=None, language="en",
                   idempotency_key: str | None = None,
                   idempotency_fingerprint: str | None = None) -> PaymentRequest:
    """A payment request (Income Clerk or calling system): validated now, paid later by the
    citizen through ``next_url``. ValidationError (nothing created) names the bad item.

    ``idempotency_key`` (the API's Idempotency-Key header, per user): a repeat returns the request
    the first use created, as it is now, and creates nothing; a repeat whose
    ``idempotency_fingerprint`` (of the body) differs is a ValidationError (422). The key is
    claimed in the request's own transaction, so of two concurrent uses one creates the request
    and the other waits on the key's unique index (PostgreSQL) or the write lock (SQLite), then
    returns that request; a refused request releases the key with its rollback."""
    if idempotency_key is not None:
        first = _request_for_key(session, idempotency_key, actor, idempotency_fingerprint)
        if first is not None:
            return first
    try:
        return _create_request(session, items=items, actor=actor, email=email, name=name,
                               reference=reference, return_url=return_url, language=language,
                               idempotency_key=idempotency_key,
                               idempotency_fingerprint=idempotency_fingerprint)
    except IntegrityError:
        session.rollback()
        if idempotency_key is not None:
            first = _request_for_key(session, idempotency_key, actor, idempotency_fingerprint)
            if first is not None:
                return first
        raise Conflict("The payment request could not be saved because of a concurrent change; "
                       "try again.")
    except Exception:
        session.rollback()
        raise


def _create_request(session: Session, *, items, actor, email, name, reference, return_url,
                    language, idempotency_key, idempotency_fingerprint) -> PaymentRequest:
    cleaned = _request_items(session, items)
    who = _payer({"email": email, "name": name})
    if reference is not None and (not isinstance(reference, str) or len(reference) > 100):
        raise ValidationError("reference: at most 100 characters.",
                              {"reference": ["Text of at most 100 characters."]})
    url = _check_return_url(return_url)
    if url:
        signature_for([("id", "0")])  # refuses a return_url when no signing key is configured
    days = int(_setting("IMS_PAYMENT_REQUEST_DAYS", 28))
    claim = None
    if idempotency_key is not None:
        claim = IdempotencyKey(key=idempotency_key, scope=IDEMPOTENCY_SCOPE, username=actor,
                               status_code=201, response_body="{}",
                               request_fingerprint=idempotency_fingerprint)
        session.add(claim)
        session.flush()  # a concurrent use of the key waits here, then fails on the index
    req = PaymentRequest(token=_new_token(), status="created", items_json=json.dumps(cleaned),
                         amount=sum(c["amount"] for c in cleaned), email=who.get("email"),
                         name=who.get("name"), caller_reference=(reference or "").strip() or None,
                         return_url=url, language=language if language in LANGUAGES else "en",
                         created_by=actor, expires_at=utcnow() + dt.timedelta(days=days))
    session.add(req)
    session.flush()
    audit.record(session, "payment_request.create", "PaymentRequest", req.id, after={
        "amount": str(Money(req.amount)), "caller_reference": req.caller_reference,
        "items": [f"{c['fund_code']}:{c['reference']}:{Money(c['amount'])}" for c in cleaned]},
        actor=actor)
    if claim is not None:
        claim.response_body = json.dumps({"id": req.id})
    session.commit()
    return req


def get_request(session: Session, key) -> PaymentRequest:
    req = None
    if isinstance(key, int) and not isinstance(key, bool):
        req = session.get(PaymentRequest, key) if 0 < key < 2**31 else None
    elif isinstance(key, str) and 0 < len(key) <= 64:
        req = session.scalar(select(PaymentRequest).where(PaymentRequest.token == key))
    if req is not None and not SC.items_allowed(req.items_json):
        raise SC.OutOfScope()
    if req is None:
        raise NotFound("No such payment request.")
    return req


def request_next_url(req: PaymentRequest) -> str:
    return f"{public_base_url()}/pay/request/{req.token}"


def request_json(session: Session, req: PaymentRequest) -> dict:
    latest = session.scalar(select(CardPayment).where(CardPayment.payment_request_id == req.id)
                            .order_by(CardPayment.id.desc()).limit(1))
    out = {"id": req.id, "status": req.status, "items": [
        {"fund_code": i["fund_code"], "reference": i["reference"], "amount": str(Money(i["amount"]))}
        for i in req.items], "total": str(Money(req.amount)), "reference": req.caller_reference,
        "next_url": request_next_url(req), "created_at": req.created_at.isoformat(),
        "expires_at": req.expires_at.isoformat() if req.expires_at else None}
    if req.receipt_number:
        out["receipt_number"] = req.receipt_number
    if req.paid_at:
        out["paid_at"] = req.paid_at.isoformat()
    if latest is not None and latest.provider_payment_id:
        out["provider_payment_id"] = latest.provider_payment_id
    return out


def list_requests(session: Session, *, status: str | None = None, limit: int = 200) -> list[PaymentRequest]:
    stmt = select(PaymentRequest)
    if status:
        stmt = stmt.where(PaymentRequest.status == status)
    rows = session.scalars(stmt.order_by(PaymentRequest.id.desc()).limit(limit))
    return [r for r in rows if SC.items_allowed(r.items_json)]  # the user's fund groups


def cancel_request(session: Session, key, *, actor: str) -> PaymentRequest:
    req = get_request(session, key)
    req = session.scalar(for_update(session, select(PaymentRequest).where(
        PaymentRequest.id == req.id)).execution_options(populate_existing=True))
    if req.status not in ("created", "failed"):
        session.rollback()
        raise Conflict(f"Payment request {req.id} is {req.status} and cannot be cancelled.")
    before = {"status": req.status}
    req.status, req.cancelled_by = "cancelled", actor
    audit.record(session, "payment_request.cancel", "PaymentRequest", req.id, before=before,
                 after={"status": "cancelled"}, actor=actor)
    session.commit()
    return req


def start_request_payment(session: Session, key, *, language: str | None = None,
                          return_path: str | None = None) -> CardPayment:
    """The citizen pays a request: a card payment of its items (channel "request")."""
    req = get_request(session, key)
    if req.status in ("paid", "cancelled", "expired"):
        raise Conflict(f"This payment request is {req.status}.")
    if req.status == "pending":
        open_cp = session.scalar(select(CardPayment).where(
            CardPayment.payment_request_id == req.id, CardPayment.status.in_(OPEN_STATUSES))
            .order_by(CardPayment.id.desc()).limit(1))
        if open_cp is not None and open_cp.next_url:
            return open_cp
    items = [{"fund_id": i["fund_id"], "reference": i["reference"], "amount": i["amount"]}
             for i in req.items]
    # a request's funds are the council's choice: checked as for a phone payment
    cp = start_payment(session, items=items, channel="request",
                       language=language or req.language,
                       payer={"email": req.email, "name": req.name},
                       return_path=return_path or "/pay/return/{token}", payment_request=req)
    return cp


def signature_for(params: list[tuple[str, str]]) -> str:
    """HMAC-SHA256 (hex), with IMS_PAYMENT_REQUEST_SIGNING_KEY, of the parameters
    "id=<id>&status=<status>&receipt_number=<n>" joined in that order, as they appear in the
    return URL (percent-encoded)."""
    key = str(_setting("IMS_PAYMENT_REQUEST_SIGNING_KEY", ""))
    if not key:
        raise ValidationError("return_url: no IMS_PAYMENT_REQUEST_SIGNING_KEY is configured, so "
                              "the return cannot be signed.",
                              {"return_url": ["Returns to callers are not configured."]})
    message = urllib.parse.urlencode(params)
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def caller_return_url(req: PaymentRequest) -> str | None:
    """Where the citizen goes after paying a request: the caller's return_url with
    ?id=&status=&receipt_number=&signature= (None if the caller gave none)."""
    if not req.return_url:
        return None
    params = [("id", str(req.id)), ("status", req.status),
              ("receipt_number", req.receipt_number or "")]
    params.append(("signature", signature_for(params)))
    sep = "&" if urllib.parse.urlsplit(req.return_url).query else "?"
    return req.return_url + sep + urllib.parse.urlencode(params)
