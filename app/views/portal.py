"""The citizen payment portal at /pay (no login): GOV.UK Design System pages, English and Welsh.

One thing per page: what to pay for → reference and amount → basket (add more, remove) → the
payer's details when a fund asks → check your answers → the provider's card page → back to
/pay/return/<token>, where the IMS asks the provider for the payment's state and shows the
receipt number, or a failed/cancelled page that returns to the basket.

The basket lives on the server (app/models/portal.py); the browser's (signed) session holds only
its token. Every form carries the CSRF token (Flask-WTF checks every POST here). Reference checks
and checkouts are rate-limited per address (app/services/portal.py).
"""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import refresh

from app.domain.i18n import N_
from app.extensions import db
from app.security.redirects import local_path
from app.services import portal as svc

log = logging.getLogger(__name__)
bp = Blueprint("portal", __name__, url_prefix="/pay")
BASKET_KEY = "portal_basket"
TOO_MANY = N_("You have tried too many times. Wait a minute and try again.")


# --------------------------------------------------------------------------- helpers
def _language() -> str:
    from flask_babel import get_locale

    loc = get_locale()
    return "cy" if loc is not None and loc.language == "cy" else "en"


def _basket(create: bool = False):
    basket = svc.find_basket(db.session, session.get(BASKET_KEY))
    if basket is None and create:
        basket = svc.new_basket(db.session)
        session[BASKET_KEY] = basket.token
    return basket


def _page(template: str, status: int = 200, **context):
    basket = _basket()
    context.setdefault("basket_count", len(basket.items) if basket is not None else 0)
    return render_template(f"portal/{template}", language=_language(),
                           portal_name=current_app.config.get("PORTAL_COUNCIL_NAME")
                           or current_app.config["COUNCIL_NAME"],
                           portal_logo=current_app.config.get("PORTAL_LOGO_URL") or None,
                           **context), status


def _too_many(template: str, **context):
    return _page(template, 429, errors={"form": TOO_MANY}, **context)


def _address() -> str:
    return request.remote_addr or "unknown"


# --------------------------------------------------------------------------- pages
@bp.get("/")
def start():
    return _page("start.html", funds=svc.online_funds(db.session))


@bp.get("/language/<code>")
def language(code: str):
    """Switch the portal between English and Cymraeg, then back to the page it came from."""
    if code not in ("en", "cy"):
        abort(404)
    session["locale"] = code
    refresh()
    target = local_path(request.args.get("next"))
    if not target or not target.startswith("/pay"):
        target = url_for("portal.start")
    return redirect(target)


@bp.route("/what", methods=["GET", "POST"])
def what():
    funds = svc.online_funds(db.session)
    if request.method == "POST":
        fund = svc.online_fund(db.session, request.form.get("fund"))
        if fund is not None:
            return redirect(url_for("portal.item", code=fund.code))
        message = svc.CHOOSE_FUND if not request.form.get("fund") else svc.NOT_AVAILABLE
        return _page("what.html", 400, funds=funds, errors={"fund": message})
    return _page("what.html", funds=funds, errors={})


@bp.route("/item/<code>", methods=["GET", "POST"])
def item(code: str):
    fund = svc.online_fund(db.session, code)
    if fund is None:
        return _page("unavailable.html", 404)
    form = {"reference": "", "amount": ""}
    errors: dict = {}
    if request.method == "POST":
        form = {k: (request.form.get(k) or "")[:100] for k in form}
        if svc.rate_limited("check", _address()):
            return _too_many("item.html", fund=fund, form=form)
        basket = _basket(create=True)
        amount, amount_error = svc.parse_amount(form["amount"])
        check = svc.public_check(db.session, fund, form["reference"], amount, basket=basket.items)
        errors = dict(check.errors)
        if amount_error is not None:
            errors["amount"] = amount_error
        if not errors:
            full = svc.add_item(basket, fund, check.reference, amount)
            if full is None:
                db.session.commit()
                return redirect(url_for("portal.basket"))
            errors["form"] = full
        db.session.commit()
        return _page("item.html", 400, fund=fund, form=form, errors=errors)
    return _page("item.html", fund=fund, form=form, errors=errors)


@bp.get("/basket")
def basket():
    b = _basket()
    lines = svc.basket_lines(db.session, b) if b is not None else []
    return _page("basket.html", lines=lines, total=sum(i["amount"] for i in lines),
                 full=len(lines) >= svc.max_items(), max_items=svc.max_items(),
                 errors={})


@bp.post("/basket/remove/<int:index>")
def remove(index: int):
    b = _basket()
    if b is not None and svc.remove_item(b, index - 1):
        db.session.commit()
    return redirect(url_for("portal.basket"))


@bp.post("/basket/empty")
def empty():
    b = _basket()
    if b is not None:
        b.items = []
        db.session.commit()
    return redirect(url_for("portal.basket"))


def _continue_target(b) -> str:
    asked = svc.payer_fields(db.session, b)
    if asked and not set(asked) <= {k for k, v in b.payer.items() if v}:
        return url_for("portal.details")
    return url_for("portal.check")


@bp.get("/basket/continue")
def proceed():
    b = _basket()
    if b is None or not b.items:
        return redirect(url_for("portal.basket"))
    return redirect(_continue_target(b))


@bp.route("/details", methods=["GET", "POST"])
def details():
    b = _basket()
    if b is None or not b.items:
        return redirect(url_for("portal.basket"))
    asked = svc.payer_fields(db.session, b)
    if request.method == "POST":
        payer, errors = svc.validate_payer(asked, request.form)
        if errors:
            return _page("details.html", 400, asked=asked, form=payer, errors=errors)
        b.payer = payer
        db.session.commit()
        return redirect(url_for("portal.check"))
    return _page("details.html", asked=asked, form=b.payer, errors={})


@bp.route("/check", methods=["GET", "POST"])
def check():
    b = _basket()
    if b is None or not b.items:
        return redirect(url_for("portal.basket"))
    lines = svc.basket_lines(db.session, b)
    asked = svc.payer_fields(db.session, b)
    context = dict(lines=lines, total=sum(i["amount"] for i in lines), asked=asked,
                   payer=b.payer)
    problems = svc.recheck_basket(db.session, b)
    missing = [n for n in asked if not b.payer.get(n)]
    if request.method == "GET" or problems:
        return _page("check.html", 400 if request.method == "POST" else 200,
                     problems=problems, missing=missing, errors={}, **context)
    if missing:
        return redirect(url_for("portal.details"))
    if svc.rate_limited("checkout", _address()):
        return _too_many("check.html", problems=[], missing=[], **context)
    from app.domain.errors import ValidationError
    from app.services import card_payments
    from app.services.payments.base import ProviderError

    try:
        payment = card_payments.start_payment(
            db.session, items=[{"fund_code": i["fund_code"], "reference": i["reference"],
                                "amount": i["amount"]} for i in b.items],
            channel="online", language=_language(),
            payer={k: b.payer.get(k) or None for k in ("name", "email", "address")},
            return_path="/pay/return/{token}")
    except ValidationError as exc:
        # the basket changed under the citizen (a fund withdrawn): the public messages again
        db.session.rollback()
        log.info("portal checkout refused: %s", exc)
        problems = svc.recheck_basket(db.session, b) or [svc.NOT_AVAILABLE]
        return _page("check.html", 400, problems=problems, missing=[], errors={}, **context)
    except ProviderError as exc:
        db.session.rollback()
        log.warning("portal checkout: the payment provider failed: %s", exc)
        return _page("provider_down.html", 503)
    session["portal_last_payment"] = payment.token
    return redirect(payment.next_url or url_for("portal.returned", token=payment.token))


@bp.get("/return/<token>")
def returned(token: str):
    """Back from the provider: ask it for the payment's state (never trusting this URL alone)."""
    from app.services import card_payments

    if not 16 <= len(token) <= 64:
        return _page("unknown_payment.html", 404)
    from app.domain.errors import NotFound

    try:
        payment = card_payments.confirm_payment(db.session, token, source="return")
    except NotFound:
        payment = None
    db.session.commit()
    if payment is None:
        log.warning("portal return for an unknown payment token from %s", _address())
        return _page("unknown_payment.html", 404)
    req = payment.payment_request
    if payment.is_final and req is not None and req.return_url and payment.status == "paid":
        target = card_payments.caller_return_url(req)
        if target:
            return redirect(target)
    if payment.status == "paid":
        b = _basket()
        if b is not None and session.get("portal_last_payment") == payment.token:
            b.items = []
            b.payer = {}
            db.session.commit()
        return _page("paid.html", payment=payment, lines=_payment_lines(payment))
    if payment.status in ("created", "pending"):
        return _page("pending.html", payment=payment)
    # failed, cancelled or expired: the basket is still there (or is made again from the payment)
    if req is not None:
        return _page("not_paid.html", payment=payment,
                     again=url_for("portal.payment_request", token=req.token))
    b = _basket()
    if b is None or not b.items:
        b = _basket(create=True)
        b.items = [{"fund_code": i.get("fund_code"), "reference": i.get("reference"),
                    "amount": i.get("amount")} for i in payment.items]
        db.session.commit()
    return _page("not_paid.html", payment=payment, again=url_for("portal.basket"))


def _payment_lines(payment) -> list[dict]:
    from sqlalchemy import select

    from app.models.reference import Fund

    items = payment.items
    codes = {i.get("fund_code") for i in items}
    funds = {f.code: f for f in db.session.scalars(select(Fund).where(Fund.code.in_(codes)))}
    return [{**i, "fund": funds.get(i.get("fund_code"))} for i in items]


def _request(token: str):
    from app.domain.errors import NotFound
    from app.services import card_payments

    if not 16 <= len(token) <= 64:
        return None
    try:
        return card_payments.get_request(db.session, token)
    except NotFound:
        return None


@bp.route("/request/<token>", methods=["GET", "POST"])
def payment_request(token: str):
    """A payment request's link: its items, prefilled (set by the clerk or the calling system,
    so not changed here), then the provider's card page."""
    req = _request(token)
    if req is None:
        return _page("unknown_request.html", 404)
    if req.status not in ("created", "pending", "failed"):
        return _page("request_closed.html", 410, request_status=req.status,
                     receipt_number=req.receipt_number)
    lines = _payment_lines(req)
    if request.method == "GET":
        return _page("request.html", req=req, lines=lines, total=req.amount, errors={})
    if svc.rate_limited("checkout", _address()):
        return _too_many("request.html", req=req, lines=lines, total=req.amount)
    from app.domain.errors import Conflict, ValidationError
    from app.services import card_payments
    from app.services.payments.base import ProviderError

    try:
        payment = card_payments.start_request_payment(db.session, req.token, language=_language())
    except (ValidationError, Conflict) as exc:
        db.session.rollback()
        log.info("portal: payment request %s refused at checkout: %s", req.id, exc)
        return _page("request.html", 400, req=req, lines=lines, total=req.amount,
                     errors={"form": svc.NOT_AVAILABLE})
    except ProviderError as exc:
        db.session.rollback()
        log.warning("portal: the payment provider failed: %s", exc)
        return _page("provider_down.html", 503)
    return redirect(payment.next_url or url_for("portal.returned", token=payment.token))


def install_portal(app) -> None:
    """Register the portal (its forms are CSRF-checked by Flask-WTF like every page's)."""
    app.register_blueprint(bp)
