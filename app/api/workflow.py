"""Workflow APIs: /api/v1/tasks/ (inbox, complete), /api/v1/workflows/ (definitions), approval-limits."""

from __future__ import annotations

from flask import Response, g, jsonify, request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from flask_login import current_user
from marshmallow import ValidationError as MMValidationError
from marshmallow import fields, validate, validates_schema
from marshmallow_sqlalchemy import SQLAlchemyAutoSchema
from sqlalchemy import select

from app.api.base import ImsModelRestApi, MoneyField, domain_errors, error_response
from app.domain.errors import DomainError, ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit, WorkflowDefinition
from app.services import approval_limits as limits
from app.services import workflow as wf
from app.services import workflow_admin as admin
from app.services.approval_limits import check_limit
from app.views.base import datamodel


def current_username() -> str:
    user = getattr(g, "user", None) or current_user
    return user.username


def _iso(value):
    return value.isoformat() if value is not None else None


def task_json(task) -> dict:
    instance = task.instance
    return {"id": task.id, "name": task.name, "title": task.title,
            "process_id": instance.process_id, "instance_id": instance.id,
            "subject_type": instance.subject_type, "subject_id": instance.subject_id,
            "role": task.role, "created_at": _iso(task.created_at), "due_at": _iso(task.due_at),
            "amount": None if instance.amount is None else str(instance.amount),
            "requester": instance.requester, "reason": instance.reason}


class TaskApi(BaseApi):
    resource_name = "tasks"
    class_permission_name = "Task"
    method_permission_name = {"list_tasks": "read", "complete": "write"}
    allow_browser_login = True

    @expose("/", methods=["GET"])
    @protect()
    def list_tasks(self):
        """Tasks the caller can complete now
        ---
        get:
          responses:
            200:
              description: Ready tasks in the caller's lanes, minus four-eyes exclusions
        """
        tasks = wf.tasks_for_user(db.session, current_username())
        return jsonify([task_json(t) for t in tasks])  # a bare list, as API.md promises

    @expose("/<task_id>/complete", methods=["POST"])
    @protect()
    @domain_errors
    def complete(self, task_id):
        """Approve or reject a task
        ---
        post:
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    decision: {type: string, enum: [approve, reject]}
                    comment: {type: string}
          responses:
            200: {description: Completed}
            403: {description: Role or four-eyes rule}
            404: {description: No such task}
            409: {description: The task is no longer ready}
            422: {description: Bad decision or a rejection without a comment}
        """
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError("Send a JSON object.", {"decision": ["Required."]})
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ValidationError("The comment must be text.", {"comment": ["Must be text."]})
        result = wf.complete_task(db.session, task_id, current_username(), body.get("decision"),
                                  comment)
        return self.response(200, **result.to_dict())


class WorkflowApi(BaseApi):
    resource_name = "workflows"
    class_permission_name = "WorkflowDefinition"
    method_permission_name = {"list_definitions": "read", "get_bpmn": "read", "put_bpmn": "write",
                              "list_versions": "read", "validate_bpmn": "write",
                              "activate_version": "write"}
    allow_browser_login = True

    @expose("/", methods=["GET"])
    @protect()
    def list_definitions(self):
        """Active workflow definitions
        ---
        get:
          responses:
            200: {description: "[{process_id, version, deployed_at}]"}
        """
        rows = db.session.scalars(select(WorkflowDefinition).where(
            WorkflowDefinition.active.is_(True)).order_by(WorkflowDefinition.process_id))
        return jsonify([  # a bare list, as API.md promises
            {"process_id": d.process_id, "version": d.version, "name": d.name,
             "deployed_at": _iso(d.deployed_at), "sha256": d.sha256} for d in rows])

    @expose("/<process_id>/bpmn", methods=["GET"])
    @protect()
    def get_bpmn(self, process_id):
        """The active BPMN XML of a process
        ---
        get:
          responses:
            200: {description: BPMN XML}
            404: {description: Not deployed}
        """
        definition = wf.active_definition(db.session, process_id)
        if definition is None:
            return self.response(404, message="No such workflow.", errors={})
        return Response(definition.bpmn_xml, status=200, mimetype="application/xml")

    @expose("/<process_id>/bpmn", methods=["PUT"])
    @protect()
    def put_bpmn(self, process_id):
        """Deploy a new version of a process (validated: no scripts, safe expressions)
        ---
        put:
          requestBody:
            content:
              application/xml: {schema: {type: string}}
          responses:
            201: {description: "{version}"}
            422: {description: "{errors: [...]} naming the offending elements"}
        """
        xml = request.get_data(cache=False)
        if not xml:
            return self.response(422, message="Send the BPMN XML as the request body.",
                                 errors=["The body is empty."])
        try:
            base = _base_version()
            if base is None:
                definition = wf.deploy_definition(db.session, xml, current_username(),
                                                  expected_process_id=process_id)
            else:
                definition = admin.deploy_checked(db.session, process_id, xml,
                                                  current_username(), base_version=base)
        except ValidationError as exc:
            db.session.rollback()
            bpmn = exc.errors.get("bpmn")
            return self.response(422, message=exc.message,
                                 errors=[str(e) for e in bpmn] if bpmn is not None else exc.errors,
                                 problems=admin.problems(bpmn or []))
        except DomainError as exc:
            db.session.rollback()
            return error_response(exc)
        return self.response(201, version=definition.version, process_id=definition.process_id)

    @expose("/<process_id>/validate", methods=["POST"])
    @protect()
    @domain_errors
    def validate_bpmn(self, process_id):
        """Check a BPMN as a deploy would, without deploying; and what changed from the active
        ---
        post:
          requestBody:
            content:
              application/xml: {schema: {type: string}}
          responses:
            200: {description: "{valid, errors, problems: [{element, message}], changes, unchanged}"}
        """
        xml = request.get_data(cache=False)
        if not xml:
            return self.response(422, message="Send the BPMN XML as the request body.",
                                 errors=["The body is empty."])
        return self.response(200, **admin.check_definition(db.session, process_id, xml).to_dict())

    @expose("/<process_id>/versions", methods=["GET"])
    @protect()
    def list_versions(self, process_id):
        """Every version of a process, who deployed it, when, and how many requests run on it
        ---
        get:
          responses:
            200: {description: "[{version, active, deployed_at, deployed_by, running, instances}]"}
        """
        found = admin.versions(db.session, process_id)
        if not found:
            return self.response(404, message="No such workflow.", errors={})
        return jsonify([{**v, "deployed_at": _iso(v["deployed_at"])} for v in found[0]["versions"]])

    @expose("/<process_id>/versions/<int:version>/activate", methods=["POST"])
    @protect()
    @domain_errors
    def activate_version(self, process_id, version):
        """Roll back: make an earlier version active again (If-Match: the version you saw active)
        ---
        post:
          responses:
            200: {description: "{version}"}
            409: {description: Another version was deployed meanwhile}
        """
        definition = admin.activate_version(db.session, process_id, version, current_username(),
                                            base_version=_base_version())
        return self.response(200, version=definition.version, process_id=process_id)


def _base_version() -> int | None:
    """The version the client last saw active: ``If-Match: 3`` (or ``"3"``) or ``?base_version=3``."""
    raw = (request.headers.get("If-Match") or request.args.get("base_version") or "").strip()
    raw = raw.removeprefix("W/").strip('"')
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationError("If-Match must be the version number you last saw active.",
                              {"base_version": ["Give a whole number."]})
    return int(raw)


class ApprovalLimitSchema(SQLAlchemyAutoSchema):
    class Meta:
        model = ApprovalLimit
        load_instance = True
        sqla_session = db.session

    id = fields.Integer(dump_only=True)
    action = fields.String(required=True, validate=validate.OneOf(APPROVAL_ACTIONS))
    min_amount = MoneyField(required=True)
    max_amount = MoneyField(allow_none=True, load_default=None)
    approvals_required = fields.Integer(required=True, strict=True,
                                        validate=validate.Range(min=0, max=5))
    roles = fields.String(load_default="", validate=validate.Length(max=300))

    @validates_schema
    def band(self, data, **kwargs):
        lo, hi = data.get("min_amount"), data.get("max_amount")
        if lo is not None and hi is not None and hi < lo:
            raise MMValidationError("The maximum is less than the minimum.", "max_amount")


def _check(self, item):
    check_limit(db.session, item)


COLUMNS = ["action", "min_amount", "max_amount", "approvals_required", "roles"]


def _money_or_none(value, field, n):
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError("Amounts are strings such as \"500.00\".",
                              {field: [f"Band {n}: send the amount as a string, e.g. \"500.00\"."]})
    return Money.parse(value, field=field, allow_zero=True).pence


def _band_json(b) -> dict:
    return {"id": b.id, "min_amount": str(Money(b.min_amount)),
            "max_amount": None if b.max_amount is None else str(Money(b.max_amount)),
            "approvals_required": b.approvals_required, "roles": b.role_list}


class ApprovalLimitApi(ImsModelRestApi):
    """Per-band CRUD (overlaps refused) and the whole scheme of one action at once
    (``/scheme/<action>``: gaps and overlaps refused, If-Match fingerprint against lost updates)."""

    datamodel = datamodel(ApprovalLimit)
    resource_name = "approval-limits"
    class_permission_name = "ApprovalLimit"
    method_permission_name = {**ImsModelRestApi.method_permission_name,
                              "get_scheme": "read", "put_scheme": "write"}
    list_columns = ["id", *COLUMNS]
    show_columns = ["id", *COLUMNS]
    add_columns = COLUMNS
    edit_columns = COLUMNS
    search_columns = ["action", "approvals_required", "roles"]
    order_columns = COLUMNS
    list_model_schema = ApprovalLimitSchema()
    show_model_schema = ApprovalLimitSchema()
    add_model_schema = ApprovalLimitSchema()
    edit_model_schema = ApprovalLimitSchema()
    pre_add = _check
    pre_update = _check

    def _scheme_response(self, action, status=200):
        bands = limits.scheme(db.session, action)
        return self.response(status, action=action, fingerprint=limits.fingerprint(bands),
                             bands=[_band_json(b) for b in bands],
                             problems=limits.scheme_problems(bands))

    @expose("/scheme/<action>", methods=["GET"])
    @protect()
    def get_scheme(self, action):
        """The bands of one action, lowest first, with any gaps or overlaps
        ---
        get:
          responses:
            200: {description: "{action, fingerprint, bands: [...], problems: [...]}"}
        """
        if action not in APPROVAL_ACTIONS:
            return self.response(404, message=f"Unknown action '{action}'.", errors={})
        return self._scheme_response(action)

    @expose("/scheme/<action>", methods=["PUT"])
    @protect()
    @domain_errors
    def put_scheme(self, action):
        """Replace every band of an action at once
        ---
        put:
          requestBody:
            content:
              application/json:
                schema: {type: object, properties: {bands: {type: array}, fingerprint: {type: string}}}
          responses:
            200: {description: the saved scheme}
            409: {description: changed by someone else since the fingerprint was read}
            422: {description: gaps, overlaps, unknown roles or bad amounts}
        """
        if action not in APPROVAL_ACTIONS:
            return self.response(404, message=f"Unknown action '{action}'.", errors={})
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("bands"), list):
            raise ValidationError('Send {"bands": [{"min_amount", "max_amount", "roles"}]}.',
                                  {"bands": ["A list of bands is required."]})
        bands = []
        for n, band in enumerate(payload["bands"], 1):
            if not isinstance(band, dict):
                raise ValidationError("Each band is an object.", {"bands": [f"Band {n} is not an object."]})
            roles = band.get("roles") or []
            if isinstance(roles, str):
                roles = roles.split(",")
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValidationError("Roles are role names.",
                                      {"roles": [f"Band {n}: give the roles as names."]})
            if band.get("approvals_required") is not None and \
                    band["approvals_required"] != len([r for r in roles if r.strip()]):
                raise ValidationError("approvals_required must equal the number of roles.",
                                      {"roles": [f"Band {n}: name one role per approval."]})
            bands.append({"min_amount": _money_or_none(band.get("min_amount"), "min_amount", n),
                          "max_amount": _money_or_none(band.get("max_amount"), "max_amount", n),
                          "roles": roles})
        if any(b["min_amount"] is None for b in bands):
            raise ValidationError("Every band needs a min_amount.", {"min_amount": ["Required."]})
        expected = (request.headers.get("If-Match") or payload.get("fingerprint") or "").strip('"') or None
        limits.replace_scheme(db.session, action, bands, expected=expected)
        return self._scheme_response(action)


__all__ = ["ApprovalLimitApi", "TaskApi", "WorkflowApi", "domain_errors"]
