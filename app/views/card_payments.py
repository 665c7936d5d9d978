"""Staff card-payment pages: the list of card payments (pending, failed, expired... with
filters), a payment's page ("check with the provider now"), card payments by phone (MOTO) from
the receipt page, and payment requests (create, list, cancel). Thin: app/services/card_payments."""

from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.security.current import current_username
from app.domain.errors import DomainError, NotFound, ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.card_payment import CARD_PAYMENT_STATUSES, CHANNELS, CardPayment
from app.models.reference import Fund
from app.services import scope as SC
from app.services import audit
from app.services import card_payments as CP
from app.services.payments import ProviderError
from app.views.fields import form_amount


def _date(value):
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError("Enter a date as YYYY-MM-DD.",
                              {"date": ["Enter a date as YYYY-MM-DD."]}) from None


class CardPaymentView(BaseView):
    """Card payments taken online, by phone and for payment requests."""

    route_base = "/card-payments"
    class_permission_name = "CardPayment"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "show": "read", "check": "write", "moto": "write",
                              "moto_return": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        args = {k: (request.args.get(k) or "").strip()[:100] for k in
                ("status", "channel", "date_from", "date_to", "q")}
        errors: dict = {}
        rows: list = []
        if args["status"] and args["status"] not in CARD_PAYMENT_STATUSES:
            errors["status"] = [_("Unknown status.")]
        if args["channel"] and args["channel"] not in CHANNELS:
            errors["channel"] = [_("Unknown channel.")]
        try:
            dfrom, dto = _date(args["date_from"]), _date(args["date_to"])
        except ValidationError:
            errors["date"] = [_("Enter a date as YYYY-MM-DD.")]
        if not errors:
            rows = CP.search(db.session, status=args["status"] or None,
                             channel=args["channel"] or None, date_from=dfrom, date_to=dto,
                             text=args["q"] or None)
        return self.render_template(
            "card_payments/index.html", rows=rows, args=args, errors=errors,
            statuses=CARD_PAYMENT_STATUSES, channels=CHANNELS, counts=CP.counts(db.session),
            status_labels=CP.STATUS_LABELS, channel_labels=CP.CHANNEL_LABELS), \
            (422 if errors else 200)

    @expose("/<int:pk>")
    @has_access
    def show(self, pk):
        cp = db.session.get(CardPayment, pk)
        if cp is None or not SC.items_allowed(cp.items_json):
            abort(404)
        return self.render_template("card_payments/show.html", p=cp,
                                    history=audit.history_for(db.session, "CardPayment", cp.id),
                                    status_labels=CP.STATUS_LABELS,
                                    channel_labels=CP.CHANNEL_LABELS)

    @expose("/<int:pk>/check", methods=["POST"])
    @has_access
    def check(self, pk):
        """Ask the provider now (as `ims tick` does)."""
        cp = db.session.get(CardPayment, pk)
        if cp is None or not SC.items_allowed(cp.items_json):
            abort(404)
        cp = CP.confirm_payment(db.session, cp.id, source="staff")
        flash(_("The provider was asked: the payment is %(status)s.",
                status=CP.STATUS_LABELS.get(cp.status, cp.status)), "info")
        return redirect(url_for("CardPaymentView.show", pk=pk))

    @expose("/moto", methods=["POST"])
    @has_access
    def moto(self):
        """Card (phone): the receipt page's lines paid on the provider's MOTO page."""
        from app.views.ledger import _rows_from_form

        items, errors = [], {}
        for i, row in enumerate(_rows_from_form(request.form)):
            fund = db.session.scalar(select(Fund).where(Fund.code == (row.get("fund_code") or "").strip()))
            amount = form_amount(row.get("amount") or "")
            if not isinstance(amount, Money) or amount.pence <= 0:
                errors[f"lines[{i}].amount"] = [_("Enter an amount like 12.50.")]
                continue
            items.append({"fund_id": fund.id if fund is not None else 0,
                          "reference": (row.get("account_reference") or "").strip(),
                          "amount": amount.pence})
        if not errors:
            try:
                cp = CP.start_payment(db.session, items=items, channel="moto", language="en",
                                      payer={}, user=current_username(),
                                      return_path="/card-payments/moto/{token}")
            except ValidationError as exc:
                db.session.rollback()
                errors = exc.errors or {"": [exc.message]}
            except ProviderError as exc:
                db.session.rollback()
                flash(_("The card payment provider could not be reached: %(error)s",
                        error=str(exc)), "danger")
                return redirect(url_for("ReceiptView.new"))
            else:
                return redirect(cp.next_url)
        for key, msgs in errors.items():
            flash(f"{key}: {msgs[0]}" if key else msgs[0], "danger")
        return redirect(url_for("ReceiptView.new"))

    @expose("/moto/<token>")
    @has_access
    def moto_return(self, token):
        """Back from the provider's MOTO page: confirm, then the printable receipt."""
        try:
            cp = CP.confirm_payment(db.session, token, source="return")
        except NotFound:
            abort(404)
        if cp.channel != "moto":
            abort(404)
        if cp.status == "paid":
            flash(_("Card payment taken: receipt %(number)s.", number=cp.receipt_number), "success")
            return redirect(url_for("ReceiptView.print_receipt", number=cp.receipt_number))
        return self.render_template("card_payments/show.html", p=cp, history=[],
                                    status_labels=CP.STATUS_LABELS,
                                    channel_labels=CP.CHANNEL_LABELS)


class PaymentRequestView(BaseView):
    """Income Clerks create payment requests (fund, reference, amount, email), see their status
    and cancel them."""

    route_base = "/payment-requests"
    class_permission_name = "PaymentRequest"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "new": "write", "cancel": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        status = (request.args.get("status") or "").strip()
        if status and status not in CP.REQUEST_STATUSES:
            status = ""
        rows = CP.list_requests(db.session, status=status or None)
        return self.render_template("card_payments/requests.html", rows=rows, status=status,
                                    statuses=CP.REQUEST_STATUSES, status_labels=CP.STATUS_LABELS,
                                    next_url=CP.request_next_url)

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def new(self):
        funds = db.session.scalars(SC.restrict(select(Fund).where(Fund.disabled.is_(False)),
                                               Fund.code).order_by(Fund.code)).all()
        form = {k: (request.form.get(k) or "").strip() for k in
                ("fund_code", "reference", "amount", "email", "name")}
        errors: dict = {}
        status = 200
        if request.method == "POST":
            try:
                req = CP.create_request(
                    db.session, items=[{"fund_code": form["fund_code"], "reference": form["reference"],
                                        "amount": form_amount(form["amount"])}],
                    actor=current_username(), email=form["email"] or None, name=form["name"] or None)
            except DomainError as exc:
                db.session.rollback()
                found = exc.errors or {"": [exc.message]}
                errors = {k.replace("items[0].", ""): v for k, v in found.items()}
                status = exc.status
                flash(_("The payment request was not created: correct the fields marked below."), "danger")
            else:
                flash(_("Payment request %(id)s created: send the payer this link: %(url)s",
                        id=req.id, url=CP.request_next_url(req)), "success")
                return redirect(url_for("PaymentRequestView.index"))
        return self.render_template("card_payments/request_new.html", funds=funds, form=form,
                                    errors=errors), status

    @expose("/<int:pk>/cancel", methods=["POST"])
    @has_access
    def cancel(self, pk):
        try:
            req = CP.cancel_request(db.session, pk, actor=current_username())
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash(_("Payment request %(id)s cancelled.", id=req.id), "success")
        return redirect(url_for("PaymentRequestView.index"))


def register_card_payment_views(appbuilder) -> None:
    cat = "Income"  # beside receipts and transactions (the top bar has one row at 1366 px)
    appbuilder.add_view(CardPaymentView, "Card payments", label=_l("Card payments"),
                        icon="fa-credit-card", category=cat)
    appbuilder.add_view(PaymentRequestView, "Payment requests", label=_l("Payment requests"),
                        icon="fa-envelope", category=cat)
