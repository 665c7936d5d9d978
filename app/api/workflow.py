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
from app.extensions import db
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit, WorkflowDefinition
from app.services import workflow as wf
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
    method_permission_name = {"list_definitions": "read", "get_bpmn": "read", "put_bpmn": "write"}
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
            definition = wf.deploy_definition(db.session, xml, current_username(),
                                              expected_process_id=process_id)
        except ValidationError as exc:
            db.session.rollback()
            return self.response(422, message=exc.message, errors=exc.errors.get("bpmn", []))
        except DomainError as exc:
            db.session.rollback()
            return error_response(exc)
        return self.response(201, version=definition.version, process_id=definition.process_id)


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
ApprovalLimitApi = type("ApprovalLimitApi", (ImsModelRestApi,), {
    "datamodel": datamodel(ApprovalLimit),
    "resource_name": "approval-limits",
    "class_permission_name": "ApprovalLimit",
    "list_columns": ["id", *COLUMNS],
    "show_columns": ["id", *COLUMNS],
    "add_columns": COLUMNS,
    "edit_columns": COLUMNS,
    "search_columns": ["action", "approvals_required", "roles"],
    "order_columns": COLUMNS,
    "list_model_schema": ApprovalLimitSchema(),
    "show_model_schema": ApprovalLimitSchema(),
    "add_model_schema": ApprovalLimitSchema(),
    "edit_model_schema": ApprovalLimitSchema(),
    "pre_add": _check,
    "pre_update": _check,
})

__all__ = ["ApprovalLimitApi", "TaskApi", "WorkflowApi", "domain_errors"]
