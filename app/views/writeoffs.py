"""Write-off pages: register with filters and CSV export, one write-off, request a write-off
(of a suspense item or a transaction's residual balance), ageing proposals in bulk."""

from __future__ import annotations


from flask import Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from app.domain.errors import DomainError
from app.domain.ids import parse_id, to_id
from app.domain.money import Money
from app.extensions import db
from app.formatting import money as fmt_money
from app.models.suspense import SuspenseItem
from app.models.suspense_work import WriteOff
from app.services import suspense as S
from app.services import writeoffs as W
from app.services.audit import history_for
from app.views.fields import form_amount

STATUS_LABELS = {"awaiting_approval": _l("Awaiting approval"), "approved": _l("Approved"),
                 "rejected": _l("Rejected"), "posted": _l("Posted")}


def _user() -> str:
    from app.security.current import current_username

    return current_username()


class WriteOffView(BaseView):
    route_base = "/write-offs"
    class_permission_name = "WriteOff"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"index": "read", "export": "read", "detail": "read",
                              "new": "write", "ageing": "read", "run_ageing": "write",
                              "propose": "write"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        session = db.session
        f = W.filters_from(request.args, parse_money=Money.parse_form)
        page = max(request.args.get("page", 0, type=int) or 0, 0)
        q = W.register_query(f)
        sub = q.order_by(None).subquery()
        total, value = session.execute(select(func.count(), func.coalesce(func.sum(sub.c.amount), 0))
                                       .select_from(sub)).one()
        rows = session.scalars(q.offset(page * 50).limit(50)).all()
        args = {k: v for k, v in request.args.items() if k != "page"}
        return self.render_template("writeoffs/register.html", rows=rows, total=total,
                                    value=int(value or 0), page=page, more=(page + 1) * 50 < total,
                                    args=args, statuses=STATUS_LABELS,
                                    may_write=self.appbuilder.sm.has_access("can_write", "WriteOff"),
                                    transaction_id=request.args.get("transaction_id", ""))

    @expose("/export.csv")
    @has_access
    def export(self):
        f = W.filters_from(request.args, parse_money=Money.parse_form)
        session = db.session
        return Response(stream_with_context(W.export_csv(session, f)), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=write-offs.csv"})

    @expose("/<int:pk>")
    @has_access
    def detail(self, pk):
        session = db.session
        wo = session.get(WriteOff, pk)
        if wo is None:
            abort(404)
        wo = W.get(session, pk)  # another fund group's: 404
        return self.render_template("writeoffs/detail.html", wo=wo, d=W.to_dict(session, wo),
                                    history=history_for(session, "WriteOff", wo.id),
                                    statuses=STATUS_LABELS)

    @expose("/new", methods=["POST"])
    @has_access
    def new(self):
        form = request.form
        item_id = form.get("suspense_item_id") or None
        txn_id = form.get("transaction_id") or None
        try:
            wo = W.request_write_off(db.session, suspense_item_id=item_id, transaction_id=txn_id,
                                     amount=form_amount(form.get("amount", "")),
                                     reason=form.get("reason", ""),
                                     actor=_user())
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            item_pk = parse_id(item_id)
            if item_pk and db.session.get(SuspenseItem, item_pk):
                return redirect(url_for("SuspenseWorkView.item", pk=item_pk) + "#write-off")
            return redirect(url_for("WriteOffView.index"))
        flash(_("Write-off %(id)s of %(amount)s requested: %(status)s.", id=wo.id,
                amount=fmt_money(wo.amount), status=STATUS_LABELS.get(wo.status, wo.status)), "success")
        return redirect(url_for("WriteOffView.detail", pk=wo.id))

    @expose("/ageing")
    @has_access
    def ageing(self):
        session = db.session
        run = W.latest_run(session)
        items = W.run_items(session, run) if run is not None else []
        return self.render_template("writeoffs/ageing.html", run=run, items=items,
                                    weeks=S.age_weeks(), age_class=S.age_class,
                                    may_write=self.appbuilder.sm.has_access("can_write", "WriteOff"))

    @expose("/ageing/run", methods=["POST"])
    @has_access
    def run_ageing(self):
        run = W.run_ageing(db.session)
        flash(_("%(n)s item(s) older than %(w)s weeks listed.", n=run.item_count, w=run.age_weeks),
              "info")
        return redirect(url_for("WriteOffView.ageing"))

    @expose("/propose", methods=["GET", "POST"])
    @has_access
    def propose(self):
        session = db.session
        if request.method == "POST":
            ids = request.form.getlist("ids")
            run_id = parse_id(request.form.get("ageing_run_id"))
            try:
                created = W.propose_aged(session, ids, reason=request.form.get("reason", ""),
                                         actor=_user(), ageing_run_id=run_id)
                flash(_("%(n)s write-off(s) proposed for approval.", n=len(created)), "success")
                return redirect(url_for("WriteOffView.index", status="awaiting_approval"))
            except DomainError as exc:
                session.rollback()
                flash(exc.message, "danger")
        else:
            ids = request.args.getlist("ids")
        wanted = []
        for v in ids:
            try:
                wanted.append(to_id(v))
            except (TypeError, ValueError):
                continue
        items = session.scalars(select(SuspenseItem).where(SuspenseItem.id.in_(wanted[:1000]))
                                .order_by(SuspenseItem.transaction_date)).all() if wanted else []
        return self.render_template("writeoffs/propose.html", items=items,
                                    reason=request.form.get("reason", ""), age_class=S.age_class)
