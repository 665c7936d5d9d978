"""Suspense work queue (filters, age colours, assign to me, bulk actions), an item's page
(suggestions, split allocation with live remaining, notes, history) and the suspense report
(age bands chart + table, reconciliation of the SUSPENSE control account). Thin: rules are in
app/services/suspense.py, suggestions.py and writeoffs.py."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.security.current import current_username, may_override_stop
from app.domain.errors import Conflict, DomainError, ValidationError
from app.domain.ids import parse_id
from app.domain.money import Money
from app.extensions import db
from app.formatting import money as fmt_money
from app.models.reference import Fund
from app.models.suspense_work import WriteOff
from app.security.redirects import local_path
from app.services import suggestions as SG
from app.services import suspense as S
from app.services import writeoffs as W  # noqa: F401  (registers the write-off subject and job)
from app.services.audit import history_for
from app.views.fields import form_amount

AGE_LABELS = {"fresh": _l("Fresh"), "old": _l("Getting old"), "stale": _l("Stale (can be written off)")}
ALLOCATION_LABELS = {"awaiting_approval": _l("Awaiting approval"), "posted": _l("Posted"),
                     "rejected": _l("Rejected")}
BAND_LABELS = {"0–7 days": _l("0–7 days"), "8–28 days": _l("8–28 days"),
               "29–56 days": _l("29–56 days"), "57–91 days": _l("57–91 days"),
               "92–182 days": _l("92–182 days"), "Over 182 days": _l("Over 182 days")}
STATUS_LABELS = {"open": _l("Open (unallocated or part allocated)"), "unallocated": _l("Unallocated"),
                 "part_allocated": _l("Part allocated"), "allocated": _l("Allocated"),
                 "written_off": _l("Written off"), "withdrawn": _l("Withdrawn"), "all": _l("All")}


def money_arg(args, name: str, errors: list[str]) -> int | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        return Money.parse_form(value, field=name, allow_zero=True).pence
    except ValidationError:
        errors.append(_("%(field)s: not an amount.", field=name))
        return None


def queue_filters(args, username: str) -> tuple[S.QueueFilters, list[str]]:
    errors: list[str] = []
    assigned = (args.get("assigned") or "").strip()
    f = S.QueueFilters(
        age=args.get("age") if args.get("age") in AGE_LABELS else None,
        min_amount=money_arg(args, "min", errors), max_amount=money_arg(args, "max", errors),
        text=(args.get("q") or "").strip() or None,
        import_id=parse_id(args.get("import_id")),
        status=args.get("status") if args.get("status") in STATUS_LABELS else "open",
        assigned_to=username if assigned == "me" else (assigned or None))
    return f, errors


def _lines_from_form(form) -> list[dict]:
    funds, refs, amounts = (form.getlist("fund_code"), form.getlist("account_reference"),
                            form.getlist("amount"))
    rows = []
    for i in range(max(len(funds), len(refs), len(amounts))):
        row = {"fund_code": funds[i] if i < len(funds) else "",
               "account_reference": refs[i] if i < len(refs) else "",
               "amount": amounts[i] if i < len(amounts) else ""}
        if any(v.strip() for v in row.values()):
            rows.append(row)
    return rows


class SuspenseWorkView(BaseView):
    """The Income Clerks' suspense work queue and item pages."""

    route_base = "/suspense"
    class_permission_name = "SuspenseAllocation"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "item": "read", "allocate": "write",
                              "note": "write", "assign_me": "write", "bulk": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = db.session
        user = current_username()
        f, errors = queue_filters(request.args, user)
        for e in errors:
            flash(e, "warning")
        page = max(request.args.get("page", 0, type=int) or 0, 0)
        items, total = S.queue(session, f, page=page)
        args = {k: v for k, v in request.args.items() if k != "page"}
        return self.render_template(
            "suspense/queue.html", items=items, total=total, page=page,
            more=(page + 1) * 50 < total, args=args, ages=AGE_LABELS, statuses=STATUS_LABELS,
            shown=S.shown_statuses(session, items), age_class=S.age_class, username=user, weeks=S.age_weeks(),
            may_write_off=self.appbuilder.sm.has_access("can_write", "WriteOff"))

    @expose("/<int:pk>")
    @has_access
    def item(self, pk, form_lines=None, errors=None, note="", status=200):
        session = db.session
        item = S.get_item(session, pk) if _exists(pk) else abort(404)
        funds = session.scalars(select(Fund).where(Fund.disabled.is_(False))
                                .order_by(Fund.code)).all()
        susp, woff = S.fund_codes(session)
        funds = [f for f in funds if f.code not in (susp, woff)]
        suggestions = SG.suggest(session, item) if item.status in S.OPEN_STATUSES else []
        write_offs = session.scalars(select(WriteOff).where(WriteOff.suspense_item_id == item.id)
                                     .order_by(WriteOff.id.desc())).all()
        lines = form_lines or [{}, {}]
        row_errors = [{} for _ in lines]
        general = {}
        for key, msgs in (errors or {}).items():
            if key.startswith("lines[") and "]." in key:
                idx, _, fld = key[6:].partition("].")
                if idx.isdigit() and int(idx) < len(lines):
                    row_errors[int(idx)].setdefault(fld, []).extend(msgs)
                    continue
            general[key] = msgs
        sm = self.appbuilder.sm
        return self.render_template(
            "suspense/item.html", item=item, funds=funds, suggestions=suggestions,
            allocations=S.allocations_of(session, item.id), write_offs=write_offs,
            notes=S.notes_of(session, item.id), history=history_for(session, "SuspenseItem", item.id),
            lines=lines, row_errors=row_errors, general=general, note=note,
            age_class=S.age_class(item.transaction_date), username=current_username(),
            statuses=STATUS_LABELS, allocation_statuses=ALLOCATION_LABELS,
            shown=S.shown_statuses(session, [item]),
            write_off_statuses=_write_off_labels(),
            may_allocate=sm.has_access("can_write", "SuspenseAllocation"),
            may_write_off=sm.has_access("can_write", "WriteOff")), status

    @expose("/<int:pk>/allocate", methods=["POST"])
    @has_access
    def allocate(self, pk):
        lines = _lines_from_form(request.form)
        parsed = [{**line, "amount": form_amount(line["amount"])} for line in lines]
        note = request.form.get("note", "")
        expected = request.form.get("expected_remaining", type=int)
        try:
            res = S.allocate(db.session, pk, parsed, actor=current_username(), note=note,
                             may_override_stop=may_override_stop(), expected_remaining=expected)
        except ValidationError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return self.item(pk, form_lines=lines or [{}], errors=exc.errors, note=note, status=422)
        except Conflict as exc:
            db.session.rollback()
            flash(exc.message, "warning")
            return self.item(pk, form_lines=lines or [{}], note=note, status=409)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return redirect(url_for("SuspenseWorkView.index"))
        if res.allocation.status == "posted":
            flash(_("Allocated %(amount)s. %(left)s remains in suspense.",
                    amount=fmt_money(res.allocation.amount), left=fmt_money(S.remaining_of(res.item))),
                  "success")
        else:
            flash(_("The allocation of %(amount)s is above the limit and awaits approval by a "
                    "Finance Manager. The amount is reserved.", amount=fmt_money(res.allocation.amount)),
                  "info")
        return redirect(url_for("SuspenseWorkView.item", pk=pk))

    @expose("/<int:pk>/notes", methods=["POST"])
    @has_access
    def note(self, pk):
        try:
            S.add_note(db.session, pk, request.form.get("text", ""), actor=current_username())
            flash(_("Note added."), "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            if not _exists(pk):
                abort(404)
        return redirect(url_for("SuspenseWorkView.item", pk=pk) + "#notes")

    @expose("/<int:pk>/assign", methods=["POST"])
    @has_access
    def assign_me(self, pk):
        if not _exists(pk):
            abort(404)
        user = current_username()
        who = None if request.form.get("unassign") else user
        S.assign(db.session, [pk], who, actor=user)
        flash(_("Assigned to you.") if who else _("Unassigned."), "success")
        return redirect(local_path(request.form.get("next")) or url_for("SuspenseWorkView.item", pk=pk))

    @expose("/bulk", methods=["POST"])
    @has_access
    def bulk(self):
        user = current_username()
        ids = request.form.getlist("ids")
        action = request.form.get("action", "")
        back = local_path(request.form.get("next")) or url_for("SuspenseWorkView.index")
        try:
            if action in ("assign_me", "unassign"):
                n = S.assign(db.session, ids, user if action == "assign_me" else None, actor=user)
                flash(_("%(n)s item(s) updated.", n=n), "success")
            elif action == "write_off":
                S._ids(ids)
                return redirect(url_for("WriteOffView.propose", ids=ids))
            else:
                flash(_("Choose an action."), "warning")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        return redirect(back)


def _write_off_labels():
    from app.views.writeoffs import STATUS_LABELS as labels

    return labels


def _exists(pk) -> bool:
    from app.models.suspense import SuspenseItem

    return db.session.get(SuspenseItem, pk) is not None


class SuspenseReportView(BaseView):
    """Count and value of open suspense by age band, and the control-account reconciliation."""

    route_base = "/suspense-report"
    class_permission_name = "SuspenseReport"
    base_permissions = ["can_read"]
    method_permission_name = {"index": "read"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = db.session
        bands = S.age_report(session)
        for b in bands:
            b["band"] = str(BAND_LABELS.get(b["band"], b["band"]))
        return self.render_template("suspense/report.html", bands=bands,
                                    rec=S.reconciliation(session),
                                    chart={"labels": [b["band"] for b in bands],
                                           "counts": [b["count"] for b in bands],
                                           "values": [b["value"] / 100 for b in bands]})


def register_suspense_views(appbuilder) -> None:
    """Called from app.views.register_views."""
    from app.views.writeoffs import WriteOffView

    cat, cat_label = "Suspense", _l("Suspense")
    appbuilder.add_view(SuspenseWorkView, "Suspense work queue", label=_l("Work queue"),
                        icon="fa-inbox", category=cat, category_label=cat_label,
                        category_icon="fa-question-circle")
    appbuilder.add_view(WriteOffView, "Write-offs", label=_l("Write-off register"),
                        icon="fa-eraser", category=cat)
    appbuilder.add_view(SuspenseReportView, "Suspense report", label=_l("Suspense report"),
                        icon="fa-pie-chart", category=cat)
