"""Income ledger pages: take a payment, printable receipt, search/export, transaction details,
journals, transfers and the trial balance. Thin: the rules are in app/services."""

from __future__ import annotations

import datetime as dt

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from sqlalchemy import select

from app.security.current import current_username, may_override_stop
from app.domain.errors import DomainError, NotFound, ValidationError
from app.domain.ids import parse_id
from app.domain.money import Money
from app.extensions import db
from app.formatting import money as fmt_money
from app.formatting import when
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import Fund, Office, PaymentMethod, VatCode
from app.security.redirects import local_path
from app.services import journals as J
from app.services import ledger as L
from app.services import receipts as RC
from app.services import scope as SC
from app.services import search as S
from app.services.audit import history_for
from app.services.receipts import NON_RECEIPT_KINDS
from app.services import signin as till
from app.services.validation import validate_reference
from app.views.fields import form_amount


def _rows_from_form(form, fields=("fund_code", "account_reference", "amount", "vat_code", "narrative")):
    cols = {f: form.getlist(f) for f in fields}
    n = max((len(v) for v in cols.values()), default=0)
    rows = []
    for i in range(n):
        row = {f: (cols[f][i] if i < len(cols[f]) else "") for f in fields}
        if any((row.get(f) or "").strip() for f in ("fund_code", "account_reference", "amount")):
            rows.append(row)
    return rows


def _row_errors(errors: dict, prefix: str, n: int) -> tuple[list[dict], dict]:
    """Split "lines[i].field" errors into per-row dicts; the rest stay general."""
    rows = [dict() for _ in range(n)]
    general = {}
    for key, msgs in errors.items():
        if key.startswith(prefix + "["):
            idx, _, fld = key[len(prefix) + 1:].partition("].")
            if idx.isdigit() and int(idx) < n:
                rows[int(idx)].setdefault(fld or "row", []).extend(msgs)
                continue
        general[key] = msgs
    return rows, general


def _choices():
    s = db.session
    funds = s.scalars(SC.restrict(select(Fund).where(Fund.disabled.is_(False)), Fund.code)
                      .order_by(Fund.code)).all()
    methods = s.scalars(select(PaymentMethod).where(PaymentMethod.disabled.is_(False),
                                                    PaymentMethod.kind.notin_(NON_RECEIPT_KINDS))
                        .order_by(PaymentMethod.code)).all()
    vat = s.scalars(select(VatCode).order_by(VatCode.code)).all()
    offices = s.scalars(select(Office).order_by(Office.code)).all()
    return funds, methods, vat, offices


class ReceiptView(BaseView):
    route_base = "/receipts"
    class_permission_name = "Receipt"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"new": "write", "validate": "read", "print_receipt": "read"}
    default_view = "new"

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def new(self):
        funds, methods, vat, offices = _choices()
        allowed, default_office = till.receipt_rules(db.session, current_username())
        if allowed is not None:
            methods = [m for m in methods if m.code in allowed]
        rows = [{}, {}]
        row_errors: list[dict] = [{}, {}]
        general: dict = {}
        form = {"payment_method_code": "", "transaction_date": dt.date.today().isoformat(),
                "office_code": default_office or "",
                "external_reference": ""}
        if request.method == "POST":
            form = {k: request.form.get(k, "") for k in form}
            rows = _rows_from_form(request.form)
            lines = [{k: (v.strip() or None) if isinstance(v, str) else v for k, v in r.items()}
                     for r in rows]
            for line in lines:
                line["amount"] = form_amount(line["amount"])
            try:
                result = RC.take_receipt(
                    db.session, lines=lines, payment_method_code=form["payment_method_code"] or None,
                    actor=current_username(), may_override_stop=may_override_stop(),
                    office_code=form["office_code"] or None,
                    transaction_date=form["transaction_date"] or None,
                    external_reference=form["external_reference"] or None)
            except ValidationError as exc:
                row_errors, general = _row_errors(exc.errors, "lines", len(rows))
                if not rows:
                    rows, row_errors = [{}], [{}]
                flash(_("The receipt was not posted: correct the fields marked below."), "danger")
            else:
                flash(_("Receipt %(number)s posted: %(total)s.", number=result.receipt_number,
                        total=fmt_money(result.total)), "success")
                if result.period_message:
                    wanted = result.group.requested_accounting_date
                    flash(_("The transaction date %(date)s is in the closed period %(period)s: "
                            "the receipt was posted on %(used)s, the first day of the first open "
                            "period.", date=when(wanted), period=f"{wanted:%Y-%m}",
                            used=when(result.accounting_date)), "warning")
                return redirect(url_for("ReceiptView.print_receipt", number=result.receipt_number))
        return self.render_template("ledger/receipt_new.html", funds=funds, methods=methods,
                                    vat_codes=vat, offices=offices, rows=rows,
                                    row_errors=row_errors, general=general, form=form)

    @expose("/validate", methods=["POST"])
    @has_access
    def validate(self):
        """JSON for inline validation as the cashier leaves a field."""
        data = request.get_json(silent=True) or {}
        errors: dict[str, list[str]] = {}
        amount = None
        raw = data.get("amount")
        if raw not in (None, ""):
            try:
                amount = RC.parse_amount(form_amount(raw), "amount")
            except ValidationError as exc:
                errors.update(exc.errors)
        ref = data.get("account_reference") if isinstance(data.get("account_reference"), str) else ""
        fund = data.get("fund_code") if isinstance(data.get("fund_code"), str) else ""
        method = data.get("payment_method_code") if isinstance(data.get("payment_method_code"), str) else None
        if fund.strip():
            SC.require_fund(fund.strip().upper())  # another group's accounts: 404, as if none
        res = validate_reference(db.session, fund or None, ref or None, amount, method or None,
                                 may_override_stop=may_override_stop())
        for fld, msgs in res.field_errors.items():
            if fld == "account_reference" and not ref:
                continue  # not typed yet
            errors.setdefault(fld, []).extend(msgs)
        vat_amount = None
        if res.fund is not None and amount:
            vat_amount = str(Money(RC.vat_preview(db.session, res.fund.code, amount,
                                                  data.get("vat_code") or res.fund.vat_code)))
        db.session.rollback()
        return jsonify(valid=not errors, errors=errors, warnings=res.warnings,
                       account_name=res.account.name if res.account is not None else None,
                       vat_override=bool(res.fund and res.fund.vat_override),
                       default_vat_code=res.fund.vat_code if res.fund is not None else None,
                       vat_amount=vat_amount)

    @expose("/<number>/print")
    @has_access
    def print_receipt(self, number):
        try:
            view = RC.receipt_view(db.session, number)
        except NotFound:
            abort(404)
        return self.render_template("ledger/receipt_print.html", r=view,
                                    council_name=current_app.config.get("COUNCIL_NAME"),
                                    council_vat=current_app.config.get("COUNCIL_VAT_NUMBER"))


class TransactionView(BaseView):
    route_base = "/transactions"
    class_permission_name = "Transaction"
    base_permissions = ["can_read"]
    method_permission_name = {"search": "read", "export_csv": "read", "export_xlsx": "read",
                              "detail": "read"}
    default_view = "search"

    def _filters(self):
        try:
            return S.parse_filters(request.args, parse_money=Money.parse_form), {}
        except ValidationError as exc:
            return None, exc.errors

    @expose("/")
    @has_access
    def search(self):
        f, errors = self._filters()
        page = None
        if f is not None:
            try:
                pnum = int(request.args.get("page", 1))
            except ValueError:
                pnum = 1
            page = S.search(db.session, f, pnum, 50)
        funds, methods, _vat, offices = _choices()
        all_methods = db.session.scalars(select(PaymentMethod).order_by(PaymentMethod.code)).all()
        args = f.to_args() if f is not None else {}
        return self.render_template("ledger/search.html", page=page, errors=errors, f=f,
                                    args=args, funds=funds, methods=all_methods, offices=offices,
                                    sortable=list(S.SORTABLE)), (422 if errors else 200)

    @expose("/export.csv")
    @has_access
    def export_csv(self):
        f, errors = self._filters()
        if f is None:
            return jsonify(message="The search is not valid.", errors=errors), 422
        session = db.session
        resp = Response(stream_with_context(S.csv_stream(session, f)), mimetype="text/csv")
        resp.headers["Content-Disposition"] = "attachment; filename=transactions.csv"
        return resp

    @expose("/export.xlsx")
    @has_access
    def export_xlsx(self):
        f, errors = self._filters()
        if f is None:
            return jsonify(message="The search is not valid.", errors=errors), 422
        import tempfile

        from flask import send_file

        tmp = tempfile.TemporaryFile(suffix=".xlsx")  # on disk, not in memory: no row cap
        S.write_xlsx(db.session, f, tmp)
        tmp.seek(0)
        return send_file(tmp, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                         as_attachment=True, download_name="transactions.xlsx")

    @expose("/<int:pk>")
    @has_access
    def detail(self, pk):
        s = db.session
        t = s.get(Transaction, pk)
        if t is None or not SC.fund_allowed(t.fund_code):
            abort(404)
        group = t.posting_group
        postings = s.scalars(select(LedgerLine).where(
            (LedgerLine.transaction_id == t.id) | (LedgerLine.group_id == t.posting_group_id))
            .order_by(LedgerLine.group_id, LedgerLine.id)).all()
        postings = [p for p in postings if p.fund_code is None or SC.fund_allowed(p.fund_code)]
        groups = {g.id: g for g in s.scalars(select(PostingGroup).where(
            PostingGroup.id.in_({l.group_id for l in postings})))}
        siblings = s.scalars(select(Transaction).where(Transaction.posting_group_id == group.id)
                             .order_by(Transaction.id)).all()
        siblings = SC.keep(siblings)
        refunds = _refunds_for(s, t.id)
        available, reserved = L.availability(s, t)
        sm = self.appbuilder.sm
        return self.render_template(
            "ledger/transaction.html", t=t, group=group, postings=postings, groups=groups,
            siblings=siblings, available=available, reserved=reserved, related=J.related(s, t),
            refunds=refunds,
            account_balance=L.balance_of(s, L.FUND, t.fund_code, t.account_reference)
            if t.account_reference else None,
            reversed=L.is_reversed(s, group), history=history_for(s, "Transaction", t.id),
            can_journal=sm.has_access("can_write", "Journal"),
            can_transfer=sm.has_access("can_write", "Transfer"))


def _refunds_for(session, transaction_id):
    """Refund rows for a transaction when the refunds feature is installed (else empty)."""
    import importlib

    model = None
    for name in ("app.models.refund", "app.models.refunds"):
        try:
            model = getattr(importlib.import_module(name), "Refund", None)
        except ImportError:
            continue
        if model is not None:
            break
    if model is None or not hasattr(model, "transaction_id"):
        return []
    try:
        return session.scalars(select(model).where(model.transaction_id == transaction_id)).all()
    except Exception:
        session.rollback()
        return []


class JournalView(BaseView):
    route_base = "/journals"
    class_permission_name = "Journal"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"new": "write", "undo": "write"}
    default_view = "new"

    @expose("/new/<int:pk>", methods=["GET", "POST"])
    @has_access
    def new(self, pk):
        s = db.session
        source = s.get(Transaction, pk)
        if source is None or not SC.fund_allowed(source.fund_code):
            abort(404)
        funds, _m, _v, _o = _choices()
        rows, row_errors, general = [{}], [{}], {}
        reason = ""
        if request.method == "POST":
            reason = request.form.get("reason", "")
            rows = _rows_from_form(request.form, ("fund_code", "account_reference", "amount", "narrative"))
            targets = [{k: (v.strip() or None) for k, v in r.items()} for r in rows]
            for target in targets:
                target["amount"] = form_amount(target["amount"])
            try:
                group = J.journal(s, transaction_id=pk, targets=targets, reason=reason,
                                  actor=current_username(), may_override_stop=may_override_stop())
            except DomainError as exc:
                row_errors, general = _row_errors(exc.errors, "targets", len(rows))
                if not exc.errors:
                    general = {"": [exc.message]}
                if not rows:
                    rows, row_errors = [{}], [{}]
                flash(exc.message, "danger")
                source = s.get(Transaction, pk)
            else:
                flash(_("Journal %(number)s posted.", number=group.number), "success")
                return redirect(url_for("TransactionView.detail", pk=pk))
        return self.render_template("ledger/journal_new.html", source=source, funds=funds,
                                    available=L.available_amount(s, source), rows=rows,
                                    row_errors=row_errors, general=general, reason=reason,
                                    kind="journal")

    @expose("/<int:pk>/undo", methods=["POST"])
    @has_access
    def undo(self, pk):
        back = local_path(request.form.get("next")) or url_for("TransactionView.search")
        try:
            rev = J.undo(db.session, group_id=pk, reason=request.form.get("reason"),
                         actor=current_username())
        except DomainError as exc:
            flash(exc.message + " " + " ".join(m for v in exc.errors.values() for m in v), "danger")
        else:
            flash(_("Undone by reversal %(number)s.", number=rev.number), "success")
        return redirect(back)


class TransferView(BaseView):
    route_base = "/transfers"
    class_permission_name = "Transfer"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"new": "write"}
    default_view = "new"

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def new(self):
        s = db.session
        funds, _m, _v, _o = _choices()
        source_id = request.values.get("source_transaction_id", "").strip()
        rows, row_errors, general = [{}, {}], [{}, {}], {}
        reason = ""
        if request.method == "POST":
            reason = request.form.get("reason", "")
            fields = ("transaction_id", "fund_code", "account_reference", "amount")
            rows = _rows_from_form(request.form, fields)
            clean = [{k: (v.strip() or None) for k, v in r.items()} for r in rows]
            for row in clean:
                row["amount"] = form_amount(row["amount"])
            try:
                if source_id:
                    group = J.transfer(s, reason=reason, actor=current_username(),
                                       source_transaction_id=source_id, targets=clean,
                                       may_override_stop=may_override_stop())
                else:
                    group = J.transfer(s, reason=reason, actor=current_username(), pairs=clean,
                                       may_override_stop=may_override_stop())
            except DomainError as exc:
                prefix = "targets" if source_id else "pairs"
                row_errors, general = _row_errors(exc.errors, prefix, len(rows))
                if not exc.errors:
                    general = {"": [exc.message]}
                if not rows:
                    rows, row_errors = [{}], [{}]
                flash(exc.message, "danger")
            else:
                flash(_("Transfer %(number)s posted.", number=group.number), "success")
                first = s.scalar(select(Transaction.source_transaction_id).where(
                    Transaction.posting_group_id == group.id).limit(1))
                return redirect(url_for("TransactionView.detail", pk=first))
        source_pk = parse_id(source_id)
        source = s.get(Transaction, source_pk) if source_pk else None
        if source is not None and not SC.fund_allowed(source.fund_code):
            abort(404)
        return self.render_template("ledger/transfer_new.html", funds=funds, rows=rows,
                                    row_errors=row_errors, general=general, reason=reason,
                                    source=source, source_id=source_id,
                                    available=L.available_amount(s, source) if source else None)


class LedgerView(BaseView):
    route_base = "/ledger"
    class_permission_name = "Ledger"
    base_permissions = ["can_read"]
    method_permission_name = {"trial_balance": "read"}
    default_view = "trial_balance"

    @expose("/trial-balance")
    @has_access
    def trial_balance(self):
        tb = L.trial_balance(db.session)
        return self.render_template("ledger/trial_balance.html", tb=tb)


def register_ledger_views(appbuilder) -> None:
    """Income menu (receipts, transactions, transfers, trial balance)."""
    from flask_babel import lazy_gettext as _l

    cat, cat_label = "Income", _l("Income")
    appbuilder.add_view(ReceiptView, "Take a payment", label=_l("Take a payment"), icon="fa-money",
                        category=cat, category_label=cat_label, category_icon="fa-gbp")
    appbuilder.add_view(TransactionView, "Transactions", label=_l("Transactions"), icon="fa-search",
                        category=cat)
    appbuilder.add_view(TransferView, "Transfer", label=_l("Transfer"), icon="fa-exchange",
                        category=cat)
    appbuilder.add_view(LedgerView, "Trial balance", label=_l("Trial balance"), icon="fa-balance-scale",
                        category=cat)
    appbuilder.add_view_no_menu(JournalView)
