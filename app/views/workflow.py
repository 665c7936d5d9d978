"""Workflow pages: My tasks (inbox + task page), Workflows (definitions, upload), instances, limits."""

from __future__ import annotations

from flask import Response, abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, NumberRange
from wtforms.validators import Optional as OptionalV

from app.domain.errors import DomainError, Forbidden
from app.extensions import db
from app.formatting import money
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit, WorkflowDefinition, WorkflowInstance
from app.services import workflow as wf
from app.services.approval_limits import check_limit
from app.views.base import ImsModelView, datamodel
from app.views.fields import MoneyField


def _username() -> str:
    return (getattr(g, "user", None) or current_user).username


class TaskView(BaseView):
    """My tasks: what the user can approve now, and the page to approve or reject one."""

    route_base = "/tasks"
    class_permission_name = "Task"
    method_permission_name = {"inbox": "read", "show": "read", "complete": "write"}
    base_permissions = ["can_read", "can_write"]
    default_view = "inbox"

    @expose("/")
    @has_access
    def inbox(self):
        tasks = wf.tasks_for_user(db.session, _username())
        return self.render_template("workflow/inbox.html", tasks=tasks, title=_("My tasks"))

    def _task_page(self, task_id, error=None, status=200):
        try:
            task = wf.get_task(db.session, task_id)
        except DomainError:
            abort(404)
        instance = task.instance
        username = _username()
        blocked = None
        if task.status == "ready":
            try:
                wf.check_may_complete(db.session, task, instance, username)
            except Forbidden as exc:
                blocked = exc.message
        summary = wf.subject_summary(db.session, instance)
        body = self.render_template("workflow/task.html", task=task, instance=instance,
                                    summary=summary, blocked=blocked, error=error,
                                    title=task.title)
        return body, status

    @expose("/<task_id>")
    @has_access
    def show(self, task_id):
        return self._task_page(task_id)

    @expose("/<task_id>/complete", methods=["POST"])
    @has_access
    def complete(self, task_id):
        decision = request.form.get("decision", "")
        comment = request.form.get("comment", "")
        try:
            result = wf.complete_task(db.session, task_id, _username(), decision, comment)
        except DomainError as exc:
            db.session.rollback()
            if exc.status == 404:
                abort(404)
            return self._task_page(task_id, error=exc.message, status=exc.status)
        if decision == "approve":
            flash(_("Approved."), "success")
        else:
            flash(_("Rejected."), "success")
        if result.outcome == "approved":
            flash(_("The request is now approved."), "info")
        elif result.outcome == "rejected":
            flash(_("The request is now rejected."), "info")
        return redirect(url_for("TaskView.inbox"))


class WorkflowDefinitionView(BaseView):
    """Definitions and versions; upload a new version (validated); download the XML."""

    route_base = "/workflows"
    class_permission_name = "WorkflowDefinition"
    method_permission_name = {"list": "read", "download": "read", "upload": "write"}
    base_permissions = ["can_read", "can_write"]
    default_view = "list"

    def _render_list(self, errors=None, status=200):
        rows = list(db.session.scalars(select(WorkflowDefinition).order_by(
            WorkflowDefinition.process_id, WorkflowDefinition.version.desc())))
        instances = list(db.session.scalars(select(WorkflowInstance).order_by(
            WorkflowInstance.id.desc()).limit(50)))
        can_write = self.appbuilder.sm.has_access("can_write", self.class_permission_name)
        return self.render_template("workflow/definitions.html", definitions=rows,
                                    instances=instances, errors=errors or [],
                                    can_write=can_write, title=_("Workflows")), status

    @expose("/")
    @has_access
    def list(self):
        return self._render_list()

    @expose("/<int:definition_id>/download")
    @has_access
    def download(self, definition_id):
        definition = db.session.get(WorkflowDefinition, definition_id)
        if definition is None:
            abort(404)
        return Response(definition.bpmn_xml, mimetype="application/xml", headers={
            "Content-Disposition":
                f'attachment; filename="{definition.process_id}-v{definition.version}.bpmn"'})

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self):
        file = request.files.get("file")
        xml = file.read() if file else b""
        if not xml:
            return self._render_list([_("Choose a .bpmn file to upload.")], 422)
        try:
            definition = wf.deploy_definition(db.session, xml, _username())
        except DomainError as exc:
            db.session.rollback()
            return self._render_list(exc.errors.get("bpmn") or [exc.message], exc.status)
        flash(_("Deployed %(process)s version %(version)s.", process=definition.process_id,
                version=definition.version), "success")
        return redirect(url_for("WorkflowDefinitionView.list"))


class WorkflowInstanceView(BaseView):
    """One instance: the diagram with the current task highlighted, and its history."""

    route_base = "/workflow-instances"
    class_permission_name = "WorkflowInstance"
    method_permission_name = {"show": "read"}
    base_permissions = ["can_read"]

    @expose("/<int:instance_id>")
    @has_access
    def show(self, instance_id):
        instance = db.session.get(WorkflowInstance, instance_id)
        if instance is None:
            abort(404)
        summary = wf.subject_summary(db.session, instance)
        return self.render_template(
            "workflow/instance.html", instance=instance, summary=summary,
            current=wf.current_elements(instance),
            title=_("Workflow %(id)s", id=instance.id))


def _role_choices():
    from app.security.roles import ROLES

    return ", ".join(ROLES)


class ApprovalLimitView(ImsModelView):
    datamodel = datamodel(ApprovalLimit)
    class_permission_name = "ApprovalLimit"
    list_title = _l("Approval limits")
    show_title = _l("Approval limit")
    add_title = _l("Add approval limit")
    edit_title = _l("Edit approval limit")
    list_columns = ["action", "min_amount", "max_amount", "approvals_required", "roles"]
    search_columns = ["action", "approvals_required", "roles"]
    add_columns = list_columns
    edit_columns = list_columns
    show_columns = list_columns
    base_order = ("action", "asc")
    label_columns = {"action": _l("Action"), "min_amount": _l("From (£)"),
                     "max_amount": _l("Up to (£)"), "approvals_required": _l("Approvals required"),
                     "roles": _l("Approving roles, in order")}
    description_columns = {
        "max_amount": _l("Leave empty for no upper limit."),
        "roles": _l("Comma-separated role names, one per approval, in approval order."),
    }
    formatters_columns = {"min_amount": money,
                          "max_amount": lambda v: _("no limit") if v is None else money(v)}
    add_form_extra_fields = {
        "action": SelectField(_l("Action"), choices=[(a, a.replace("_", " ")) for a in APPROVAL_ACTIONS],
                              validators=[InputRequired()]),
        "min_amount": MoneyField(_l("From (£)"), validators=[InputRequired()], allow_zero=True),
        "max_amount": MoneyField(_l("Up to (£)"), validators=[OptionalV()]),
        "approvals_required": IntegerField(_l("Approvals required"),
                                           validators=[InputRequired(), NumberRange(min=0, max=5)]),
        "roles": StringField(_l("Approving roles, in order"), validators=[OptionalV()]),
    }
    edit_form_extra_fields = add_form_extra_fields

    def pre_add(self, item):
        _check_limit(item)

    def pre_update(self, item):
        _check_limit(item)


def _check_limit(item) -> None:
    """FAB flashes str(exception): put the field messages in it."""
    try:
        check_limit(db.session, item)
    except DomainError as exc:
        details = " ".join(m for msgs in exc.errors.values() for m in msgs)
        raise ValueError(f"{exc.message} {details}".strip()) from None


def register_workflow_views(appbuilder) -> None:
    """Add the workflow pages, APIs and the "My tasks (N)" navbar count (called by register_views)."""
    from app.api.workflow import ApprovalLimitApi, TaskApi, WorkflowApi

    cat = "Workflows"
    appbuilder.add_view(TaskView, "My tasks", label=_l("My tasks"), icon="fa-inbox",
                        category=cat, category_label=_l("Workflows"), category_icon="fa-sitemap")
    appbuilder.add_view(WorkflowDefinitionView, "Workflow definitions",
                        label=_l("Workflow definitions"), icon="fa-sitemap", category=cat)
    appbuilder.add_view(ApprovalLimitView, "Approval limits", label=_l("Approval limits"),
                        icon="fa-balance-scale", category=cat)
    appbuilder.add_view_no_menu(WorkflowInstanceView)
    for api in (TaskApi, WorkflowApi, ApprovalLimitApi):
        appbuilder.add_api(api)

    from flask import current_app

    app = current_app._get_current_object()

    @app.context_processor
    def my_task_count():
        def count():
            user = getattr(g, "user", None) or current_user
            if user is None or not getattr(user, "is_authenticated", False):
                return 0
            try:
                return wf.count_tasks_for_user(db.session, user.username,
                                               {r.name for r in user.roles})
            except Exception:
                db.session.rollback()
                return 0

        return {"my_task_count": count}
