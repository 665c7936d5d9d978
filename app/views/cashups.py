"""Cash-up pages (eReturns): the list, cash up my till, one cash-up (correct, void), the printable
banking summary for the bag; cash-up template rows per office (reference data)."""

from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.domain.errors import DomainError, ValidationError
from app.extensions import db
from app.models.cashup import CASH_UP_STATUSES, CashUpTemplateRow
from app.models.reference import Office
from app.services import cashups as CU
from app.services.audit import history_for
from app.views.base import ImsModelView, datamodel
from app.views.fields import form_amount

STATUS_LABELS = {"submitted": _l("Submitted"), "returned": _l("Returned for correction"),
                 "approved": _l("Approved"), "voided": _l("Voided")}
CHEQUE_ROWS = 6


def _user() -> str:
    from app.security.current import current_username

    return current_username()


def _roles() -> set[str]:
    from app.security.current import current_roles

    return current_roles()


def _day(value) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else dt.date.today()
    except ValueError:
        return dt.date.today()


def form_data(form) -> dict:
    """The cash-up form's fields as the service takes them (blank cheque rows are skipped)."""
    denominations = {key: form.get(f"d_{key}", "") for key in CU.DENOMINATION_KEYS}
    cheques = []
    for i in range(int(form.get("cheque_rows", CHEQUE_ROWS) or CHEQUE_ROWS) if
                   str(form.get("cheque_rows", "")).isdigit() else CHEQUE_ROWS):
        row = {k: (form.get(f"c{i}_{k}") or "").strip()
               for k in ("drawer", "sort_code", "cheque_number", "amount")}
        if any(row.values()):
            row["amount"] = form_amount(row["amount"]) if row["amount"] else None
            cheques.append(row)
        if i >= CU.MAX_CHEQUES:
            break
    lines = []
    for key in form:
        if key.startswith("t_") and key[2:].isdigit():
            lines.append({"template_row_id": int(key[2:]),
                          "amount": form_amount(form.get(key)) or "0"})
    return {"office_code": form.get("office_code") or None, "till_date": form.get("till_date"),
            "denominations": denominations, "cheques": cheques, "lines": lines,
            "bag_number": form.get("bag_number"), "variance_reason": form.get("variance_reason")}


class CashUpView(BaseView):
    route_base = "/cash-ups"
    class_permission_name = "CashUp"
    base_permissions = ["can_read", "can_write", "can_void"]
    method_permission_name = {"index": "read", "detail": "read", "banking": "read",
                              "new": "write", "resubmit": "write", "void": "void"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        status = request.args.get("status") or None
        status = status if status in CASH_UP_STATUSES else None
        rows = CU.search(db.session, username=_user(), roles=_roles(), status=status)
        return self.render_template(
            "cashups/index.html", rows=rows, statuses=STATUS_LABELS, status=status,
            may_write=self.appbuilder.sm.has_access("can_write", "CashUp"))

    def _form_page(self, *, office_code, till_date, values=None, errors=None, cash_up=None,
                   status=200):
        session = db.session
        if cash_up is not None:
            office_code, till_date = cash_up.office_code, cash_up.till_date
            receipts = CU.receipts_of(session, cash_up)
            till = {"cash": cash_up.receipted_cash, "cheques": cash_up.receipted_cheques,
                    "total": cash_up.receipted_cash + cash_up.receipted_cheques,
                    "by_method": _by_method(receipts),
                    "template_rows": CU.template_rows(session, office_code)}
        else:
            till = CU.till_summary(session, _user(), office_code, till_date)
        offices = session.scalars(select(Office).order_by(Office.code)).all()
        values = values or {}
        return self.render_template(
            "cashups/new.html", till=till, office_code=office_code, till_date=till_date,
            offices=offices, values=values, errors=errors or {}, cash_up=cash_up,
            denominations=[(k, CU.denomination_label(p), p)
                           for k, p in CU.DENOMINATION_KEYS.items()],
            cheque_rows=max(CHEQUE_ROWS, len(values.get("cheques") or [])),
            statuses=STATUS_LABELS), status

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def new(self):
        if request.method == "GET":
            office = request.args.get("office_code") or None
            return self._form_page(office_code=office, till_date=_day(request.args.get("till_date")))
        form = request.form
        data = form_data(form)
        try:
            cu = CU.submit_cash_up(db.session, actor=_user(), data=data)
        except ValidationError as exc:
            flash(exc.message, "danger")
            return self._form_page(office_code=data["office_code"],
                                   till_date=_day(form.get("till_date")),
                                   values=_echo(form), errors=exc.errors, status=422)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for("CashUpView.new", office_code=data["office_code"] or "",
                                    till_date=form.get("till_date") or ""))
        flash(_("Cash-up %(number)s was submitted for approval.", number=cu.number), "success")
        return redirect(url_for("CashUpView.detail", pk=cu.id))

    def _get(self, pk):
        try:
            cu = CU.get_cash_up(db.session, pk)
            CU.check_may_read(cu, _user(), _roles())
        except DomainError:
            abort(404)
        return cu

    @expose("/<int:pk>")
    @has_access
    def detail(self, pk):
        session = db.session
        cu = self._get(pk)
        sm = self.appbuilder.sm
        return self.render_template(
            "cashups/detail.html", cu=cu, d=CU.cash_up_json(session, cu),
            denominations=CU.denomination_rows(cu), receipts=CU.receipts_of(session, cu),
            credit=CU.expected_credit_of(session, cu), statuses=STATUS_LABELS,
            history=history_for(session, "CashUp", cu.id),
            may_void=sm.has_access("can_void", "CashUp") and cu.status in ("submitted", "returned")
            and (cu.cashier == _user() or bool(_roles() & {"Finance Manager", "Head of Finance"})),
            may_correct=cu.status == "returned" and cu.cashier == _user()
            and sm.has_access("can_write", "CashUp"))

    @expose("/<int:pk>/correct", methods=["GET", "POST"])
    @has_access
    def resubmit(self, pk):
        cu = self._get(pk)
        if request.method == "GET":
            return self._form_page(office_code=None, till_date=None, cash_up=cu,
                                   values=_values_of(cu))
        data = form_data(request.form)
        try:
            cu = CU.resubmit_cash_up(db.session, cu.id, actor=_user(), data=data)
        except ValidationError as exc:
            flash(exc.message, "danger")
            cu = self._get(pk)
            return self._form_page(office_code=None, till_date=None, cash_up=cu,
                                   values=_echo(request.form), errors=exc.errors, status=422)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for("CashUpView.detail", pk=pk))
        flash(_("Cash-up %(number)s was submitted again.", number=cu.number), "success")
        return redirect(url_for("CashUpView.detail", pk=cu.id))

    @expose("/<int:pk>/void", methods=["POST"])
    @has_access
    def void(self, pk):
        self._get(pk)
        try:
            cu = CU.void_cash_up(db.session, pk, actor=_user(), roles=_roles(),
                                 reason=request.form.get("reason"))
            flash(_("Cash-up %(number)s was voided.", number=cu.number), "success")
        except DomainError as exc:
            flash(exc.message, "danger")
        return redirect(url_for("CashUpView.detail", pk=pk))

    @expose("/<int:pk>/banking")
    @has_access
    def banking(self, pk):
        cu = self._get(pk)
        from flask import current_app

        return self.render_template("cashups/banking.html", s=CU.banking_summary(db.session, cu),
                                    council_name=current_app.config.get("COUNCIL_NAME", ""),
                                    statuses=STATUS_LABELS)


def _by_method(receipts) -> list[dict]:
    out: dict[str, dict] = {}
    for t, kind in receipts:
        m = out.setdefault(t.payment_method_code, {"method": t.payment_method_code, "kind": kind,
                                                   "count": 0, "amount": 0})
        m["count"] += 1
        m["amount"] += t.amount
    return sorted(out.values(), key=lambda m: m["method"])


def _echo(form) -> dict:
    """What was typed, to show again with the errors."""
    values = {k: v for k, v in form.items() if k != "csrf_token"}
    values["cheques"] = [1] * CHEQUE_ROWS
    return values


def _values_of(cu) -> dict:
    values = {"bag_number": cu.bag_number, "variance_reason": cu.variance_reason or ""}
    for r in CU.denomination_rows(cu):
        if r["count"]:
            values[f"d_{r['key']}"] = str(r["count"])
    for i, c in enumerate(cu.cheques):
        values.update({f"c{i}_drawer": c.drawer, f"c{i}_sort_code": c.sort_code,
                       f"c{i}_cheque_number": c.cheque_number,
                       f"c{i}_amount": f"{c.amount // 100}.{c.amount % 100:02d}"})
    for line in cu.lines:
        if line.template_row_id:
            values[f"t_{line.template_row_id}"] = f"{line.amount // 100}.{line.amount % 100:02d}"
    values["cheques"] = list(cu.cheques)
    return values


class CashUpTemplateRowView(ImsModelView):
    """The rows an office always counts on its cash-up (Administrator)."""

    datamodel = datamodel(CashUpTemplateRow)
    class_permission_name = "CashUpTemplate"
    list_title = _l("Cash-up template rows")
    show_title = _l("Cash-up template row")
    add_title = _l("Add cash-up template row")
    edit_title = _l("Edit cash-up template row")
    list_columns = ["office", "description", "fund", "account_reference", "sort_order", "disabled"]
    add_columns = ["office", "description", "fund", "account_reference", "sort_order", "disabled"]
    edit_columns = add_columns
    show_columns = add_columns
    base_order = ("office_code", "asc")
    label_columns = {"office": _l("Office"), "description": _l("Description"), "fund": _l("Fund"),
                     "account_reference": _l("Account reference"), "sort_order": _l("Order"),
                     "disabled": _l("Disabled")}

    def pre_add(self, item):
        CU.check_template_row(db.session, item)

    def pre_update(self, item):
        CU.check_template_row(db.session, item)


def register_cashup_views(appbuilder) -> None:
    appbuilder.add_view(CashUpView, "Cash-ups", label=_l("Cash-ups"), icon="fa-money",
                        category="Income", category_label=_l("Income"))
    appbuilder.add_view(CashUpTemplateRowView, "Cash-up templates",
                        label=_l("Cash-up templates"), icon="fa-th-list",
                        category="Reference data")
