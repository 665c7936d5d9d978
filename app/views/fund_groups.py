"""Fund groups pages (Security menu): define groups of funds, give users groups or all funds."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from sqlalchemy import select

from app.domain.errors import DomainError, NotFound
from app.domain.ids import to_id
from app.extensions import db
from app.models.reference import Fund
from app.services import fund_groups as FG


def _id(raw) -> int:
    try:
        return to_id(str(raw))
    except ValueError:
        abort(404)


class FundGroupView(BaseView):
    route_base = "/fund-groups"
    class_permission_name = "FundGroup"
    method_permission_name = {"index": "read", "edit": "write", "save": "write",
                              "remove": "write", "user": "write", "save_user": "write"}
    base_permissions = ["can_read", "can_write"]
    default_view = "index"

    def _funds(self):
        return list(db.session.scalars(select(Fund).order_by(Fund.code)))

    @expose("/")
    @has_access
    def index(self):
        may_write = self.appbuilder.sm.has_access("can_write", "FundGroup")
        return self.render_template("fund_groups/index.html", groups=FG.list_groups(db.session),
                                    users=FG.list_user_access(db.session), may_write=may_write)

    @expose("/edit/", methods=["GET"])
    @expose("/edit/<pk>", methods=["GET"])
    @has_access
    def edit(self, pk=None):
        group = None
        if pk is not None:
            try:
                group = FG.group_dict(FG.get_group(db.session, _id(pk)))
            except NotFound:
                abort(404)
        return self.render_template("fund_groups/edit.html", group=group, funds=self._funds(),
                                    errors={})

    @expose("/save", methods=["POST"])
    @has_access
    def save(self):
        form = request.form
        raw = form.get("id", "").strip()
        group_id = _id(raw) if raw else None
        try:
            FG.save_group(db.session, form.get("name", ""), form.getlist("funds"),
                          form.get("description"), group_id=group_id)
        except NotFound:
            db.session.rollback()
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            group = {"id": group_id, "name": form.get("name", ""),
                     "description": form.get("description", ""), "funds": form.getlist("funds")}
            return self.render_template("fund_groups/edit.html", group=group,
                                        funds=self._funds(), errors=exc.errors,
                                        message=exc.message), 422
        flash(_("Fund group saved."), "success")
        return redirect(url_for("FundGroupView.index"))

    @expose("/delete/<pk>", methods=["POST"])
    @has_access
    def remove(self, pk):
        try:
            FG.delete_group(db.session, _id(pk))
        except NotFound:
            abort(404)
        flash(_("Fund group deleted."), "success")
        return redirect(url_for("FundGroupView.index"))

    @expose("/user/<pk>", methods=["GET"])
    @has_access
    def user(self, pk):
        try:
            access = FG.user_access(db.session, _id(pk))
        except NotFound:
            abort(404)
        return self.render_template("fund_groups/user.html", access=access,
                                    groups=FG.list_groups(db.session))

    @expose("/user/<pk>", methods=["POST"])
    @has_access
    def save_user(self, pk):
        try:
            FG.set_user_access(db.session, _id(pk), all_funds=request.form.get("all_funds") == "1",
                               group_ids=request.form.getlist("groups"))
        except NotFound:
            db.session.rollback()
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
            return redirect(url_for("FundGroupView.user", pk=pk))
        flash(_("The user's funds are saved."), "success")
        return redirect(url_for("FundGroupView.index"))


def register_fund_group_views(appbuilder) -> None:
    from flask_babel import lazy_gettext as _l

    appbuilder.add_view(FundGroupView, "Fund groups", label=_l("Fund groups"),
                        icon="fa-object-group", category="Security")
