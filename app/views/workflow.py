"""Workflow pages: My tasks (inbox + task page), Workflows (definitions, upload, proposals),
instances, limits. Deploys, roll backs and limit changes made here are proposals a Head of Finance
approves through their task list (app/services/config_proposals.py)."""

from __future__ import annotations

from flask import Response, abort, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from app.services.scope import subject_allowed
from app.domain.errors import DomainError, Forbidden, ValidationError
from app.domain.i18n import N_
from app.domain.ids import parse_id
from app.domain.money import Money
from app.extensions import db
from app.models.workflow import APPROVAL_ACTIONS, WorkflowDefinition, WorkflowInstance
from app.services import approval_limits as limits
from app.services import config_proposals as proposals
from app.services import workflow as wf
from app.services import workflow_admin as admin

ACTION_LABELS = {"refund": N_("Refunds"), "write_off": N_("Write-offs"),
                 "suspense_allocation": N_("Suspense allocations"), "cash_up": N_("Cash-ups")}
#: fixed labels the proposal partial translates (workflow/_proposal.html)
PROPOSAL_LABELS = {"kinds": proposals.KIND_LABELS, "status": proposals.STATUS_LABELS,
                   "actions": ACTION_LABELS, "fields": admin.FIELD_LABELS}


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
        from app.models.base import utcnow

        tasks = wf.tasks_for_user(db.session, _username())
        now = utcnow()
        overdue = {t.id for t in tasks if t.due_at is not None and _aware(t.due_at) <= now}
        return self.render_template("workflow/inbox.html", tasks=tasks, overdue=overdue,
                                    title=_("My tasks"))

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
                                    labels=PROPOSAL_LABELS, title=task.title)
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
        # one message: the decision, and what it did to the request
        if result.outcome == "approved":
            flash(_("Approved: the request is now approved."), "success")
        elif result.outcome == "rejected":
            flash(_("Rejected: the request is now rejected."), "success")
        elif decision == "approve":
            flash(_("Approved: the request goes to the next approver."), "success")
        else:
            flash(_("Rejected."), "success")
        return redirect(url_for("TaskView.inbox"))


def _aware(moment):
    from datetime import timezone

    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _proposal_rows(kinds, target=None) -> list[dict]:
    """Pending proposals, then the latest decided ones, as the pages show them."""
    pending = proposals.proposals(db.session, status="pending", kinds=kinds, target=target)
    decided = [p for p in proposals.proposals(db.session, kinds=kinds, target=target, limit=30)
               if p.status != "pending"][:10]
    return [proposals.details(db.session, p) for p in pending + decided]


def _submitted(proposal) -> str:
    return _("Submitted for approval as proposal %(id)s: %(what)s. It takes effect when a Head "
             "of Finance approves it.", id=proposal.id, what=proposals.describe(proposal))


class WorkflowDefinitionView(BaseView):
    """Workflows: processes with their versions and the proposals waiting for approval; the BPMN
    editor (check, see what changed, submit for approval with a version check); upload, download
    and propose a roll back. Same checks as the API."""

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
                                    proposals=_proposal_rows(["workflow_deploy",
                                                              "workflow_activate"]),
                                    labels=PROPOSAL_LABELS, instances=instances, errors=errors or [],
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
            parsed = wf.check(xml)
            proposal = proposals.propose_workflow(db.session, parsed.process_id, xml, _username())
        except DomainError as exc:
            db.session.rollback()
            return self._render_list(exc.errors.get("bpmn") or [exc.message], exc.status)
        flash(_submitted(proposal), "success")
        return redirect(url_for("WorkflowDefinitionView.list") + f"#proposal-{proposal.id}")

    @expose("/<int:definition_id>/activate", methods=["POST"])
    @has_access
    def activate(self, definition_id):
        """Propose a roll back: make an earlier version the active one again (new requests use
        it once a Head of Finance approves)."""
        definition = db.session.get(WorkflowDefinition, definition_id)
        if definition is None:
            abort(404)
        base = request.form.get("base_version", type=int)
        try:
            proposal = proposals.propose_activation(db.session, definition.process_id,
                                                    definition.version, _username(),
                                                    base_version=base)
        except DomainError as exc:
            db.session.rollback()
            return self._render_list([exc.message], exc.status)
        flash(_submitted(proposal), "success")
        return redirect(url_for("WorkflowDefinitionView.list") + f"#proposal-{proposal.id}")

    @expose("/<process_id>/edit")
    @has_access
    def edit(self, process_id):
        """The BPMN editor, opened on the active version (or ``?version=N`` to start from it)."""
        active = wf.active_definition(db.session, process_id)
        if active is None:
            abort(404)
        if admin.is_guarded_by_code(process_id):
            flash(_("This workflow approves configuration changes and is part of the code: it "
                    "cannot be edited here."), "warning")
            return redirect(url_for("WorkflowDefinitionView.list"))
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
            proposals=_proposal_rows(["workflow_deploy", "workflow_activate"], process_id),
            labels=PROPOSAL_LABELS,
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
        """Submit the editor's diagram for approval as a new version, if no other version became
        active meanwhile (202: pending; it takes effect when a Head of Finance approves)."""
        try:
            xml, base = self._xml_from_request()
            proposal = proposals.propose_workflow(db.session, process_id, xml, _username(),
                                                  base_version=base)
        except DomainError as exc:
            db.session.rollback()
            body = exc.to_dict()
            body["problems"] = admin.problems(exc.errors.get("bpmn", []))
            return jsonify(body), exc.status
        version = proposal.definition.version
        return jsonify({"status": "pending_approval", "proposal_id": proposal.id,
                        "version": version, "process_id": process_id,
                        "proposed_at": proposal.proposed_at.isoformat(),
                        "message": _("Version %(version)s was submitted for approval as proposal "
                                     "%(id)s. It takes effect when a Head of Finance approves "
                                     "it; until then new requests follow the active version.",
                                     version=version, id=proposal.id)}), 202

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
        if instance is None or not subject_allowed(db.session, instance.subject_type,
                                                   instance.subject_id):
            abort(404)
        if not self._may_see(instance):
            abort(403)
        summary = wf.subject_summary(db.session, instance)
        return self.render_template(
            "workflow/instance.html", instance=instance, summary=summary,
            current=wf.current_elements(instance),
            title=_("Workflow %(id)s", id=instance.id))


class ApprovalLimitView(BaseView):
    """The scheme of delegation as a table per action: bands edited together and submitted for
    approval at once, refused if they leave a gap, overlap or fall below the four-eyes floor;
    new requests follow them once a Head of Finance approves."""

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
                            "problems": limits.scheme_problems(bands)
                            + limits.floor_problems(action, bands),
                            "proposals": _proposal_rows(["approval_limits"], action)})
        can_write = self.appbuilder.sm.has_access("can_write", self.class_permission_name)
        return self.render_template(
            "workflow/approval_limits.html", schemes=schemes, roles=list(ROLES),
            errors=errors or {}, submitted=submitted or {}, can_write=can_write,
            action_labels=ACTION_LABELS, labels=PROPOSAL_LABELS,
            ceiling=limits.suspense_ceiling(), approving_roles=limits.APPROVING_ROLES,
            title=_("Approval limits")), status

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
        rows = min(max(form.get("rows", 0, type=int) or 0, 0), 100)  # the page sends a few
        for n in range(rows):
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
            proposal = proposals.propose_limits(db.session, {action: bands}, _username(),
                                                expected={action: form.get("fingerprint") or None})
        except DomainError as exc:
            db.session.rollback()
            details = [m for msgs in exc.errors.values() for m in msgs]
            shown = details if isinstance(exc, ValidationError) and details else [exc.message]
            return self._render({action: shown}, {action: bands}, exc.status)
        flash(_submitted(proposal), "success")
        return redirect(url_for("ApprovalLimitView.list") + f"#proposal-{proposal.id}")



def register_workflow_views(appbuilder) -> None:
    """Add the workflow pages and the "My tasks (N)" navbar count (called by register_views)."""

    cat = "Workflows"
    appbuilder.add_view(TaskView, "My tasks", label=_l("My tasks"), icon="fa-inbox",
                        category=cat, category_label=_l("Workflows"), category_icon="fa-sitemap")
    appbuilder.add_view(WorkflowDefinitionView, "Workflow definitions",
                        label=_l("Workflows"), icon="fa-sitemap", category=cat)
    appbuilder.add_view(ApprovalLimitView, "Approval limits", label=_l("Approval limits"),
                        icon="fa-balance-scale", category=cat)
    appbuilder.add_view_no_menu(WorkflowInstanceView)

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
