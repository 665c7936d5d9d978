"""Refunds API: request (Idempotency-Key honoured), read, list, retry a failed card refund.
Approval is through /api/v1/tasks/<id>/complete."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.security.current import current_username
from app.domain.errors import ValidationError
from app.extensions import db
from app.services import refunds as RF
from app.services.idempotency import fingerprint


class RefundApi(BaseApi):
    resource_name = "refunds"
    class_permission_name = "Refund"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"post": "write", "get": "read", "get_list": "read", "retry": "write"}
    allow_browser_login = True

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Request a refund of a transaction (card, BACS or cheque)
        ---
        post:
          parameters:
          - in: header
            name: Idempotency-Key
            schema: {type: string, minLength: 1, maxLength: 200}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [transaction_id, amount, reason, method]
                  properties:
                    transaction_id: {type: integer, minimum: 1}
                    amount: {$ref: '#/components/schemas/Money'}
                    reason: {type: string}
                    method: {type: string, enum: [card, bacs, cheque]}
                    payee:
                      type: object
                      properties:
                        name: {type: string}
                        sort_code: {type: string, example: "12-34-56"}
                        account_number: {type: string, example: "12345678"}
          responses:
            201:
              description: The refund, awaiting approval
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Refund'}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Invalid; nothing requested
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > 200:
                raise ValidationError("Idempotency-Key must be 1 to 200 characters.",
                                      {"Idempotency-Key": ["1 to 200 characters."]})
        data = json_body()
        result = RF.request_refund(db.session, transaction_id=data.get("transaction_id"),
                                   amount=data.get("amount"), reason=data.get("reason"),
                                   method=data.get("method"), payee=data.get("payee"),
                                   actor=current_username(), idempotency_key=key,
                                   idempotency_fingerprint=fingerprint(data))
        return self.response(201, **RF.refund_json(result.refund))

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def get_list(self):
        """The refund register (filters: status, method, date_from, date_to, amount_min,
        amount_max, requester, transaction_id)
        ---
        get:
          parameters:
          - in: query
            name: status
            schema: {type: string, enum: [awaiting_approval, approved, rejected, paid, failed]}
          - {in: query, name: method, schema: {type: string, enum: [card, bacs, cheque]}}
          - {in: query, name: date_from, schema: {type: string, format: date}}
          - {in: query, name: date_to, schema: {type: string, format: date}}
          - {in: query, name: amount_min, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: amount_max, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: requester, schema: {type: string}}
          - {in: query, name: transaction_id, schema: {type: integer, minimum: 1}}
          responses:
            200:
              description: The matching refunds (at most 500), newest first
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {$ref: '#/components/schemas/Refund'}}
            422:
              description: A filter is not valid
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        rows = RF.search(db.session, RF.parse_filters(request.args))
        return self.response(200, count=len(rows), result=[RF.refund_json(r) for r in rows])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One refund
        ---
        get:
          responses:
            200:
              description: The refund
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Refund'}
        """
        return self.response(200, **RF.refund_json(RF.get_refund(db.session, pk)))

    @expose("/<int:pk>/retry", methods=["POST"])
    @protect()
    @domain_errors
    def retry(self, pk):
        """Retry a failed card refund
        ---
        post:
          responses:
            200:
              description: The refund after the retry
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Refund'}
            409:
              description: The refund has not failed
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        refund = RF.retry_refund(db.session, pk, actor=current_username())
        return self.response(200, **RF.refund_json(refund))
