"""Imports pages: upload (file picker and drag-and-drop) with a progress bar, the batch list and
result, reversal; processing rules with a tester; bank profiles; reference patterns; suspense."""

from __future__ import annotations

import os

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.fieldwidgets import BS3TextAreaFieldWidget, Select2Widget
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from wtforms import SelectField, TextAreaField

from app.domain.errors import DomainError
from app.importers.bank_csv import SIGN_CONVENTIONS
from app.models.imports import (
    IMPORT_FORMATS,
    BankProfile,
    FundReferencePattern,
    ImportBatch,
    ProcessingRule,
)
from app.services.audit import audited
from app.views.base import ImsModelView, datamodel
from app.views.fields import form_amount

for _cls in (ProcessingRule, BankProfile, FundReferencePattern):
    audited(_cls)

FORMAT_LABELS = {
    "ims_csv": _l("IMS CSV"), "bank_csv": _l("Bank CSV (with a bank profile)"),
    "camt053": _l("ISO 20022 camt.053 (XML)"), "mt940": _l("SWIFT MT940"),
    "allpay": _l("allpay / Post Office / PayPoint (fixed width)"),
}


#: What each format must contain (shown on the Imports page) and its sample file, in
#: app/importers/samples/ (tests/views/test_import_samples.py imports each sample as it stands).
FORMAT_HELP = {
    "ims_csv": (_l("A CSV file (UTF-8, comma-separated, a header row). Required columns: "
                   "transaction_date (YYYY-MM-DD or DD/MM/YYYY), account_reference, amount "
                   "(pounds and pence, e.g. 125.00). Optional: narrative, fund_code, "
                   "payment_method_code, external_reference. Rows without a fund code are "
                   "matched by processing rules and reference patterns."), "ims_sample.csv"),
    "bank_csv": (_l("A bank's own CSV export. Choose the bank profile that describes it (rows to "
                    "skip, which columns hold the date, amount and reference, the date format and "
                    "how credits and debits are signed); only credits are imported."),
                 "bank_sample.csv"),
    "camt053": (_l("An ISO 20022 camt.053 bank statement (XML). Each credit entry becomes a row; "
                   "the reference is read from the remittance information; the statement's "
                   "credit total is checked."), "camt053_sample.xml"),
    "mt940": (_l("A SWIFT MT940 statement. Each credit :61: line becomes a row, with its :86: "
                 "details as the narrative; the opening and closing balances are checked."),
              "mt940_sample.sta"),
    "allpay": (_l("A fixed-width daily file from allpay, the Post Office or PayPoint: name "
                  "(columns 1–7), reference (8–23), amount (24–32), payment type (33) and date "
                  "DD/MM/YYYY (34–43), then a trailer line with the total and the number of "
                  "payments, which must agree."), "allpay_sample.txt"),
}
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "importers", "samples")


def shown_result(batch) -> dict:
    """The import's result (the API's fields) with what the page shows, in the reader's words:
    money as "£2,940.24", dates as "6 December 2026", statuses translated."""
    from app.formatting import label, money, when
    from app.services.imports import import_result

    result = import_result(batch)
    result["shown"] = {
        "status": str(label(batch.status, "import")),
        "format": str(FORMAT_LABELS.get(batch.format, batch.format)),
        "total_amount": money(batch.total_amount), "posted_amount": money(batch.posted_amount),
        "suspense_amount": money(batch.suspense_amount),
        "first_date": when(batch.first_date), "last_date": when(batch.last_date),
        "history": " → ".join(str(label(e.status, "import")) for e in batch.history),
        "detail_url": url_for("ImportsView.detail", pk=batch.id),
        "transactions_url": url_for("ImportsView.transactions", pk=batch.id),
        "suspense_url": url_for("SuspenseWorkView.index", status="all", import_id=batch.id),
    }
    return result


def _db():
    from app.extensions import db

    return db.session


class ImportsView(BaseView):
    """The Imports page: upload, progress, result, history and reversal."""

    route_base = "/imports"
    class_permission_name = "Import"
    base_permissions = ["can_read", "can_write", "can_reverse"]
    method_permission_name = {"index": "read", "upload": "write", "detail": "read", "sample": "read",
                              "progress": "read", "reverse": "reverse", "retry": "write",
                              "transactions": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = _db()
        page = max(request.args.get("page", 0, type=int), 0)
        batches = session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc())
                                  .offset(page * 25).limit(26)).all()
        profiles = session.scalars(select(BankProfile).order_by(BankProfile.name)).all()
        from app.services.reconciliation import accounts

        return self.render_template("imports/index.html", batches=batches[:25],
                                    more=len(batches) > 25, page=page, profiles=profiles,
                                    bank_accounts=accounts(session),
                                    formats=FORMAT_LABELS, format_help=FORMAT_HELP)

    @expose("/samples/<fmt>")
    @has_access
    def sample(self, fmt):
        """A small sample file of a format, to see what an import must contain."""
        from flask import send_from_directory

        if fmt not in FORMAT_HELP:
            abort(404)
        return send_from_directory(SAMPLES_DIR, FORMAT_HELP[fmt][1], as_attachment=True)

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self):
        from app.services.imports import ImportRejected, submit_upload

        wants_json = request.accept_mimetypes.best == "application/json" or \
            request.headers.get("X-Requested-With") == "fetch"
        try:
            batch = submit_upload(request.files.get("file"), request.form.get("format", ""),
                                  request.form.get("profile"),
                                  bank_account=request.form.get("bank_account") or None)
        except ImportRejected as exc:
            _db().rollback()
            if wants_json:
                return jsonify(exc.to_dict()), 422
            flash(exc.message, "danger")
            if exc.import_id:
                return redirect(url_for("ImportsView.detail", pk=exc.import_id))
            return redirect(url_for("ImportsView.index"))
        except DomainError as exc:
            _db().rollback()
            if wants_json:
                return jsonify(exc.to_dict()), exc.status
            flash(exc.message, "danger")
            return redirect(url_for("ImportsView.index"))
        url = url_for("ImportsView.detail", pk=batch.id)
        if wants_json:
            return jsonify({"id": batch.id, "status": batch.status, "url": url,
                            "progress_url": url_for("ImportsView.progress", pk=batch.id)}), 201
        return redirect(url)

    @expose("/<int:pk>")
    @has_access
    def detail(self, pk):
        from app.services.imports import import_result

        batch = _db().get(ImportBatch, pk)
        if batch is None:
            abort(404)
        return self.render_template("imports/detail.html", batch=batch,
                                    result=import_result(batch), formats=FORMAT_LABELS)

    @expose("/<int:pk>/progress")
    @has_access
    def progress(self, pk):

        session = _db()
        batch = session.get(ImportBatch, pk)
        if batch is None:
            return jsonify({"message": _("No such import."), "errors": {}}), 404
        session.refresh(batch)
        return jsonify(shown_result(batch))

    @expose("/<int:pk>/reverse", methods=["POST"])
    @has_access
    def reverse(self, pk):
        from app.services.audit import current_actor
        from app.services.imports import reverse_import

        try:
            reverse_import(_db(), pk, actor=current_actor(), reason=request.form.get("reason", ""))
            flash(_("The import was reversed."), "success")
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
        return redirect(url_for("ImportsView.detail", pk=pk))

    @expose("/<int:pk>/retry", methods=["POST"])
    @has_access
    def retry(self, pk):
        from flask import current_app

        from app.services import imports as svc
        from app.services.audit import current_actor

        try:
            svc.retry_import(_db(), pk, actor=current_actor())
            if current_app.config.get("IMS_IMPORT_INLINE"):
                svc.process_import(_db(), pk, actor=current_actor())
            else:
                svc.start_background(current_app._get_current_object(), pk)
            flash(_("The import was queued to run again."), "info")
        except DomainError as exc:
            _db().rollback()
            flash(exc.message, "danger")
        return redirect(url_for("ImportsView.detail", pk=pk))

    @expose("/<int:pk>/transactions")
    @has_access
    def transactions(self, pk):
        from app.models.ledger import Transaction

        session = _db()
        batch = session.get(ImportBatch, pk)
        if batch is None:
            abort(404)
        page = max(request.args.get("page", 0, type=int), 0)
        from app.services.scope import restrict

        rows = session.scalars(restrict(select(Transaction).where(Transaction.of_import(pk)),
                                        Transaction.fund_code)
                               .order_by(Transaction.id).offset(page * 100).limit(101)).all()
        return self.render_template("imports/transactions.html", batch=batch, rows=rows[:100],
                                    more=len(rows) > 100, page=page)


class SuspenseListView(BaseView):
    """Old address of the suspense list: the suspense work queue (filters, allocation) is the one
    list of suspense items now; ``?import_id=`` and ``?status=`` carry over."""

    route_base = "/suspense-items"
    class_permission_name = "SuspenseItem"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        args = {k: request.args[k] for k in ("import_id", "status") if request.args.get(k)}
        return redirect(url_for("SuspenseWorkView.index", **args))


class RuleTesterView(BaseView):
    """Paste a row, see which processing rules fire and where the money would go."""

    route_base = "/processing-rules/tester"
    class_permission_name = "ProcessingRule"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/", methods=["GET", "POST"])
    @has_access
    def index(self):
        from app.services.imports import dry_run

        form = {k: request.form.get(k, "") for k in
                ("reference", "amount", "narrative", "fund_code", "import_type")}
        result = error = None
        if request.method == "POST":
            try:
                result = dry_run(_db(), reference=form["reference"],
                                 amount=form_amount(form["amount"]),
                                 narrative=form["narrative"] or None,
                                 fund_code=form["fund_code"] or None,
                                 import_type=form["import_type"] or None)
            except DomainError as exc:
                error = exc.message
            _db().rollback()
        return self.render_template("imports/rule_tester.html", form=form, result=result,
                                    error=error, formats=FORMAT_LABELS)


def _choices(values, blank=None):
    return ([("", blank)] if blank is not None else []) + [(v, v) for v in values]


class ProcessingRuleView(ImsModelView):
    datamodel = datamodel(ProcessingRule)
    class_permission_name = "ProcessingRule"
    list_title = _l("Processing rules")
    show_title = _l("Processing rule")
    add_title = _l("Add processing rule")
    edit_title = _l("Edit processing rule")
    list_columns = ["priority", "name", "enabled", "import_type", "conditions", "set_fund_code",
                    "set_reference", "set_narrative", "stop_processing"]
    add_columns = ["name", "priority", "enabled", "import_type", "conditions", "set_fund_code",
                   "set_reference", "set_narrative", "set_line_kind", "stop_processing"]
    edit_columns = add_columns
    show_columns = add_columns
    search_columns = ["name", "enabled", "import_type", "set_fund_code"]
    order_columns = ["priority", "name"]
    base_order = ("priority", "asc")
    label_columns = {
        "name": _l("Name"), "priority": _l("Priority"), "enabled": _l("Enabled"),
        "import_type": _l("Import type"), "conditions": _l("Conditions"),
        "set_fund_code": _l("Set fund"), "set_reference": _l("Set reference"),
        "set_narrative": _l("Set narrative"), "stop_processing": _l("Stop processing"),
        "set_line_kind": _l("Statement line kind"),
    }
    description_columns = {
        "priority": _l("Lower numbers run first."),
        "import_type": _l("Leave blank for every import type."),
        "conditions": _l('One group per line; lines are OR-ed, conditions in a line are joined '
                         'by AND. Fields: reference, amount, narrative, fund. Operators: equals, '
                         'contains, starts_with, ends_with, regex, >, <, between. Example: '
                         'reference starts_with "PCN" AND amount between 10.00 70.00. '
                         'Blank: every row.'),
        "stop_processing": _l("When this rule fires, no later rule runs for the row."),
        "set_line_kind": _l("Bank statements: settlement lines (card settlements, banked bags, "
                            "agent files) are reconciled, not posted as income."),
    }
    add_form_extra_fields = {
        "import_type": SelectField(_l("Import type"), choices=_choices(IMPORT_FORMATS, "—"),
                                   widget=Select2Widget(), coerce=lambda v: v or None),
        "set_line_kind": SelectField(_l("Statement line kind"),
                                     choices=_choices(("settlement", "payment"), "—"),
                                     widget=Select2Widget(), coerce=lambda v: v or None),
        "conditions": TextAreaField(_l("Conditions"), widget=BS3TextAreaFieldWidget()),
    }
    edit_form_extra_fields = add_form_extra_fields
    method_permission_name = {**ImsModelView.method_permission_name}

    def pre_add(self, item):
        from app.services.rules import check_rule

        item.set_fund_code = (item.set_fund_code or "").strip().upper() or None
        check_rule(item)

    pre_update = pre_add


class BankProfileView(ImsModelView):
    datamodel = datamodel(BankProfile)
    class_permission_name = "BankProfile"
    list_title = _l("Bank profiles")
    show_title = _l("Bank profile")
    add_title = _l("Add bank profile")
    edit_title = _l("Edit bank profile")
    list_columns = ["name", "delimiter", "has_header", "skip_rows", "date_column", "date_format",
                    "sign_convention", "reference_column"]
    add_columns = ["name", "delimiter", "has_header", "skip_rows", "date_column", "date_format",
                   "sign_convention", "amount_column", "credit_column", "debit_column",
                   "reference_column", "narrative_column", "fund_column", "payment_method_code",
                   "balance_column"]
    edit_columns = add_columns
    show_columns = add_columns
    search_columns = ["name"]
    label_columns = {
        "name": _l("Bank"), "delimiter": _l("Delimiter"), "has_header": _l("Has a header row"),
        "skip_rows": _l("Rows to skip"), "date_column": _l("Date column"),
        "date_format": _l("Date format"), "sign_convention": _l("Sign convention"),
        "amount_column": _l("Amount column"), "credit_column": _l("Credit column"),
        "debit_column": _l("Debit column"), "reference_column": _l("Reference column"),
        "narrative_column": _l("Narrative column"), "fund_column": _l("Fund code column"),
        "payment_method_code": _l("Payment method"), "balance_column": _l("Balance column"),
    }
    description_columns = {
        "date_column": _l("Header text, or the column number (1 = first) when there is no header."),
        "date_format": _l("e.g. %d/%m/%Y or %Y-%m-%d"),
        "sign_convention": _l("signed: credits positive; signed_negative: credits negative; "
                              "split: separate credit and debit columns. Debits are skipped."),
        "skip_rows": _l("Lines before the header (titles, account details)."),
        "balance_column": _l("The running balance after each line, oldest line first: gives "
                             "the statement's opening and closing balances for reconciliation."),
    }
    add_form_extra_fields = {
        "sign_convention": SelectField(_l("Sign convention"), choices=_choices(SIGN_CONVENTIONS),
                                       widget=Select2Widget()),
    }
    edit_form_extra_fields = add_form_extra_fields

    def pre_add(self, item):
        from datetime import date

        from app.domain.errors import ValidationError

        errors = {}
        try:
            date(2026, 1, 31).strftime(item.date_format or "%d/%m/%Y")
            if "%" not in (item.date_format or "%"):
                raise ValueError
        except ValueError:
            errors["date_format"] = [_("Not a valid date format.")]
        if item.sign_convention == "split" and not item.credit_column:
            errors["credit_column"] = [_("Split amounts need a credit column.")]
        if item.sign_convention != "split" and not item.amount_column:
            errors["amount_column"] = [_("Give the amount column.")]
        if not item.delimiter:
            item.delimiter = ","
        if errors:
            raise ValidationError("; ".join(v[0] for v in errors.values()), errors)

    pre_update = pre_add


class FundReferencePatternView(ImsModelView):
    datamodel = datamodel(FundReferencePattern)
    class_permission_name = "FundReferencePattern"
    list_title = _l("Fund reference patterns")
    show_title = _l("Fund reference pattern")
    add_title = _l("Add fund reference pattern")
    edit_title = _l("Edit fund reference pattern")
    list_columns = ["priority", "fund_code", "pattern", "enabled", "description"]
    add_columns = ["fund", "pattern", "priority", "enabled", "description"]
    edit_columns = add_columns
    show_columns = add_columns
    search_columns = ["fund", "pattern", "enabled"]
    base_order = ("priority", "asc")
    label_columns = {"fund": _l("Fund"), "fund_code": _l("Fund"), "pattern": _l("Pattern"),
                     "priority": _l("Priority"), "enabled": _l("Enabled"),
                     "description": _l("Description")}
    description_columns = {"pattern": _l(
        "A regular expression matched against an imported row's reference (case ignored), "
        "e.g. ^[0-9]{8}[0-9X]$ . The first enabled pattern by priority wins.")}

    def pre_add(self, item):
        import re

        from app.domain.errors import ValidationError

        try:
            re.compile(item.pattern or "")
        except re.error as exc:
            raise ValidationError(_("Not a valid regular expression: %(err)s", err=str(exc)),
                                  {"pattern": [str(exc)]}) from None

    pre_update = pre_add


def register_import_views(appbuilder) -> None:
    """Called from app.views.register_views."""
    cat, cat_label = "Imports", _l("Imports")
    appbuilder.add_view(ImportsView, "Imports", label=_l("Imports"), icon="fa-upload",
                        category=cat, category_label=cat_label, category_icon="fa-upload")
    appbuilder.add_view_no_menu(SuspenseListView)
    appbuilder.add_view(ProcessingRuleView, "Processing rules", label=_l("Processing rules"),
                        icon="fa-filter", category=cat)
    appbuilder.add_view(RuleTesterView, "Rule tester", label=_l("Rule tester"), icon="fa-flask",
                        category=cat)
    appbuilder.add_view(BankProfileView, "Bank profiles", label=_l("Bank profiles"),
                        icon="fa-university", category=cat)
    appbuilder.add_view(FundReferencePatternView, "Fund reference patterns",
                        label=_l("Fund reference patterns"), icon="fa-code", category=cat)
