"""/api/v1/imports/ (upload, result, reverse, retry, rule tester) and /api/v1/suspense/ (list)."""

from __future__ import annotations

from flask import current_app, request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from marshmallow import Schema, fields

from app.api.base import ImsModelRestApi, MoneyField, domain_errors, error_response, page_arguments
from app.domain.errors import NotFound, ValidationError
from app.models.imports import ImportBatch
from app.models.suspense import SuspenseItem
from app.models.interface import datamodel
from app.services.imports.uploads import submit_upload


def _actor() -> str:
    from app.services.audit import current_actor

    return current_actor()


class ImportApi(BaseApi):
    resource_name = "imports"
    class_permission_name = "Import"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write", "can_reverse"]
    method_permission_name = {"upload": "write", "result": "read", "list_imports": "read",
                              "reverse": "reverse", "retry": "write", "try_rules": "read"}
    openapi_spec_tag = "Imports"

    @expose("/", methods=["POST"])
    @protect()
    @domain_errors
    def upload(self):
        """Upload a file: multipart `file`, `format`, optional `profile` -> 201 {"id","status"}.
        ---
        post:
          requestBody:
            required: true
            content:
              multipart/form-data:
                schema:
                  type: object
                  required: [file, format]
                  properties:
                    file: {type: string, format: binary}
                    format: {type: string, enum: [ims_csv, bank_csv, camt053, mt940, allpay]}
                    profile: {type: string}
                    bank_account: {type: string}
          responses:
            201:
              description: Received; processing has started (poll GET /imports/{pk})
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id: {type: integer}
                      status: {type: string}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Malformed (errors name the lines); nothing posted
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        max_bytes = current_app.config.get("IMS_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
        if request.content_length and request.content_length > max_bytes + 65536:
            raise ValidationError(f"The file is larger than the limit of "
                                  f"{max_bytes // (1024 * 1024)} MB.", {"file": ["Too large."]})
        batch = submit_upload(request.files.get("file"), request.form.get("format", ""),
                              request.form.get("profile"),
                              bank_account=request.form.get("bank_account") or None)
        return self.response(201, id=batch.id, status=batch.status)

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def list_imports(self):
        """Imports, newest first (the first five errors of each)
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200:
              description: One page of imports
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      result: {type: array, items: {$ref: '#/components/schemas/Import'}}
        """
        from sqlalchemy import select

        from app.extensions import db
        from app.services.imports import import_result

        page, size = page_arguments(first=0, default_size=25, max_size=100)
        batches = db.session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc())
                                     .offset(page * size).limit(size)).all()
        out = []
        for b in batches:
            r = import_result(b)
            r.pop("duplicates")
            r["errors"] = r["errors"][:5]
            out.append(r)
        return self.response(200, result=out)

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def result(self, pk):
        """An import's progress and result
        ---
        get:
          responses:
            200:
              description: The import
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Import'}
        """
        from app.extensions import db
        from app.services.imports import import_result

        batch = db.session.get(ImportBatch, pk)
        if batch is None:
            raise NotFound(f"No import {pk}.")
        return self.response(200, **import_result(batch))

    @expose("/<int:pk>/reverse", methods=["POST"])
    @protect()
    @domain_errors
    def reverse(self, pk):
        """Reverse a whole import (Finance Manager), with a reason
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Reason'}
          responses:
            200:
              description: The reversed import
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Import'}
            409: {$ref: '#/components/responses/409'}
        """
        from app.extensions import db
        from app.services.imports import import_result, reverse_import

        reason = (request.get_json(silent=True) or {}).get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValidationError("The reason is text.", {"reason": ["Give the reason as text."]})
        batch = reverse_import(db.session, pk, actor=_actor(), reason=reason or "")
        return self.response(200, **import_result(batch))

    @expose("/<int:pk>/retry", methods=["POST"])
    @protect()
    @domain_errors
    def retry(self, pk):
        """Process a failed import again from where it stopped
        ---
        post:
          responses:
            200:
              description: Processing again
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id: {type: integer}
                      status: {type: string}
            409: {$ref: '#/components/responses/409'}
        """
        from app.extensions import db
        from app.services import imports as svc

        batch = svc.retry_import(db.session, pk, actor=_actor())
        if current_app.config.get("IMS_IMPORT_INLINE"):
            batch = svc.process_import(db.session, pk, actor=_actor())
        else:
            svc.start_background(current_app._get_current_object(), pk)
        return self.response(200, id=batch.id, status=batch.status)

    @expose("/rules/test", methods=["POST"])
    @protect()
    @domain_errors
    def try_rules(self):
        """Dry run: {"reference","amount","narrative"?,"fund_code"?,"import_type"?} -> rules fired.
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [amount]
                  properties:
                    reference: {type: string}
                    amount: {$ref: '#/components/schemas/Money'}
                    narrative: {type: string}
                    fund_code: {type: string}
                    import_type: {type: string}
          responses:
            200:
              description: The rules that fired and where the line would go
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      fired: {type: array, items: {type: string}}
                      destination: {type: string, enum: [suspense, fund]}
                      amount: {$ref: '#/components/schemas/Money'}
        """
        from app.extensions import db
        from app.services.imports import dry_run

        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("amount"), str):
            raise ValidationError('Give the amount as a decimal string, e.g. "12.34".',
                                  {"amount": ["Required, as a decimal string."]})
        text = {k: body.get(k) for k in ("reference", "narrative", "fund_code", "import_type")}
        wrong = [k for k, v in text.items() if v is not None and not isinstance(v, str)]
        if wrong:
            raise ValidationError(f"{wrong[0]} is text.", {k: ["Give text."] for k in wrong})
        result = dry_run(db.session, reference=text["reference"] or "", amount=body["amount"],
                         narrative=text["narrative"], fund_code=text["fund_code"],
                         import_type=text["import_type"])
        db.session.rollback()
        return self.response(200, **result)

    def response_400(self, message=None):  # pragma: no cover - FAB hook
        return error_response(ValidationError(message or "Bad request."))


class SuspenseItemSchema(Schema):
    id = fields.Integer()
    amount = MoneyField()
    remaining_amount = MoneyField()
    reference_text = fields.String(allow_none=True)
    narrative = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    fund_code = fields.String(allow_none=True)
    transaction_date = fields.Date()
    import_id = fields.Integer(allow_none=True)
    line_number = fields.Integer(allow_none=True)
    posting_group_id = fields.Integer(allow_none=True)
    status = fields.String()
    created_at = fields.DateTime()


class SuspenseApi(ImsModelRestApi):
    resource_name = "suspense"
    datamodel = datamodel(SuspenseItem)
    class_permission_name = "SuspenseItem"
    exclude_route_methods = {"post", "put", "delete"}
    _cols = ["id", "amount", "remaining_amount", "reference_text", "narrative", "reason",
             "fund_code", "transaction_date", "import_id", "line_number", "posting_group_id",
             "status", "created_at"]
    list_columns = _cols
    show_columns = _cols
    search_columns = ["reference_text", "narrative", "import_id", "status", "transaction_date",
                      "amount", "fund_code"]
    order_columns = ["id", "amount", "transaction_date", "import_id", "status", "created_at"]
    base_order = ("id", "desc")
    list_model_schema = SuspenseItemSchema()
    show_model_schema = SuspenseItemSchema()
