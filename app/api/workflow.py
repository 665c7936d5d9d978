"""Workflow APIs: /api/v1/tasks/ (inbox, complete), /api/v1/workflows/ (definitions), approval-limits,
/api/v1/configuration-proposals/. Workflow deploys, roll backs and approval-limit changes answer
202 with a pending proposal a Head of Finance approves (app/services/config_proposals.py)."""

from __future__ import annotations

from flask import Response, g, jsonify, request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from flask_login import current_user
from marshmallow import RAISE, Schema, validate, validates_schema
from marshmallow import ValidationError as MMValidationError
from marshmallow import fields
from marshmallow_sqlalchemy import SQLAlchemyAutoSchema
from sqlalchemy import select

from app.api.base import ImsModelRestApi, MoneyField, domain_errors, error_response, normalise_422
from app.domain.errors import DomainError, NotFound, ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.workflow import APPROVAL_ACTIONS, ApprovalLimit, WorkflowDefinition
from app.services import approval_limits as limits
from app.services import config_proposals as proposals
from app.services import workflow as wf
from app.services import workflow_admin as admin
from app.models.interface import datamodel



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


PENDING = "pending_approval"


def _pending(proposal, **extra) -> dict:
    """The 202 body of a change waiting for a Head of Finance."""
    return {"status": PENDING, "proposal_id": proposal.id,
            "message": f"{proposals.describe(proposal)} waits for a Head of Finance's approval "
                       f"(proposal {proposal.id}); nothing has changed yet.", **extra}


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
          parameters:
          - {in: path, name: process_id, required: true, schema: {type: string}}
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
        """Propose a new version of a process (validated: no scripts, safe expressions, lanes
        that may approve); it becomes active when a Head of Finance approves the proposal
        ---
        put:
          parameters:
          - {in: path, name: process_id, required: true, schema: {type: string}}
          requestBody:
            required: true
            content:
              application/xml: {schema: {type: string}}
          responses:
            202: {description: "{status: pending_approval, proposal_id, version}"}
            403: {description: the configuration approval workflow is part of the code}
            409: {description: another version became active since If-Match}
            422: {description: "{errors: [...]} naming the offending elements"}
        """
        xml = request.get_data(cache=False)
        if not xml:
            return self.response(422, message="Send the BPMN XML as the request body.",
                                 errors=["The body is empty."])
        try:
            proposal = proposals.propose_workflow(db.session, process_id, xml,
                                                  current_username(), base_version=_base_version())
        except ValidationError as exc:
            db.session.rollback()
            bpmn = exc.errors.get("bpmn")
            return self.response(422, message=exc.message,
                                 errors=[str(e) for e in bpmn] if bpmn is not None else exc.errors,
                                 problems=admin.problems(bpmn or []))
        except DomainError as exc:
            db.session.rollback()
            return error_response(exc)
        return self.response(202, **_pending(proposal, version=proposal.definition.version,
                                             process_id=process_id))

    @expose("/<process_id>/validate", methods=["POST"])
    @protect()
    @domain_errors
    def validate_bpmn(self, process_id):
        """Check a BPMN as a deploy would, without deploying; and what changed from the active
        ---
        post:
          parameters:
          - {in: path, name: process_id, required: true, schema: {type: string}}
          requestBody:
            required: true
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
          parameters:
          - {in: path, name: process_id, required: true, schema: {type: string}}
          responses:
            200: {description: "[{version, active, deployed_at, deployed_by, running, instances, proposal}]"}
        """
        found = admin.versions(db.session, process_id)
        if not found:
            return self.response(404, message="No such workflow.", errors={})
        return jsonify([{**v, "deployed_at": _iso(v["deployed_at"])} for v in found[0]["versions"]])

    @expose("/<process_id>/versions/<int:version>/activate", methods=["POST"])
    @protect()
    @domain_errors
    def activate_version(self, process_id, version):
        """Propose a roll back: make an earlier version active again once a Head of Finance
        approves (If-Match: the version you saw active)
        ---
        post:
          parameters:
          - {in: path, name: process_id, required: true, schema: {type: string}}
          - {in: path, name: version, required: true, schema: {type: integer}}
          responses:
            202: {description: "{status: pending_approval, proposal_id, version}"}
            409: {description: Another version became active meanwhile}
        """
        proposal = proposals.propose_activation(db.session, process_id, version,
                                                current_username(), base_version=_base_version())
        return self.response(202, **_pending(proposal, version=version, process_id=process_id))


def _base_version() -> int | None:
    """The version the client last saw active: ``If-Match: 3`` (or ``"3"``) or ``?base_version=3``."""
    raw = (request.headers.get("If-Match") or request.args.get("base_version") or "").strip()
    raw = raw.removeprefix("W/").strip('"')
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ValidationError("If-Match must be the version number you last saw active.",
                              {"base_version": ["Give a whole number."]})
    return int(raw)


def proposal_json(proposal) -> dict:
    out = proposals.details(db.session, proposal)
    for key in ("proposed_at", "decided_at"):
        out[key] = _iso(out[key])
    for scheme in out.get("schemes", []):
        for side in ("before", "after"):
            scheme[side] = [_band_json_from_dict(b) for b in scheme[side]]
    return out


class ConfigProposalApi(BaseApi):
    """Proposed configuration changes and their state (read by everyone who reads workflows)."""

    resource_name = "configuration-proposals"
    class_permission_name = "WorkflowDefinition"
    method_permission_name = {"list_proposals": "read", "show_proposal": "read"}
    allow_browser_login = True

    @expose("/", methods=["GET"])
    @protect()
    def list_proposals(self):
        """Configuration proposals, newest first (?status=pending|approved|rejected)
        ---
        get:
          parameters:
          - in: query
            name: status
            required: false
            schema: {type: string, enum: [pending, approved, rejected]}
          responses:
            200: {description: "[{id, kind, target, status, description, proposed_by, task_id, ...}]"}
        """
        status = request.args.get("status") or None
        if status is not None and status not in proposals.STATUS_LABELS:
            return self.response(422, message="status is pending, approved or rejected.",
                                 errors={"status": ["Choose pending, approved or rejected."]})
        return jsonify([proposal_json(p) for p in proposals.proposals(db.session, status=status)])

    @expose("/<proposal_id>", methods=["GET"])
    @protect()
    @domain_errors
    def show_proposal(self, proposal_id):
        """One proposal, with what it changes (a BPMN diff, or bands before and after)
        ---
        get:
          parameters:
          - {in: path, name: proposal_id, required: true, schema: {type: integer}}
          responses:
            200: {description: "{id, kind, status, changes | schemes, stale, task_id, ...}"}
            404: {description: No such proposal}
        """
        return self.response(200, **proposal_json(proposals.get_proposal(db.session, proposal_id)))


class ApprovalLimitSchema(SQLAlchemyAutoSchema):
    """How a band is shown (changes are parsed by BandChangeSchema)."""

    class Meta:
        model = ApprovalLimit
        load_instance = True
        sqla_session = db.session

    id = fields.Integer(dump_only=True)
    action = fields.String(required=True, validate=validate.OneOf(APPROVAL_ACTIONS))
    min_amount = MoneyField(required=True)
    max_amount = MoneyField(allow_none=True, load_default=None)
    approvals_required = fields.Integer(required=True, strict=True,
                                        validate=validate.Range(min=0, max=limits.MAX_APPROVALS))
    roles = fields.String(load_default="", validate=validate.Length(max=300))


class BandAmountField(MoneyField):
    """A band limit: "0.00" allowed, at most MAX_PENCE."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise MMValidationError('Give money as a decimal string, e.g. "500.00".')
        try:
            pence = Money.parse(value, field=attr or "amount", allow_zero=True).pence
        except ValidationError as exc:
            raise MMValidationError(next(iter(exc.errors.values()))[0] if exc.errors
                                    else exc.message) from None
        if pence > limits.MAX_PENCE:
            raise MMValidationError(f"At most {Money(limits.MAX_PENCE)}.")
        return pence


class BandChangeSchema(Schema):
    """A band sent to POST/PUT /api/v1/approval-limits/ (roles: comma-separated, in order)."""

    class Meta:
        unknown = RAISE

    action = fields.String(required=True, validate=validate.OneOf(APPROVAL_ACTIONS))
    min_amount = BandAmountField(required=True)
    max_amount = BandAmountField(allow_none=True)
    approvals_required = fields.Integer(required=True, strict=True,
                                        validate=validate.Range(min=0, max=limits.MAX_APPROVALS))
    roles = fields.String(validate=validate.Length(max=300))

    @validates_schema
    def band(self, data, **kwargs):
        lo, hi = data.get("min_amount"), data.get("max_amount")
        if lo is not None and hi is not None and hi < lo:
            raise MMValidationError("The maximum is less than the minimum.", "max_amount")


COLUMNS = ["action", "min_amount", "max_amount", "approvals_required", "roles"]


def _money_or_none(value, field, n):
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError("Amounts are strings such as \"500.00\".",
                              {field: [f"Band {n}: send the amount as a string, e.g. \"500.00\"."]})
    pence = Money.parse(value, field=field, allow_zero=True).pence
    if pence > limits.MAX_PENCE:
        raise ValidationError(f"Band {n}: the amount is too large.",
                              {field: [f"Band {n}: at most {Money(limits.MAX_PENCE)}."]})
    return pence


def _band_json(b) -> dict:
    return {"id": b.id, "min_amount": str(Money(b.min_amount)),
            "max_amount": None if b.max_amount is None else str(Money(b.max_amount)),
            "approvals_required": b.approvals_required, "roles": b.role_list}


def _band_json_from_dict(b: dict) -> dict:
    return {"min_amount": str(Money(b["min_amount"])),
            "max_amount": None if b["max_amount"] is None else str(Money(b["max_amount"])),
            "approvals_required": len(b["roles"]), "roles": b["roles"]}


class ApprovalLimitApi(ImsModelRestApi):
    """Bands of the scheme of delegation: read them; propose changes per band (``POST``, ``PUT
    /<id>``: overlaps refused) or for a whole action at once (``PUT /scheme/<action>``: gaps and
    overlaps refused, If-Match fingerprint against lost updates). Changes answer 202 and take
    effect when a Head of Finance approves the proposal."""

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

    def _band_change(self, partial: bool) -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError("Send the band as a JSON object.",
                                  {"body": ["A JSON object is required."]})
        try:
            return BandChangeSchema().load(body, partial=partial)
        except MMValidationError as err:
            message, errors = normalise_422(err.messages)
            raise ValidationError(message, errors) from None

    @expose("/", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Propose a new band (it takes effect when a Head of Finance approves)
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [action, min_amount, approvals_required]
                  properties:
                    action: {type: string, enum: [refund, write_off, suspense_allocation, cash_up]}
                    min_amount: {type: string}
                    max_amount: {type: string, nullable: true}
                    approvals_required: {type: integer, minimum: 0, maximum: 5}
                    roles: {type: string}
          responses:
            202: {description: "{status: pending_approval, proposal_id}"}
            409: {description: changed by someone else meanwhile}
            422: {description: overlaps, bands below the four-eyes floor, bad roles or amounts}
        """
        values = self._band_change(partial=False)
        proposal = proposals.propose_band(db.session, current_username(), values)
        return self.response(202, **_pending(proposal))

    @expose("/<pk>", methods=["PUT"])
    @protect()
    @domain_errors
    def put(self, pk):
        """Propose a change of one band (the fields sent replace the band's)
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    action: {type: string, enum: [refund, write_off, suspense_allocation, cash_up]}
                    min_amount: {type: string}
                    max_amount: {type: string, nullable: true}
                    approvals_required: {type: integer, minimum: 0, maximum: 5}
                    roles: {type: string}
          responses:
            202: {description: "{status: pending_approval, proposal_id}"}
            404: {description: No such band}
            422: {description: overlaps, bands below the four-eyes floor, bad roles or amounts}
        """
        if not str(pk).isascii() or not str(pk).isdigit() or len(str(pk)) > 18:
            raise NotFound(f"No approval limit {pk}.")
        values = self._band_change(partial=True)
        proposal = proposals.propose_band(db.session, current_username(), values,
                                          band_id=int(pk))
        return self.response(202, **_pending(proposal))

    def _scheme_response(self, action, status=200):
        bands = limits.scheme(db.session, action)
        pending = proposals.proposals(db.session, status="pending", kinds=["approval_limits"],
                                      target=action)
        return self.response(status, action=action, fingerprint=limits.fingerprint(bands),
                             bands=[_band_json(b) for b in bands],
                             problems=limits.scheme_problems(bands)
                             + limits.floor_problems(action, bands),
                             pending_proposals=[p.id for p in pending])

    @expose("/scheme/<action>", methods=["GET"])
    @protect()
    def get_scheme(self, action):
        """The bands of one action, lowest first, with any gaps, overlaps or bands below the
        four-eyes floor, and the proposals waiting for approval
        ---
        get:
          parameters:
          - {in: path, name: action, required: true, schema: {type: string}}
          responses:
            200: {description: "{action, fingerprint, bands, problems, pending_proposals}"}
            404: {description: Unknown action}
        """
        if action not in APPROVAL_ACTIONS:
            return self.response(404, message=f"Unknown action '{action}'.", errors={})
        return self._scheme_response(action)

    @expose("/scheme/<action>", methods=["PUT"])
    @protect()
    @domain_errors
    def put_scheme(self, action):
        """Propose every band of an action at once (takes effect when a Head of Finance approves)
        ---
        put:
          parameters:
          - {in: path, name: action, required: true, schema: {type: string}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [bands]
                  properties:
                    bands:
                      type: array
                      items:
                        type: object
                        properties:
                          min_amount: {type: string}
                          max_amount: {type: string, nullable: true}
                          roles: {type: array, items: {type: string}}
                    fingerprint: {type: string}
          responses:
            202: {description: "{status: pending_approval, proposal_id}"}
            404: {description: Unknown action}
            409: {description: changed by someone else since the fingerprint was read}
            422: {description: gaps, overlaps, unknown roles, bands below the four-eyes floor or bad amounts}
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
            roles = band.get("roles")
            required = band.get("approvals_required")
            if required is not None:
                counted = roles.split(",") if isinstance(roles, str) else roles
                if not isinstance(counted, list) or required != len(
                        [r for r in counted if not isinstance(r, str) or r.strip()]):
                    raise ValidationError("approvals_required must equal the number of roles.",
                                          {"roles": [f"Band {n}: name one role per approval."]})
            bands.append({"min_amount": _money_or_none(band.get("min_amount"), "min_amount", n),
                          "max_amount": _money_or_none(band.get("max_amount"), "max_amount", n),
                          "roles": roles})
        if any(b["min_amount"] is None for b in bands):
            raise ValidationError("Every band needs a min_amount.", {"min_amount": ["Required."]})
        expected = request.headers.get("If-Match") or payload.get("fingerprint") or ""
        if not isinstance(expected, str):
            raise ValidationError("The fingerprint is text.", {"fingerprint": ["Give text."]})
        proposal = proposals.propose_limits(db.session, {action: bands}, current_username(),
                                            expected={action: expected.strip('"') or None})
        return self.response(202, **_pending(proposal))


__all__ = ["ApprovalLimitApi", "ConfigProposalApi", "TaskApi", "WorkflowApi", "domain_errors"]
