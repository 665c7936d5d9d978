"""Refund pages: request a refund from a transaction, the refund register (filters, CSV), a
refund's page (workflow history, postings), retry of a failed card refund, and refund payment
runs (BACS Standard 18 / CSV file, cheque list). Thin: the rules are in app/services/refunds.py."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from app.domain.errors import DomainError, NotFound, ValidationError
from app.domain.money import Money
from app.extensions import db
from app.formatting import money as fmt_money
from app.models.ledger import Transaction
from app.models.reference import PaymentMethod
from app.models.refund import RefundPaymentRun
from app.services import scope as SC
from app.services import audit
from app.services import ledger as L
from app.services import refunds as RF
from app.views.fields import form_amount

#: a refund's status in words (the status itself is a stored value, never looked up in gettext)
STATUS_LABELS = {"awaiting_approval": _l("awaiting approval"), "approved": _l("approved"),
                 "rejected": _l("rejected"), "paid": _l("paid"), "failed": _l("failed")}


def _username() -> str:
    return (getattr(g, "user", None) or current_user).username


class RefundView(BaseView):
    """Request a refund (Income Clerk); the register and each refund's page (finance readers)."""

    route_base = "/refunds"
    class_permission_name = "Refund"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"new": "write", "register": "read", "export_csv": "read",
                              "show": "read", "retry": "write"}
    default_view = "register"

    @expose("/new/<int:transaction_id>", methods=["GET", "POST"])
    @has_access
    def new(self, transaction_id):
        s = db.session
        txn = s.get(Transaction, transaction_id)
        if txn is None or not SC.fund_allowed(txn.fund_code):
            abort(404)
        pm = s.scalar(select(PaymentMethod).where(PaymentMethod.code == txn.payment_method_code))
        card_ok = bool(pm and pm.kind == "card" and pm.refundable and txn.external_reference)
        form = {"amount": str(Money(max(L.available_amount(s, txn), 0))), "reason": "",
                "method": "card" if card_ok else "bacs", "payee_name": RF.payer_name_of(s, txn) or "",
                "sort_code": "", "account_number": ""}
        errors: dict = {}
        status = 200
        if request.method == "POST":
            form = {k: request.form.get(k, "") for k in form}
            payee = None
            if form["method"] in ("bacs", "cheque"):
                payee = {"name": form["payee_name"], "sort_code": form["sort_code"],
                         "account_number": form["account_number"]}
            try:
                result = RF.request_refund(s, transaction_id=transaction_id,
                                           amount=form_amount(form["amount"]),
                                           reason=form["reason"], method=form["method"],
                                           payee=payee, actor=_username())
            except DomainError as exc:
                s.rollback()
                if isinstance(exc, NotFound):
                    abort(404)
                errors = exc.errors or {"": [exc.message]}
                flash(exc.message, "danger")
                status = exc.status
            else:
                flash(_("Refund %(id)s of %(amount)s requested: it is awaiting approval.",
                        id=result.refund.id, amount=fmt_money(result.refund.amount)), "success")
                return redirect(url_for("RefundView.show", pk=result.refund.id))
        return self.render_template(
            "refunds/new.html", t=txn, form=form, errors=errors, card_ok=card_ok, pm=pm,
            available=L.available_amount(s, txn), payer=RF.payer_name_of(s, txn)), status

    def _filters(self):
        try:
            return RF.parse_filters(request.args, parse_money=Money.parse_form), {}
        except ValidationError as exc:
            return None, exc.errors

    @expose("/")
    @has_access
    def register(self):
        f, errors = self._filters()
        rows = RF.search(db.session, f) if f is not None else []
        return self.render_template("refunds/register.html", rows=rows, errors=errors,
                                    args=(f.to_args() if f else {}), statuses=RF.STATUSES,
                                    methods=RF.METHODS), (422 if errors else 200)

    @expose("/export.csv")
    @has_access
    def export_csv(self):
        f, errors = self._filters()
        if f is None:
            return {"message": _("The filters are not valid."), "errors": errors}, 422
        resp = Response(RF.register_csv(db.session, f), mimetype="text/csv")
        resp.headers["Content-Disposition"] = "attachment; filename=refunds.csv"
        return resp

    @expose("/<int:pk>")
    @has_access
    def show(self, pk):
        s = db.session
        try:
            refund = RF.get_refund(s, pk)
        except NotFound:
            abort(404)
        sm = self.appbuilder.sm
        return self.render_template(
            "refunds/show.html", r=refund, t=refund.transaction, instance=refund.workflow_instance,
            postings=RF.postings_of(s, refund), history=audit.history_for(s, "Refund", refund.id),
            can_retry=sm.has_access("can_write", "Refund"))

    @expose("/<int:pk>/retry", methods=["POST"])
    @has_access
    def retry(self, pk):
        try:
            refund = RF.retry_refund(db.session, pk, actor=_username())
        except NotFound:
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return redirect(url_for("RefundView.show", pk=pk))
        flash(_("Refund %(id)s retried: it is now %(status)s.", id=refund.id,
                status=STATUS_LABELS.get(refund.status, refund.status)),
              "success" if refund.status == "paid" else "warning")
        return redirect(url_for("RefundView.show", pk=pk))


class RefundPaymentRunView(BaseView):
    """Finance Managers pay approved BACS and cheque refunds in numbered runs."""

    route_base = "/refund-payment-runs"
    class_permission_name = "RefundPaymentRun"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "create": "write", "show": "read",
                              "bacs_file": "read", "bacs_csv": "read", "cheques": "read",
                              "cheques_csv": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        s = db.session
        runs = list(s.scalars(select(RefundPaymentRun).order_by(RefundPaymentRun.id.desc()).limit(100)))
        return self.render_template("refunds/runs.html", waiting=RF.awaiting_payment_run(s),
                                    runs=runs)

    @expose("/new", methods=["POST"])
    @has_access
    def create(self):
        try:
            result = RF.create_payment_run(db.session, refund_ids=request.form.getlist("refund_id"),
                                           actor=_username())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "warning" if exc.status == 409 else "danger")
            return redirect(url_for("RefundPaymentRunView.index"))
        run = result.run
        flash(_("Payment run %(n)s: %(count)d refund(s), %(total)s paid.", n=run.number,
                count=run.bacs_count + run.cheque_count, total=fmt_money(run.total)), "success")
        if result.skipped:
            flash(_("Skipped (already paid or no longer approved): %(ids)s",
                    ids=", ".join(map(str, result.skipped))), "warning")
        return redirect(url_for("RefundPaymentRunView.show", pk=run.id))

    def _run(self, pk):
        try:
            return RF.get_run(db.session, pk)
        except NotFound:
            abort(404)

    @expose("/<int:pk>")
    @has_access
    def show(self, pk):
        run = self._run(pk)
        return self.render_template("refunds/run.html", run=run)

    @expose("/<int:pk>/bacs-standard18.txt")
    @has_access
    def bacs_file(self, pk):
        run = self._run(pk)
        resp = Response(RF.bacs_standard18(run), mimetype="text/plain")
        resp.headers["Content-Disposition"] = f"attachment; filename={run.number}-bacs-std18.txt"
        return resp

    @expose("/<int:pk>/bacs.csv")
    @has_access
    def bacs_csv(self, pk):
        run = self._run(pk)
        resp = Response(RF.bacs_csv(run), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f"attachment; filename={run.number}-bacs.csv"
        return resp

    @expose("/<int:pk>/cheques")
    @has_access
    def cheques(self, pk):
        run = self._run(pk)
        return self.render_template("refunds/cheques.html", run=run,
                                    cheques=RF.cheque_rows(db.session, run),
                                    council_name=current_app.config.get("COUNCIL_NAME"))

    @expose("/<int:pk>/cheques.csv")
    @has_access
    def cheques_csv(self, pk):
        run = self._run(pk)
        resp = Response(RF.cheque_csv(db.session, run), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f"attachment; filename={run.number}-cheques.csv"
        return resp


def _pay_approved_card_refunds(response):
    """After a request that approved card refunds has committed, pay them (see refunds.PAY_QUEUE)."""
    session = db.session
    if session.info.get(RF.PAY_QUEUE):
        try:
            RF.pay_queued(session, actor="system")
        except Exception:  # the refund stays approved; `ims tick` pays it
            session.rollback()
    return response


def register_refund_views(appbuilder) -> None:
    """Refunds menu (register, payment runs) and the request page."""

    cat = "Refunds"
    appbuilder.add_view(RefundView, "Refund register", label=_l("Refund register"),
                        icon="fa-undo", category=cat, category_label=_l("Refunds"),
                        category_icon="fa-undo")
    appbuilder.add_view(RefundPaymentRunView, "Refund payment runs",
                        label=_l("Refund payment runs"), icon="fa-university", category=cat)

    from flask import current_app as app

    app.after_request(_pay_approved_card_refunds)
