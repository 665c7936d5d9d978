"""Cash-ups API (eReturns): list, till preview, create/submit, read, correct a returned one, void.
Approval is through /api/v1/tasks/<id>/complete (the approver is never the submitter)."""

from __future__ import annotations

import json

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.security.current import current_roles, current_username
from app.domain.errors import Conflict, ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.cashup import CASH_UP_STATUSES
from app.models.ledger import IdempotencyKey
from app.services import cashups as CU
from app.services.idempotency import check_same_request, fingerprint
from app.services.receipts import parse_date


class CashUpApi(BaseApi):
    resource_name = "cash-ups"
    class_permission_name = "CashUp"
    base_permissions = ["can_read", "can_write", "can_void"]
    method_permission_name = {"post": "write", "get": "read", "get_list": "read", "till": "read",
                              "resubmit": "write", "void": "void"}
    allow_browser_login = True

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Cash up your own till for an office and day, and submit it for approval
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
                schema: {$ref: '#/components/schemas/CashUpInput'}
          responses:
            201:
              description: The cash-up, submitted for approval (a repeat of an Idempotency-Key
                returns the cash-up the first request made, as it is now)
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/CashUp'}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Invalid (bad counts, cheque, bag number used that day, difference
                without a reason, nothing to cash up); nothing saved
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        session, user, data = db.session, current_username(), json_body()
        fp = fingerprint(data)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > 200:
                raise ValidationError("Idempotency-Key must be 1 to 200 characters.",
                                      {"Idempotency-Key": ["1 to 200 characters."]})
            first = self._replay(session, key, user, fp)
            if first is not None:
                return first
            # claimed in the cash-up's own transaction: a concurrent repeat waits on the unique
            # index, then replays; a refused cash-up releases the key with its rollback
            pending = IdempotencyKey(key=key, scope="cash_ups", username=user, status_code=0,
                                     response_body="{}", request_fingerprint=fp)
            session.add(pending)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                first = self._replay(session, key, user, fp)
                if first is not None:
                    return first
                raise
        cu = CU.submit_cash_up(session, actor=user, data=data)
        if key is not None:
            session.execute(update(IdempotencyKey.__table__)
                            .where(IdempotencyKey.__table__.c.id == pending.id)
                            .values(status_code=201, response_body=json.dumps({"id": cu.id})))
            session.commit()
        return self.response(201, **CU.cash_up_json(session, cu))

    def _replay(self, session, key, user, fp):
        """The cash-up a repeated Idempotency-Key made, as it is now (None: a new key)."""
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.scope == "cash_ups", IdempotencyKey.username == user,
            IdempotencyKey.key == key))
        if row is None:
            return None
        check_same_request(row.request_fingerprint, fp)
        if row.status_code == 0:
            raise Conflict("A request with this Idempotency-Key is still being processed.",
                           {"Idempotency-Key": ["Still being processed; try again shortly."]})
        cu = CU.get_cash_up(session, json.loads(row.response_body)["id"])
        return self.response(row.status_code, **CU.cash_up_json(session, cu))

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def get_list(self):
        """Cash-ups (a Cashier sees their own; managers and Auditors all)
        ---
        get:
          parameters:
          - in: query
            name: status
            schema: {type: string, enum: [submitted, returned, approved, voided]}
          - {in: query, name: office_code, schema: {type: string}}
          - {in: query, name: till_date, schema: {type: string, format: date}}
          - {in: query, name: cashier, schema: {type: string}}
          responses:
            200:
              description: The cash-ups (at most 200), newest first
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {$ref: '#/components/schemas/CashUp'}}
        """
        status = request.args.get("status") or None
        if status is not None and status not in CASH_UP_STATUSES:
            raise ValidationError("status: unknown status.",
                                  {"status": [f"One of {', '.join(CASH_UP_STATUSES)}."]})
        day = parse_date(request.args.get("till_date"), field="till_date")
        rows = CU.search(db.session, username=current_username(), roles=current_roles(),
                         status=status, office_code=request.args.get("office_code") or None,
                         till_date=day, cashier=request.args.get("cashier") or None)
        return self.response(200, count=len(rows),
                             result=[CU.cash_up_json(db.session, c, detail=False) for c in rows])

    @expose("/till", methods=["GET"])
    @protect()
    @domain_errors
    def till(self):
        """What your till holds (receipts no cash-up has taken) for an office and day
        ---
        get:
          parameters:
          - {in: query, name: office_code, schema: {type: string}}
          - {in: query, name: till_date, schema: {type: string, format: date}}
          responses:
            200:
              description: The till's receipted cash and cheques, by method, and the office's
                template rows
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      office_code: {type: string, nullable: true}
                      till_date: {type: string, format: date}
                      cash: {$ref: '#/components/schemas/Money'}
                      cheques: {$ref: '#/components/schemas/Money'}
                      total: {$ref: '#/components/schemas/Money'}
                      by_method: {type: array, items: {type: object}}
                      template_rows: {type: array, items: {type: object}}
        """
        day = parse_date(request.args.get("till_date"), field="till_date")
        t = CU.till_summary(db.session, current_username(),
                            request.args.get("office_code") or None, day or _today())
        return self.response(200, office_code=t["office_code"], till_date=t["till_date"].isoformat(),
                             cash=str(Money(t["cash"])), cheques=str(Money(t["cheques"])),
                             total=str(Money(t["total"])),
                             by_method=[{"method": m["method"], "kind": m["kind"],
                                         "count": m["count"], "amount": str(Money(m["amount"]))}
                                        for m in t["by_method"]],
                             template_rows=[{"id": r.id, "description": r.description,
                                             "fund_code": r.fund_code,
                                             "account_reference": r.account_reference}
                                            for r in t["template_rows"]])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One cash-up, with its counts, cheques, lines and receipts
        ---
        get:
          responses:
            200:
              description: The cash-up
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/CashUp'}
        """
        cu = CU.get_cash_up(db.session, pk)
        CU.check_may_read(cu, current_username(), current_roles())
        return self.response(200, **CU.cash_up_json(db.session, cu))

    @expose("/<int:pk>/resubmit", methods=["POST"])
    @protect()
    @domain_errors
    def resubmit(self, pk):
        """Correct a returned (rejected) cash-up and submit it again
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/CashUpInput'}
          responses:
            200:
              description: The cash-up, submitted again
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/CashUp'}
            409: {$ref: '#/components/responses/409'}
        """
        cu = CU.get_cash_up(db.session, pk)
        CU.check_may_read(cu, current_username(), current_roles())
        cu = CU.resubmit_cash_up(db.session, pk, actor=current_username(), data=json_body())
        return self.response(200, **CU.cash_up_json(db.session, cu))

    @expose("/<int:pk>/void", methods=["POST"])
    @protect()
    @domain_errors
    def void(self, pk):
        """Void a cash-up before approval, with a reason
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Reason'}
          responses:
            200:
              description: The voided cash-up
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/CashUp'}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        cu = CU.void_cash_up(db.session, pk, actor=current_username(), roles=current_roles(),
                             reason=data.get("reason"))
        return self.response(200, **CU.cash_up_json(db.session, cu))


def _today():
    import datetime as dt

    return dt.date.today()
