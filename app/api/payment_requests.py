"""Payment requests API (shared/API.md "Taking money"): other council systems (the Payment
Integration role) and Income Clerks create a request; the citizen pays it at ``next_url``."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.security.current import current_username
from app.domain.errors import ValidationError
from app.extensions import db
from app.services import card_payments as CP
from app.services.idempotency import fingerprint


class PaymentRequestApi(BaseApi):
    resource_name = "payment-requests"
    class_permission_name = "PaymentRequest"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"post": "write", "get": "read", "get_list": "read"}
    allow_browser_login = True

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Create a payment request; the citizen pays it at next_url
        ---
        post:
          parameters:
          - in: header
            name: Idempotency-Key
            description: A repeat with the same body returns the request the first use created,
              as it is now, and creates nothing; the same key with another body is a 422.
            schema: {type: string, minLength: 1, maxLength: 200, pattern: '^[ -~]+$'}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [items]
                  properties:
                    items:
                      type: array
                      minItems: 1
                      maxItems: 10
                      items:
                        type: object
                        required: [fund_code, reference, amount]
                        properties:
                          fund_code: {type: string}
                          reference: {type: string}
                          amount: {$ref: '#/components/schemas/Money'}
                    reference: {type: string, maxLength: 100}
                    return_url: {type: string, format: uri}
                    email: {type: string}
                    name: {type: string}
                    language: {type: string, enum: [en, cy]}
          responses:
            201:
              description: The request
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id: {type: integer}
                      status: {type: string}
                      next_url: {type: string}
                      expires_at: {type: string}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Invalid, or an Idempotency-Key already used with another body;
                nothing created
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        idem_key = request.headers.get("Idempotency-Key")
        if idem_key is not None:
            idem_key = idem_key.strip()
            if not idem_key or len(idem_key) > 200 or not idem_key.isascii() \
                    or not idem_key.isprintable():
                raise ValidationError("Idempotency-Key must be 1 to 200 printable ASCII characters.",
                                      {"Idempotency-Key": ["1 to 200 printable ASCII characters."]})
        data = json_body()
        language = data.get("language", "en")
        if language not in ("en", "cy"):
            raise ValidationError("language: en or cy.", {"language": ["en or cy."]})
        for key in ("email", "name"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise ValidationError(f"{key}: give text.", {key: ["Give text."]})
        req = CP.create_request(db.session, items=data.get("items"), actor=current_username(),
                                email=data.get("email"), name=data.get("name"),
                                reference=data.get("reference"), return_url=data.get("return_url"),
                                language=language, idempotency_key=idem_key,
                                idempotency_fingerprint=fingerprint(data))
        out = CP.request_json(db.session, req)
        return self.response(201, **out)

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def get_list(self):
        """Payment requests, newest first (filter: status)
        ---
        get:
          parameters:
          - in: query
            name: status
            schema: {type: string, enum: [created, pending, paid, failed, cancelled, expired]}
          responses:
            200:
              description: The requests (at most 200)
        """
        status = request.args.get("status") or None
        if status is not None and status not in CP.REQUEST_STATUSES:
            raise ValidationError("status: unknown.", {"status": ["Unknown status."]})
        rows = CP.list_requests(db.session, status=status)
        return self.response(200, count=len(rows),
                             result=[CP.request_json(db.session, r) for r in rows])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One payment request and its state
        ---
        get:
          responses:
            200:
              description: The request
            404: {description: No such request}
        """
        return self.response(200, **CP.request_json(db.session, CP.get_request(db.session, pk)))
