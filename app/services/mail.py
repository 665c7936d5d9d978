"""Email through Flask-Mail to the SMTP server in config (MAIL_SERVER, MAIL_PORT, MAIL_USE_TLS,
MAIL_USERNAME, MAIL_PASSWORD, MAIL_FROM). Nothing is sent when MAIL_SERVER is empty."""

from __future__ import annotations

import logging

from flask import current_app, render_template
from flask_babel import force_locale
from flask_mail import Mail, Message

from app.domain.money import Money

log = logging.getLogger(__name__)


def _mail() -> Mail | None:
    cfg = current_app.config
    if not str(cfg.get("MAIL_SERVER") or "").strip():
        return None
    cfg.setdefault("MAIL_DEFAULT_SENDER", cfg.get("MAIL_FROM") or "ims@localhost")
    state = current_app.extensions.get("mail")
    if state is None:
        Mail(current_app)
    return current_app.extensions["mail"]


def send(to: str, subject: str, body: str) -> bool:
    mail = _mail()
    if mail is None:
        return False
    msg = Message(subject=subject, recipients=[to], body=body,
                  sender=current_app.config.get("MAIL_FROM") or "ims@localhost")
    mail.send(msg)
    return True


def send_card_receipt(payment) -> bool:
    """The emailed receipt of a paid card payment, in the payer's language."""
    if not payment.payer_email or payment.status != "paid":
        return False
    council = current_app.config.get("COUNCIL_NAME") or ""
    with force_locale(payment.language if payment.language in ("en", "cy") else "en"):
        from flask_babel import gettext as _

        subject = _("Your payment to %(council)s: receipt %(number)s", council=council,
                    number=payment.receipt_number)
        body = render_template("card_payments/receipt_email.txt", p=payment, council=council,
                               total=str(Money(payment.amount)),
                               items=[{**i, "pounds": str(Money(i["amount"]))} for i in payment.items])
    return send(payment.payer_email, subject, body)
