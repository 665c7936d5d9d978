"""/api/v1/suspense/<id>/allocations (allocate; list), /suggestions, /notes, /report."""

from __future__ import annotations

import json

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.security.current import current_username, may_override_stop
from app.domain.errors import ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.ledger import IdempotencyKey
from app.services import suggestions as SG
from app.services import suspense as S
from app.services.idempotency import check_same_request, fingerprint


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise ValidationError("Idempotency-Key must be 1 to 200 characters.",
                              {"Idempotency-Key": ["1 to 200 characters."]})
    return key


def replay(api: BaseApi, scope: str, key: str | None, user: str, fp: str):
    """The first response to this key, or None; 422 if the key came with another body."""
    if key is None:
        return None
    row = db.session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.scope == scope, IdempotencyKey.username == user, IdempotencyKey.key == key))
    if row is None:
        return None
    check_same_request(row.request_fingerprint, fp)
    return api.response(row.status_code, **json.loads(row.response_body))


def remember(scope: str, key: str | None, user: str, status: int, body: dict, fp: str) -> None:
    if key is None:
        return
    try:
        db.session.add(IdempotencyKey(key=key, scope=scope, username=user, status_code=status,
                                      response_body=json.dumps(body), request_fingerprint=fp))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def allocation_json(a) -> dict:
    return S.AllocationResult(a, S.get_item(db.session, a.suspense_item_id)).to_dict()


class SuspenseAllocationApi(BaseApi):
    resource_name = "suspense"
    class_permission_name = "SuspenseAllocation"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"allocate": "write", "allocations": "read", "suggestions": "read",
                              "add_note": "write", "report": "read", "get_allocation": "read"}
    openapi_spec_tag = "Suspense"

    @expose("/<int:pk>/allocations", methods=["POST"])
    @protect()
    @domain_errors
    def allocate(self, pk):
        """Allocate a suspense item to fund/account lines
        ---
        post:
          description: >-
            {"lines":[{"fund_code","account_reference","amount"}],"note",
            "expected_remaining"?} -> 201 {"status":"posted"|"awaiting_approval", ...};
            422 invalid or over remaining; 409 when expected_remaining (what the client saw)
            no longer matches because someone else changed the item.
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
                  required: [lines]
                  properties:
                    lines: {type: array, minItems: 1, items: {$ref: '#/components/schemas/Line'}}
                    note: {type: string}
                    expected_remaining: {$ref: '#/components/schemas/Money'}
          responses:
            201:
              description: The allocation, posted or awaiting approval
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Allocation'}
            409:
              description: The item changed meanwhile (expected_remaining differs)
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
            422:
              description: Invalid; nothing posted
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        user = current_username()
        key = idempotency_key()
        data = json_body()
        fp = fingerprint(data)
        first = replay(self, "suspense_allocations", key, user, fp)
        if first is not None:
            return first
        expected = data.get("expected_remaining")
        if expected is not None and not isinstance(expected, str):
            raise ValidationError('Give expected_remaining as a decimal string, e.g. "12.34".',
                                  {"expected_remaining": ["A decimal string."]})
        res = S.allocate(db.session, pk, data.get("lines"), actor=user, note=data.get("note"),
                         may_override_stop=may_override_stop(), expected_remaining=expected)
        body = res.to_dict()
        remember("suspense_allocations", key, user, 201, body, fp)
        return self.response(201, **body)

    @expose("/<int:pk>/allocations", methods=["GET"])
    @protect()
    @domain_errors
    def allocations(self, pk):
        """Allocations of a suspense item, newest first
        ---
        get:
          responses:
            200:
              description: The item's allocations
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      result: {type: array, items: {$ref: '#/components/schemas/Allocation'}}
        """
        S.get_item(db.session, pk)
        return self.response(200, result=[allocation_json(a)
                                          for a in S.allocations_of(db.session, pk)])

    @expose("/allocations/<int:allocation_id>", methods=["GET"])
    @protect()
    @domain_errors
    def get_allocation(self, allocation_id):
        """One allocation with its status
        ---
        get:
          responses:
            200:
              description: The allocation
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Allocation'}
        """
        return self.response(200, **allocation_json(S.get_allocation(db.session, allocation_id)))

    @expose("/<int:pk>/suggestions", methods=["GET"])
    @protect()
    @domain_errors
    def suggestions(self, pk):
        """Suggested fund/accounts for a suspense item, with the reason for each
        ---
        get:
          responses:
            200:
              description: The remaining amount and the suggestions, best first
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      remaining_amount: {$ref: '#/components/schemas/Money'}
                      result: {type: array, items: {type: object}}
        """
        item = S.get_item(db.session, pk)
        return self.response(200, remaining_amount=str(Money(item.remaining_amount)),
                             result=[s.to_dict() for s in SG.suggest(db.session, item)])

    @expose("/<int:pk>/notes", methods=["POST"])
    @protect()
    @domain_errors
    def add_note(self, pk):
        """Add a note {"text"} to a suspense item
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [text]
                  properties:
                    text: {type: string}
          responses:
            201:
              description: The note
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id: {type: integer}
                      text: {type: string}
                      author: {type: string}
                      created_at: {type: string}
        """
        data = json_body()
        note = S.add_note(db.session, pk, data.get("text"), actor=current_username())
        return self.response(201, id=note.id, text=note.text, author=note.author,
                             created_at=note.created_at.isoformat())

    @expose("/report", methods=["GET"])
    @protect()
    @domain_errors
    def report(self):
        """Suspense by age band and the reconciliation of the SUSPENSE control account
        ---
        get:
          responses:
            200:
              description: Age bands and the reconciliation
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      bands:
                        type: array
                        items:
                          type: object
                          properties:
                            band: {type: string}
                            count: {type: integer}
                            value: {$ref: '#/components/schemas/Money'}
                      reconciliation:
                        type: object
                        nullable: true
                        description: null for a user of fund groups (the control account
                          holds every fund's suspense; its reconciliation is central work)
                        properties:
                          ledger_balance: {$ref: '#/components/schemas/Money'}
                          open_remaining: {$ref: '#/components/schemas/Money'}
                          reserved: {$ref: '#/components/schemas/Money'}
                          items_total: {$ref: '#/components/schemas/Money'}
                          difference: {$ref: '#/components/schemas/Money'}
                          agrees: {type: boolean}
                          items: {type: integer}
        """
        bands = [{**b, "value": str(Money(b["value"]))} for b in S.age_report(db.session)]
        rec = S.reconciliation(db.session)
        if rec is not None:
            rec = {k: (str(Money(v)) if k in ("ledger_balance", "open_remaining", "reserved",
                                              "items_total", "difference") else v)
                   for k, v in rec.items()}
        return self.response(200, bands=bands, reconciliation=rec)
