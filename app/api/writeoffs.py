"""/api/v1/write-offs: request (POST), status (GET /<id>), register (GET /)."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from sqlalchemy import select

from app.api.base import domain_errors, page_arguments
from app.api.ledger import json_body
from app.security.current import current_username
from app.api.suspense import idempotency_key, remember, replay
from app.domain.errors import ValidationError
from app.extensions import db
from app.services import writeoffs as W
from app.services.idempotency import fingerprint


class WriteOffApi(BaseApi):
    resource_name = "write-offs"
    class_permission_name = "WriteOff"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"create": "write", "get": "read", "list_write_offs": "read"}
    openapi_spec_tag = "Write-offs"

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def create(self):
        """Request a write-off
        ---
        post:
          description: >-
            {"suspense_item_id"|"transaction_id","amount","reason"} -> 201 {"id","status",...}
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
                  required: [amount, reason]
                  properties:
                    suspense_item_id: {type: integer, minimum: 1}
                    transaction_id: {type: integer, minimum: 1}
                    amount: {$ref: '#/components/schemas/Money'}
                    reason: {type: string}
          responses:
            201:
              description: The write-off, awaiting approval
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/WriteOff'}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Invalid; nothing reserved
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        user = current_username()
        key = idempotency_key()
        data = json_body()
        fp = fingerprint(data)
        first = replay(self, "write_offs", key, user, fp)
        if first is not None:
            return first
        if not isinstance(data.get("amount"), str):
            raise ValidationError('Give the amount as a decimal string, e.g. "12.34".',
                                  {"amount": ['Give the amount as a decimal string, e.g. "12.34".']})
        wo = W.request_write_off(db.session, suspense_item_id=data.get("suspense_item_id"),
                                 transaction_id=data.get("transaction_id"),
                                 amount=data.get("amount"), reason=data.get("reason"), actor=user)
        body = W.to_dict(db.session, wo)
        remember("write_offs", key, user, 201, body, fp)
        return self.response(201, **body)

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """A write-off: status awaiting_approval | approved | rejected | posted
        ---
        get:
          responses:
            200:
              description: The write-off
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/WriteOff'}
        """
        return self.response(200, **W.to_dict(db.session, W.get(db.session, pk)))

    @expose("/", methods=["GET"])
    @expose("", methods=["GET"])
    @protect()
    @domain_errors
    def list_write_offs(self):
        """The write-off register (filters as the page: status, source, from, to, requested_by,
        fund_code, min, max; page, page_size)
        ---
        get:
          parameters:
          - in: query
            name: status
            schema: {type: string, enum: [awaiting_approval, approved, rejected, posted]}
          - {in: query, name: source, schema: {type: string, enum: [suspense, transaction]}}
          - {in: query, name: from, schema: {type: string, format: date}}
          - {in: query, name: to, schema: {type: string, format: date}}
          - {in: query, name: requested_by, schema: {type: string}}
          - {in: query, name: fund_code, schema: {type: string}}
          - {in: query, name: min, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: max, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 500}}
          responses:
            200:
              description: One page of the register
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {$ref: '#/components/schemas/WriteOff'}}
        """
        f = W.filters_from(request.args)
        page, size = page_arguments(first=0, default_size=50, max_size=500)
        rows = db.session.scalars(W.register_query(f).offset(page * size).limit(size)).all()
        count = db.session.scalar(select(db.func.count()).select_from(
            W.register_query(f).order_by(None).subquery()))
        return self.response(200, count=count, result=[W.to_dict(db.session, w) for w in rows])
