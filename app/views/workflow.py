"""Workflow pages: My tasks (inbox + task page), Workflows (definitions, upload), instances, limits."""

from __future__ import annotations

from flask import Response, abort, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from app.domain.errors import DomainError, Forbidden, ValidationError
from app.domain.i18n import N_
from app.domain.ids import parse_id
from app.domain.money import Money
from app.extensions import db
from app.models.workflow import APPROVAL_ACTIONS, WorkflowDefinition, WorkflowInstance
from app.services import approval_limits as limits
from app.services import workflow as wf
from app.services import workflow_admin as admin


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
    """Workflows: processes with their versions; the BPMN editor (check, see what changed,
    deploy with a version check); upload, download and roll back. Same checks as the API."""

    route_base = "/workflows"
    class_permission_name = "WorkflowDefinition"
    method_permission_name = {"list": "read", "download": "read", "upload": "write",
                              "edit": "write", "check": "write", "deploy": "write",
                              "activate": "write", "check_expression": "write"}
    base_permissions = ["can_read", "can_write"]
    default_view = "list"

    def _can_write(self) -> bool:
        return self.appbuilder.sm.has_access("can_write", self.class_permission_name)

    def _render_list(self, errors=None, status=200):
        instances = list(db.session.scalars(select(WorkflowInstance).order_by(
            WorkflowInstance.id.desc()).limit(50)))
        return self.render_template("workflow/definitions.html",
                                    processes=admin.versions(db.session),
                                    instances=instances, errors=errors or [],
                                    can_write=self._can_write(), title=_("Workflows")), status

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

    @expose("/<int:definition_id>/activate", methods=["POST"])
    @has_access
    def activate(self, definition_id):
        """Roll back: make an earlier version the active one again (new requests use it)."""
        definition = db.session.get(WorkflowDefinition, definition_id)
        if definition is None:
            abort(404)
        base = request.form.get("base_version", type=int)
        try:
            admin.activate_version(db.session, definition.process_id, definition.version,
                                   _username(), base_version=base)
        except DomainError as exc:
            db.session.rollback()
            return self._render_list([exc.message], exc.status)
        flash(_("Version %(version)s of %(process)s is active again. Requests already running "
                "stay on their version.", version=definition.version,
                process=definition.process_id), "success")
        return redirect(url_for("WorkflowDefinitionView.list"))

    @expose("/<process_id>/edit")
    @has_access
    def edit(self, process_id):
        """The BPMN editor, opened on the active version (or ``?version=N`` to start from it)."""
        active = wf.active_definition(db.session, process_id)
        if active is None:
            abort(404)
        source = active
        version = parse_id(request.args.get("version"))
        if version is not None and version != active.version:
            source = db.session.scalar(select(WorkflowDefinition).where(
                WorkflowDefinition.process_id == process_id, WorkflowDefinition.version == version))
            if source is None:
                abort(404)
        from app.security.roles import ROLES

        return self.render_template(
            "workflow/editor.html", active=active, source=source, roles=list(ROLES),
            operators=admin.operators(),
            field_labels={k: _(v) for k, v in admin.FIELD_LABELS.items()},
            title=_("Edit workflow %(process)s", process=active.name))

    def _xml_from_request(self) -> tuple[str, int | None]:
        payload = request.get_json(silent=True) or {}
        xml = payload.get("xml") or ""
        base = payload.get("base_version")
        if not isinstance(xml, str) or not xml.strip():
            raise ValidationError(_("The diagram is empty."), {"bpmn": [_("The diagram is empty.")]})
        if base is not None and not isinstance(base, int):
            raise ValidationError("base_version must be a whole number.", {})
        return xml, base

    @expose("/<process_id>/check", methods=["POST"])
    @has_access
    def check(self, process_id):
        """Validate as a deploy would and summarise what changed; deploys nothing."""
        try:
            xml, _base = self._xml_from_request()
            result = admin.check_definition(db.session, process_id, xml)
        except DomainError as exc:
            db.session.rollback()
            return jsonify(exc.to_dict()), exc.status
        return jsonify(result.to_dict())

    @expose("/<process_id>/deploy", methods=["POST"])
    @has_access
    def deploy(self, process_id):
        """Deploy the editor's diagram as a new version if nobody deployed one meanwhile."""
        try:
            xml, base = self._xml_from_request()
            definition = admin.deploy_checked(db.session, process_id, xml, _username(),
                                              base_version=base)
        except DomainError as exc:
            db.session.rollback()
            body = exc.to_dict()
            body["problems"] = admin.problems(exc.errors.get("bpmn", []))
            return jsonify(body), exc.status
        return jsonify({"version": definition.version, "process_id": definition.process_id,
                        "message": _("Deployed version %(version)s. New requests follow it; "
                                     "requests already running stay on their version.",
                                     version=definition.version)}), 201

    @expose("/check-expression", methods=["POST"])
    @has_access
    def check_expression(self):
        """Is a condition or timer expression allowed? (the editor asks as the user types)"""
        payload = request.get_json(silent=True) or {}
        text = payload.get("expression")
        if not isinstance(text, str):
            return jsonify({"valid": False, "error": _("Send {\"expression\": \"...\"}.")}), 422
        error = admin.check_expression(text)
        return jsonify({"valid": error is None, "error": error})


class WorkflowInstanceView(BaseView):
    """One instance: the diagram with the current task highlighted, and its history.

    It shows what the request is about (amount, reason, payee), so beyond reading workflows a
    user must be allowed to read its subject (roles.SUBJECT_RESOURCES), or have requested it,
    or hold the role of one of its tasks (its approvers), or have completed one; others get 403.
    """

    route_base = "/workflow-instances"
    class_permission_name = "WorkflowInstance"
    method_permission_name = {"show": "read"}
    base_permissions = ["can_read"]

    def _may_see(self, instance: WorkflowInstance) -> bool:
        from app.security.roles import SUBJECT_RESOURCES

        resource = SUBJECT_RESOURCES.get(instance.subject_type)
        if resource is not None and self.appbuilder.sm.has_access("can_read", resource):
            return True
        user = g.user
        if user.username in (instance.requester, instance.started_by):
            return True
        roles = {r.name for r in user.roles}
        return any(t.role in roles or t.completed_by == user.username for t in instance.tasks)

    @expose("/<int:instance_id>")
    @has_access
    def show(self, instance_id):
        instance = db.session.get(WorkflowInstance, instance_id)
        if instance is None:
            abort(404)
        if not self._may_see(instance):
            abort(403)
        summary = wf.subject_summary(db.session, instance)
        return self.render_template(
            "workflow/instance.html", instance=instance, summary=summary,
            current=wf.current_elements(instance),
            title=_("Workflow %(id)s", id=instance.id))


class ApprovalLimitView(BaseView):
    """The scheme of delegation as a table per action: bands edited together, saved at once,
    refused if they leave a gap or overlap; new requests follow it immediately."""

    route_base = "/approval-limits"
    class_permission_name = "ApprovalLimit"
    method_permission_name = {"list": "read", "save": "write"}
    base_permissions = ["can_read", "can_write"]
    default_view = "list"

    def _render(self, errors=None, submitted=None, status=200):
        from app.security.roles import ROLES

        schemes = []
        for action in APPROVAL_ACTIONS:
            bands = limits.scheme(db.session, action)
            schemes.append({"action": action, "bands": bands,
                            "fingerprint": limits.fingerprint(bands),
                            "problems": limits.scheme_problems(bands)})
        can_write = self.appbuilder.sm.has_access("can_write", self.class_permission_name)
        return self.render_template(
            "workflow/approval_limits.html", schemes=schemes, roles=list(ROLES),
            errors=errors or {}, submitted=submitted or {}, can_write=can_write,
            action_labels=ACTION_LABELS, title=_("Approval limits")), status

    @expose("/")
    @has_access
    def list(self):
        return self._render()

    @expose("/<action>", methods=["POST"])
    @has_access
    def save(self, action):
        if action not in APPROVAL_ACTIONS:
            abort(404)
        form = request.form
        bands, bad = [], []
        for n in range(int(form.get("rows", "0") or 0)):
            if form.get(f"remove-{n}"):
                continue
            lo_text = (form.get(f"min-{n}") or "").strip()
            hi_text = (form.get(f"max-{n}") or "").strip()
            roles = [form.get(f"role-{n}-{k}", "") for k in range(5)]
            if not lo_text and not hi_text and not any(roles):
                continue  # an empty spare row
            try:
                lo = Money.parse_form(lo_text or "0", allow_zero=True).pence
                hi = Money.parse_form(hi_text, allow_zero=True).pence if hi_text else None
            except (ValueError, DomainError):
                bad.append(_("Row %(n)s: amounts are pounds and pence, e.g. 500.00.", n=n + 1))
                continue
            bands.append({"min_amount": lo, "max_amount": hi, "roles": roles})
        try:
            if bad:
                raise ValidationError(_("The approval limits were not saved."), {"amounts": bad})
            limits.replace_scheme(db.session, action, bands, expected=form.get("fingerprint"))
        except DomainError as exc:
            db.session.rollback()
            details = [m for msgs in exc.errors.values() for m in msgs]
            shown = details if isinstance(exc, ValidationError) and details else [exc.message]
            return self._render({action: shown}, {action: bands}, exc.status)
        flash(_("Approval limits for %(action)s saved. New requests follow them now.",
                action=_(ACTION_LABELS[action])), "success")
        return redirect(url_for("ApprovalLimitView.list") + f"#scheme-{action}")


ACTION_LABELS = {"refund": N_("Refunds"), "write_off": N_("Write-offs"),
                 "suspense_allocation": N_("Suspense allocations")}


def register_workflow_views(appbuilder) -> None:
    """Add the workflow pages, APIs and the "My tasks (N)" navbar count (called by register_views)."""
    from app.api.workflow import ApprovalLimitApi, TaskApi, WorkflowApi

    cat = "Workflows"
    appbuilder.add_view(TaskView, "My tasks", label=_l("My tasks"), icon="fa-inbox",
                        category=cat, category_label=_l("Workflows"), category_icon="fa-sitemap")
    appbuilder.add_view(WorkflowDefinitionView, "Workflow definitions",
                        label=_l("Workflows"), icon="fa-sitemap", category=cat)
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
