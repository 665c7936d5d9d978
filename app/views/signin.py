"""Sign-in pages of issue 20: a user's own page (two-factor sign-in, recovery codes, recent
sign-ins) and the Administrators' page of each user's sign-in and till settings (default office,
payment methods they may take, service account, resetting two-factor sign-in)."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from sqlalchemy import select

from app.domain.errors import ValidationError
from app.extensions import db
from app.models.reference import Office, PaymentMethod
from app.security.current import current_username
from app.services import signin
from app.services.receipts import NON_RECEIPT_KINDS


def _me():
    from flask import g

    return g.user


class MySigninView(BaseView):
    """The signed-in user's own sign-in page (everyone may see their own profile)."""

    route_base = "/my-signin"
    class_permission_name = "UserDBModelView"
    base_permissions = ["can_userinfo"]
    method_permission_name = {"index": "userinfo", "totp_start": "userinfo",
                              "totp_confirm": "userinfo", "recovery_codes": "userinfo"}
    default_view = "index"

    def _page(self, error=None, status=200):
        s = db.session
        user = _me()
        p = signin.profile(s, user.id)
        pending = signin.totp_secret(p) if p is not None and p.totp_secret \
            and not p.totp_enabled_at else None
        body = self.render_template(
            "signin/my_signin.html", user=user, profile=p,
            totp_on=signin.totp_enabled(s, user), totp_required=signin.totp_required(s, user),
            sso=signin.is_sso_user(s, user), pending_secret=pending,
            pending_uri=signin.provisioning_uri(user, pending) if pending else None,
            pending_qr=signin.qr_code_data_uri(signin.provisioning_uri(user, pending))
            if pending else None,
            recovery_left=signin.unused_recovery_codes(s, user.id),
            events=signin.recent_signins(s, user.id), groups=signin.idp_groups(s, user.id),
            settings=signin.till_settings(s, user.id), error=error)
        s.rollback()
        return body, status

    @expose("/")
    @has_access
    def index(self):
        return self._page()

    @expose("/totp/start", methods=["POST"])
    @has_access
    def totp_start(self):
        s = db.session
        user = _me()
        if signin.is_sso_user(s, user):
            abort(404)
        try:
            signin.start_totp_setup(s, user)
        except ValidationError:
            flash(_("Two-factor sign-in is already set up."), "warning")
        return redirect(url_for("MySigninView.index"))

    @expose("/totp/confirm", methods=["POST"])
    @has_access
    def totp_confirm(self):
        try:
            codes = signin.confirm_totp_setup(db.session, _me(), request.form.get("code", ""))
        except ValidationError:
            return self._page(error=_("The code is not correct."), status=400)
        flash(_("Two-factor sign-in is on."), "success")
        return self.render_template("ims/recovery_codes.html", title=_("Recovery codes"),
                                    codes=codes, next_url=url_for("MySigninView.index"))

    @expose("/recovery-codes", methods=["POST"])
    @has_access
    def recovery_codes(self):
        try:
            codes = signin.new_recovery_codes(db.session, _me())
        except ValidationError:
            return self._page(error=_("Set up two-factor sign-in first."), status=400)
        return self.render_template("ims/recovery_codes.html", title=_("Recovery codes"),
                                    codes=codes, next_url=url_for("MySigninView.index"))


class UserSigninView(BaseView):
    """Administrators set each user's till settings and reset two-factor sign-in; Auditors
    read them."""

    route_base = "/user-signin"
    class_permission_name = "UserDBModelView"
    base_permissions = ["can_list", "can_show", "can_edit"]
    method_permission_name = {"index": "list", "show": "show", "save": "edit",
                              "reset_totp": "edit"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        from app.models.signin import UserSignin

        s = db.session
        User = self.appbuilder.sm.user_model
        users = s.scalars(select(User).order_by(User.username)).all()
        profiles = {p.user_id: p for p in s.scalars(select(UserSignin))}
        body = self.render_template("signin/users.html", users=users, profiles=profiles)
        s.rollback()
        return body

    def _user(self, user_id):
        user = db.session.get(self.appbuilder.sm.user_model, user_id)
        if user is None:
            abort(404)
        return user

    @expose("/<int:user_id>")
    @has_access
    def show(self, user_id):
        return self._show(self._user(user_id))

    def _show(self, user, errors=None, status=200):
        s = db.session
        methods = s.scalars(select(PaymentMethod).where(
            PaymentMethod.kind.notin_(NON_RECEIPT_KINDS)).order_by(PaymentMethod.code)).all()
        offices = s.scalars(select(Office).order_by(Office.code)).all()
        body = self.render_template(
            "signin/user.html", user=user, settings=signin.till_settings(s, user.id),
            methods=methods, offices=offices, totp_on=signin.totp_enabled(s, user),
            sso=signin.is_sso_user(s, user), groups=signin.idp_groups(s, user.id),
            fund_groups=signin.idp_fund_groups(s, user.id),
            events=signin.recent_signins(s, user.id), errors=errors or {},
            may_edit=self.appbuilder.sm.has_access("can_edit", "UserDBModelView"))
        s.rollback()
        return body, status

    @expose("/<int:user_id>/settings", methods=["POST"])
    @has_access
    def save(self, user_id):
        user = self._user(user_id)
        try:
            signin.set_user_settings(
                db.session, user.id, default_office_code=request.form.get("default_office_code"),
                payment_method_codes=request.form.getlist("payment_method_codes"),
                service_account=request.form.get("service_account") == "y",
                actor=current_username())
        except ValidationError as exc:
            db.session.rollback()
            flash(_("The settings were not saved: correct the fields marked below."), "danger")
            return self._show(self._user(user_id), errors=exc.errors, status=400)
        flash(_("Settings saved."), "success")
        return redirect(url_for("UserSigninView.show", user_id=user.id))

    @expose("/<int:user_id>/reset-totp", methods=["POST"])
    @has_access
    def reset_totp(self, user_id):
        user = self._user(user_id)
        signin.reset_totp(db.session, user.id, current_username())
        flash(_("Two-factor sign-in was reset for %(user)s.", user=user.username), "success")
        return redirect(url_for("UserSigninView.show", user_id=user.id))


def register_signin_views(appbuilder) -> None:
    from flask_babel import lazy_gettext as _l

    appbuilder.add_view_no_menu(MySigninView)
    appbuilder.add_view(UserSigninView, "Sign-in and tills", label=_l("Sign-in and tills"),
                        icon="fa-key", category="Security")
