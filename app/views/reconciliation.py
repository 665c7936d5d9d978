"""Bank reconciliation pages: one bank account as at a date (balances, the difference explained,
unmatched items both sides, proposals, matching and unmatching, sign-off), and bank accounts
(reference data)."""

from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.domain.errors import DomainError
from app.extensions import db
from app.formatting import money
from app.models.reconciliation import BankAccount
from app.services import reconciliation as RC
from app.views.base import ImsModelView, datamodel
from app.views.fields import form_amount

STATUS_LABELS = {"prepared": _l("Awaiting sign-off"), "signed_off": _l("Signed off"),
                 "rejected": _l("Rejected")}
KIND_LABELS = {RC.BAG: _l("Cash-up bag"), RC.CARD: _l("Card settlement"),
               RC.AGENT: _l("Agent file"), "settlement": _l("Settlement credit"),
               "debit": _l("Debit")}


def _user() -> str:
    from app.security.current import current_username

    return current_username()


def _roles() -> set[str]:
    from app.security.current import current_roles

    return current_roles()


def _day(value) -> dt.date:
    try:
        return RC.parse_as_of(value)
    except DomainError:
        return dt.date.today()


def _int_list(values) -> list:
    return [v for v in values if v]


class ReconciliationView(BaseView):
    route_base = "/reconciliation"
    class_permission_name = "Reconciliation"
    base_permissions = ["can_read", "can_write", "can_sign_off"]
    method_permission_name = {"index": "read", "match": "write", "unmatch": "write",
                              "post_debit": "write", "confirm_agreed": "write",
                              "refresh": "write", "prepare": "write", "decide": "sign_off"}
    default_view = "index"

    def _account(self, key):
        try:
            return RC.bank_account_for(db.session, key or None)
        except DomainError:
            abort(404)

    def _back(self, acct, as_of):
        return redirect(url_for("ReconciliationView.index", account=acct.code,
                                as_of=as_of.isoformat()))

    @expose("/")
    @has_access
    def index(self):
        session = db.session
        acct = self._account(request.args.get("account"))
        as_of = _day(request.args.get("as_of"))
        rec = RC.reconciliation(session, acct, as_of)
        proposals = RC.propose(session, acct)
        sm = self.appbuilder.sm
        page = self.render_template(
            "reconciliation/index.html", rec=rec, acct=acct, as_of=as_of,
            accounts=RC.accounts(session), proposals=proposals,
            matches=RC.recent_matches(session, acct),
            ageing=RC.ageing(session, as_of), sign_offs=RC.sign_offs(session, acct),
            statuses=STATUS_LABELS, kinds=KIND_LABELS, bands=RC.AGE_BANDS,
            may_write=sm.has_access("can_write", "Reconciliation"),
            may_sign=sm.has_access("can_sign_off", "Reconciliation"), user=_user())
        session.rollback()  # the default account may have been made for the page: not saved
        return page

    @expose("/refresh", methods=["POST"])
    @has_access
    def refresh(self):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        made = RC.refresh_expected(db.session)
        db.session.commit()
        flash(_("Expected credits recorded: %(cards)d card settlement(s), %(agents)d agent "
                "file(s).", cards=made["card_settlements"], agents=made["agent_files"]), "info")
        return self._back(acct, as_of)

    @expose("/match", methods=["POST"])
    @has_access
    def match(self):
        form = request.form
        acct = self._account(form.get("account"))
        as_of = _day(form.get("as_of"))
        try:
            m = RC.match(db.session, actor=_user(), line_ids=_int_list(form.getlist("line_id")),
                         item_ids=_int_list(form.getlist("item_id")),
                         fee_adjustment=form_amount(form.get("fee_adjustment") or "") or None,
                         reason=form.get("reason"))
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        flash(_("Matched: %(amount)s (match %(id)d).", amount=money(m.lines_total), id=m.id),
              "success")
        return self._back(acct, as_of)

    @expose("/confirm-agreed", methods=["POST"])
    @has_access
    def confirm_agreed(self):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        try:
            done = RC.confirm_agreed(db.session, acct, actor=_user())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        total = sum(m.lines_total for m in done.matches)
        flash(_("Confirmed %(n)d match(es) whose reference agrees: %(amount)s.",
                n=len(done.matches), amount=money(total)), "success")
        if done.skipped:
            flash(_("%(n)d proposal(s) were matched by someone else meanwhile: not confirmed "
                    "again.", n=done.skipped), "warning")
        return self._back(acct, as_of)

    @expose("/lines/<int:pk>/post", methods=["POST"])
    @has_access
    def post_debit(self, pk):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        try:
            RC.post_debit_line(db.session, pk, actor=_user(), reason=request.form.get("reason"))
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        flash(_("The debit line was posted as a bank charge."), "success")
        return self._back(acct, as_of)

    @expose("/matches/<int:pk>/unmatch", methods=["POST"])
    @has_access
    def unmatch(self, pk):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        try:
            RC.unmatch(db.session, pk, actor=_user(), reason=request.form.get("reason"))
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        flash(_("The match was undone and its posting reversed."), "success")
        return self._back(acct, as_of)

    @expose("/prepare", methods=["POST"])
    @has_access
    def prepare(self):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        try:
            RC.prepare(db.session, acct, as_of, actor=_user())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        flash(_("The reconciliation was submitted for sign-off."), "success")
        return self._back(acct, as_of)

    @expose("/sign-offs/<int:pk>", methods=["POST"])
    @has_access
    def decide(self, pk):
        acct = self._account(request.form.get("account"))
        as_of = _day(request.form.get("as_of"))
        approve = request.form.get("decision") == "sign_off"
        try:
            RC.decide(db.session, pk, actor=_user(), roles=_roles(), approve=approve,
                      comment=request.form.get("comment"))
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self._back(acct, as_of)
        flash(_("The reconciliation was signed off.") if approve
              else _("The reconciliation was rejected."), "success")
        return self._back(acct, as_of)


class BankAccountView(ImsModelView):
    """The council's bank accounts (Administrator)."""

    datamodel = datamodel(BankAccount)
    class_permission_name = "BankAccount"
    list_title = _l("Bank accounts")
    show_title = _l("Bank account")
    add_title = _l("Add bank account")
    edit_title = _l("Edit bank account")
    list_columns = ["code", "name", "sort_code", "account_number", "ledger_account_code",
                    "is_default", "disabled"]
    add_columns = ["code", "name", "sort_code", "account_number", "ledger_account_code",
                   "disabled"]
    edit_columns = ["name", "sort_code", "account_number", "ledger_account_code", "disabled"]
    show_columns = list_columns
    base_order = ("code", "asc")
    label_columns = {"code": _l("Code"), "name": _l("Name"), "sort_code": _l("Sort code"),
                     "account_number": _l("Account number"),
                     "ledger_account_code": _l("Ledger account code"),
                     "is_default": _l("Default account"), "disabled": _l("Disabled")}
    description_columns = {
        "ledger_account_code": _l("The general ledger's code for this bank account."),
        "sort_code": _l("Six digits, e.g. 20-00-00."),
    }

    def pre_add(self, item):
        RC.check_bank_account(db.session, item)

    def pre_update(self, item):
        RC.check_bank_account(db.session, item)


def register_reconciliation_views(appbuilder) -> None:
    appbuilder.add_view(ReconciliationView, "Bank reconciliation",
                        label=_l("Bank reconciliation"), icon="fa-balance-scale",
                        category="Closing the books", category_label=_l("Closing the books"))
    appbuilder.add_view(BankAccountView, "Bank accounts", label=_l("Bank accounts"),
                        icon="fa-university", category="Reference data")
