"""/api/v1/retention/: what is due for anonymisation and what is held, a dry run or a run, legal
holds; /api/v1/subject-access/: what the IMS holds about a person or reference."""

from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.domain.errors import ValidationError
from app.security.current import current_username


def _hold(h) -> dict:
    return {"id": h.id, "match": h.match, "value": h.value, "reason": h.reason,
            "created_by": h.created_by, "created_at": h.created_at.isoformat(),
            "released_by": h.released_by,
            "released_at": h.released_at.isoformat() if h.released_at else None}


class RetentionApi(BaseApi):
    resource_name = "retention"
    class_permission_name = "Retention"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"due": "read", "run": "write", "holds": "read",
                              "place_hold": "write", "release_hold": "write"}
    openapi_spec_tag = "Retention"

    @expose("/due", methods=["GET"])
    @protect()
    @domain_errors
    def due(self):
        """What is past its retention period now (per kind: years, cut-off date, due, held,
        a sample of records by id and reference)
        ---
        get:
          responses:
            200:
              description: The plan
        """
        from app.extensions import db
        from app.services import retention as R

        body = R.plan(db.session).as_dict()
        db.session.rollback()
        return self.response(200, **body)

    @expose("/run", methods=["POST"])
    @protect()
    @domain_errors
    def run(self):
        """Anonymise what is due (one audited change), or with {"dry_run": true} say what would
        be done
        ---
        post:
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    dry_run: {type: boolean}
          responses:
            200:
              description: What was (or would be) anonymised, per kind
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import retention as R

        body = request.get_json(silent=True)
        if body is None:
            body = {}
        if not isinstance(body, dict) or not isinstance(body.get("dry_run", False), bool):
            raise ValidationError("Send {\"dry_run\": true|false}.",
                                  {"dry_run": ["true or false."]})
        dry = body.get("dry_run", False)
        result = R.run(db.session, actor=current_username(), dry_run=dry)
        return self.response(200, dry_run=dry, **result.as_dict())

    @expose("/holds", methods=["GET"])
    @protect()
    @domain_errors
    def holds(self):
        """Legal holds, in force first
        ---
        get:
          responses:
            200:
              description: The holds
        """
        from app.extensions import db
        from app.services import retention as R

        return self.response(200, result=[_hold(h) for h in R.all_holds(db.session)])

    @expose("/holds", methods=["POST"])
    @protect()
    @domain_errors
    def place_hold(self):
        """Hold records from anonymisation: {"match": "reference"|"person", "value", "reason"}
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [match, value, reason]
                  properties:
                    match: {type: string, enum: [reference, person]}
                    value: {type: string}
                    reason: {type: string}
          responses:
            201:
              description: The hold
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import retention as R

        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError("Send a JSON object.", {"body": ["A JSON object."]})
        hold = R.place_hold(db.session, match=body.get("match"), value=body.get("value"),
                            reason=body.get("reason"), actor=current_username())
        return self.response(201, **_hold(hold))

    @expose("/holds/<int:pk>/release", methods=["POST"])
    @protect()
    @domain_errors
    def release_hold(self, pk):
        """Release a legal hold (its records are anonymised when due)
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer, minimum: 1}}
          responses:
            200:
              description: Released
            404: {$ref: '#/components/responses/404'}
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import retention as R

        return self.response(200, **_hold(R.release_hold(db.session, pk,
                                                         actor=current_username())))


class SubjectAccessApi(BaseApi):
    resource_name = "subject-access"
    class_permission_name = "SubjectAccess"
    allow_browser_login = True
    base_permissions = ["can_read"]
    method_permission_name = {"report": "read"}
    openapi_spec_tag = "Retention"

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def report(self):
        """What the IMS holds about a person (`q`: a name, or part of one) or an account reference:
        account holders, payments, refunds, card payments, payment requests, suspense items and
        audit events that mention them; `format=csv` for a CSV file
        ---
        get:
          parameters:
            - {in: query, name: q, required: true, schema: {type: string}}
            - {in: query, name: format, schema: {type: string, enum: [json, csv]}}
          responses:
            200:
              description: The report (JSON, or CSV with format=csv)
              content:
                application/json:
                  schema: {type: object}
                text/csv:
                  schema: {type: string}
            422: {$ref: '#/components/responses/422'}
        """
        from app.extensions import db
        from app.services import audit
        from app.services import retention as R

        report = R.subject_access(db.session, request.args.get("q"))
        audit.record(db.session, "subject_access.report", "SubjectAccess", None,
                     after={"records": report.total}, actor=current_username())
        db.session.commit()
        if request.args.get("format") == "csv":
            return Response(R.subject_access_csv(report), mimetype="text/csv",
                            headers={"Content-Disposition":
                                     'attachment; filename="subject-access.csv"'})
        return self.response(200, query=report.query, total=report.total, **report.sections)
