"""Income ledger API: reference validation, receipts (idempotent), transactions, journals,
transfers and the trial balance."""

from __future__ import annotations

import json

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from app.api.base import domain_errors, page_arguments
from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.money import Money, pence_to_str
from app.extensions import db
from app.models.ledger import IdempotencyKey, Transaction
from app.services.scope import fund_allowed, require_fund
from app.services import journals as J
from app.services import ledger as L
from app.services import receipts as RC
from app.services import search as S
from app.services.idempotency import check_same_request, fingerprint
from app.services.validation import validate_reference
from app.security.current import current_username, may_override_stop


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object.", {"body": ["Send a JSON object."]})
    return data


def transaction_json(session, t: Transaction, available: int | None = None) -> dict:
    """A transaction as the API gives it; ``available`` when the caller worked it out for a page
    of them (L.available_amounts), else read here."""
    if available is None:
        available = L.available_amount(session, t)
    return {"id": t.id, "receipt_number": t.receipt_number, "fund_code": t.fund_code,
            "account_reference": t.account_reference, "amount": pence_to_str(t.amount),
            "available_amount": pence_to_str(available),
            "vat_code": t.vat_code, "vat_amount": pence_to_str(t.vat_amount),
            "payment_method_code": t.payment_method_code, "narrative": t.narrative,
            "transaction_date": t.transaction_date.isoformat(),
            "external_reference": t.external_reference, "office_code": t.office_code,
            "created_by": t.created_by, "import_id": t.import_id,
            "source_transaction_id": t.source_transaction_id,
            "posting_group_id": t.posting_group_id}


def _transactions_json(transactions) -> list[dict]:
    available = L.available_amounts(db.session, transactions)
    return [transaction_json(db.session, t, available[t.id]) for t in transactions]


class _Base(BaseApi):
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]


class ReferenceValidationApi(_Base):
    resource_name = "references"
    class_permission_name = "Receipt"
    base_permissions = ["can_read"]
    method_permission_name = {"validate": "read"}

    @expose("/validate", methods=["POST"])
    @protect()
    @domain_errors
    def validate(self):
        """Validate an account reference for a fund (and optionally an amount)
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [fund_code]
                  properties:
                    fund_code: {type: string}
                    reference: {type: string, nullable: true}
                    amount: {$ref: '#/components/schemas/Money'}
                    payment_method_code: {type: string}
          responses:
            200:
              description: Whether the reference is valid, and why not
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      valid: {type: boolean}
                      errors: {type: array, items: {type: string}}
                      field_errors: {type: object}
                      warnings: {type: array, items: {type: string}}
                      on_stop: {type: boolean}
                      account_name: {type: string, nullable: true}
            404: {$ref: '#/components/responses/404'}
            422: {$ref: '#/components/responses/422'}
        """
        data = json_body()
        amount = None
        if data.get("amount") not in (None, ""):
            amount = RC.parse_amount(data.get("amount"), "amount")
        fund_code, reference = data.get("fund_code"), data.get("reference")
        if not isinstance(fund_code, str) or not isinstance(reference, (str, type(None))):
            raise ValidationError("fund_code and reference are text.",
                                  {"fund_code": ["Give a fund code."]})
        method = data.get("payment_method_code")
        if fund_code.strip():
            require_fund(fund_code.strip().upper())  # another group's accounts: 404, as if none
        res = validate_reference(db.session, fund_code, reference, amount,
                                 method if isinstance(method, str) else None,
                                 may_override_stop=may_override_stop())
        body = {"valid": res.valid, "errors": res.errors, "field_errors": res.field_errors,
                "warnings": res.warnings, "on_stop": res.on_stop,
                "account_name": res.account.name if res.account is not None else None}
        db.session.rollback()
        return self.response(200, **body)


def _receipt_body(result) -> dict:
    return {"receipt_number": result.receipt_number, "total": str(Money(result.total)),
            "accounting_date": result.accounting_date.isoformat(),
            "period_message": result.period_message,
            "transactions": [{"id": t["id"], "fund_code": t["fund_code"],
                              "account_reference": t["account_reference"],
                              "amount": pence_to_str(t["amount"]), "vat_code": t["vat_code"],
                              "vat_amount": pence_to_str(t["vat_amount"])}
                             for t in result.lines]}


_KEY_ANSWERED = (update(IdempotencyKey.__table__)
                 .where(IdempotencyKey.__table__.c.id == bindparam("key_id"))
                 .values(status_code=bindparam("answer_status"),
                         response_body=bindparam("answer_body")))


class ReceiptApi(_Base):
    resource_name = "receipts"
    class_permission_name = "Receipt"
    method_permission_name = {"post": "write", "get": "read"}

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Take a payment: one receipt of one or more lines
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
                  required: [payment_method_code, lines]
                  properties:
                    payment_method_code: {type: string}
                    transaction_date: {type: string, format: date}
                    accounting_date:
                      type: string
                      format: date
                      description: >-
                        Asks for this accounting date explicitly: in a closed period the
                        request is refused (422). Without it the transaction date decides, and a
                        receipt dated in a closed period posts on the first day of the first
                        open period (period_message says so).
                    external_reference: {type: string}
                    office_code: {type: string}
                    lines:
                      type: array
                      minItems: 1
                      items:
                        allOf:
                        - $ref: '#/components/schemas/Line'
                        - type: object
                          properties:
                            vat_code: {type: string}
                            narrative: {type: string}
          responses:
            201:
              description: The receipt (a repeat of an Idempotency-Key returns the first)
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      receipt_number: {type: string}
                      total: {$ref: '#/components/schemas/Money'}
                      accounting_date: {type: string, format: date}
                      period_message: {type: string, nullable: true}
                      transactions:
                        type: array
                        items:
                          type: object
                          properties:
                            id: {type: integer}
                            fund_code: {type: string}
                            account_reference: {type: string, nullable: true}
                            amount: {$ref: '#/components/schemas/Money'}
            409: {$ref: '#/components/responses/409'}
            422:
              description: An invalid line; nothing posted
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        session = db.session
        user = current_username()
        data = json_body()
        fp = None
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            fp = fingerprint(data)
            key = key.strip()
            if not key or len(key) > 200:
                raise ValidationError("Idempotency-Key must be 1 to 200 characters.",
                                      {"Idempotency-Key": ["1 to 200 characters."]})
            first = self._replay(session, key, user, fp)
            if first is not None:
                return first
        pending = None
        if key is not None:
            # claim the key in the receipt's own transaction: a concurrent repeat waits on the
            # unique index and then replays; a failed receipt releases the key with the rollback
            pending = IdempotencyKey(key=key, scope="receipts", username=user, status_code=0,
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
        answered = {}

        def keep_response(result):
            body = answered["body"] = _receipt_body(result)
            if pending is not None:
                # the key's response, in the receipt's own transaction (one commit)
                session.execute(_KEY_ANSWERED, {"key_id": pending.id, "answer_status": 201,
                                                "answer_body": json.dumps(body)})

        RC.take_receipt(
            session, lines=data.get("lines"), payment_method_code=data.get("payment_method_code"),
            actor=user, may_override_stop=may_override_stop(),
            office_code=data.get("office_code") if isinstance(data.get("office_code"), str) else None,
            transaction_date=data.get("transaction_date"),
            external_reference=data.get("external_reference"),
            accounting_date=data.get("accounting_date"), before_commit=keep_response)
        return self.response(201, **answered["body"])

    def _replay(self, session, key, user, fp):
        row = session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.scope == "receipts", IdempotencyKey.username == user,
            IdempotencyKey.key == key))
        if row is None:
            return None
        check_same_request(row.request_fingerprint, fp)
        if row.status_code == 0:
            raise Conflict("A request with this Idempotency-Key is still being processed.",
                           {"Idempotency-Key": ["Still being processed; try again shortly."]})
        return self.response(row.status_code, **json.loads(row.response_body))

    @expose("/<number>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, number):
        """A receipt by number
        ---
        get:
          responses:
            200:
              description: The receipt and its transactions
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      receipt_number: {type: string}
                      total: {$ref: '#/components/schemas/Money'}
                      reversed: {type: boolean}
                      transactions:
                        type: array
                        items: {$ref: '#/components/schemas/Transaction'}
        """
        view = RC.receipt_view(db.session, number)
        return self.response(200, receipt_number=view["group"].number,
                             total=str(Money(view["total"])), reversed=view["reversed"],
                             transactions=_transactions_json(view["transactions"]))


class TransactionApi(_Base):
    resource_name = "transactions"
    class_permission_name = "Transaction"
    base_permissions = ["can_read"]
    method_permission_name = {"get_list": "read", "get": "read"}

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def get_list(self):
        """Search transactions (query arguments as the search page)
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 1}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 500}}
          - {in: query, name: receipt_number, schema: {type: string}}
          - {in: query, name: account_reference, schema: {type: string}}
          - {in: query, name: reference_match, schema: {type: string, enum: [exact, contains]}}
          - {in: query, name: fund, schema: {type: string}}
          - {in: query, name: method, schema: {type: string}}
          - {in: query, name: amount, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: amount_min, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: amount_max, schema: {$ref: '#/components/schemas/Money'}}
          - {in: query, name: date_from, schema: {type: string, format: date}}
          - {in: query, name: date_to, schema: {type: string, format: date}}
          - {in: query, name: import_id, schema: {type: integer, minimum: 1}}
          - {in: query, name: narrative, schema: {type: string}}
          - {in: query, name: user, schema: {type: string}}
          - {in: query, name: office, schema: {type: string}}
          - {in: query, name: sort, schema: {type: string}}
          - {in: query, name: direction, schema: {type: string, enum: [asc, desc]}}
          responses:
            200:
              description: One page of matching transactions
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/TransactionPage'}
        """
        f = S.parse_filters(request.args)
        page, page_size = page_arguments(first=1, default_size=50, max_size=S.MAX_PAGE_SIZE)
        p = S.search(db.session, f, page, page_size)
        return self.response(200, count=p.total, count_capped=p.total_capped, page=p.page,
                             page_size=p.page_size,
                             result=_transactions_json(p.rows))

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One transaction
        ---
        get:
          responses:
            200:
              description: The transaction
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Transaction'}
        """
        t = db.session.get(Transaction, pk)
        if t is None or not fund_allowed(t.fund_code):
            raise NotFound(f"Transaction {pk} does not exist.")
        return self.response(200, **transaction_json(db.session, t))


class JournalApi(_Base):
    resource_name = "journals"
    class_permission_name = "Journal"
    method_permission_name = {"post": "write", "undo": "write"}

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Journal all or part of a received line to one or more fund/account targets
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [transaction_id, reason, targets]
                  properties:
                    transaction_id: {type: integer, minimum: 1}
                    reason: {type: string}
                    accounting_date:
                      type: string
                      format: date
                      description: >-
                        Asks for this accounting date explicitly (default: today, the posting
                        date); in a closed period the journal is refused (422).
                    targets: {type: array, minItems: 1, items: {$ref: '#/components/schemas/Line'}}
          responses:
            201:
              description: The journal
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/PostingGroup'}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        group = J.journal(db.session, transaction_id=data.get("transaction_id"),
                          targets=data.get("targets"), reason=data.get("reason"),
                          actor=current_username(), may_override_stop=may_override_stop(),
                          accounting_date=data.get("accounting_date"))
        return self.response(201, **_group_json(group))

    @expose("/<int:pk>/undo", methods=["POST"])
    @protect()
    @domain_errors
    def undo(self, pk):
        """Undo a journal once, by reversal, with a reason
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Reason'}
          responses:
            201:
              description: The reversal
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Reversal'}
            409:
              description: Already undone, or a target's money has moved on
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        data = json_body()
        rev = J.undo(db.session, group_id=pk, reason=data.get("reason"), actor=current_username())
        return self.response(201, id=rev.id, number=rev.number, reverses_id=rev.reverses_id)


class TransferApi(_Base):
    resource_name = "transfers"
    class_permission_name = "Transfer"
    method_permission_name = {"post": "write", "undo": "write"}

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def post(self):
        """Transfer: {"source_transaction_id","targets":[...]} or {"pairs":[...]}, with a reason
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [reason]
                  properties:
                    reason: {type: string}
                    source_transaction_id: {type: integer, minimum: 1}
                    targets: {type: array, items: {$ref: '#/components/schemas/Line'}}
                    pairs:
                      type: array
                      items:
                        allOf:
                        - $ref: '#/components/schemas/Line'
                        - type: object
                          required: [transaction_id]
                          properties:
                            transaction_id: {type: integer, minimum: 1}
          responses:
            201:
              description: The transfer
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/PostingGroup'}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        group = J.transfer(db.session, reason=data.get("reason"), actor=current_username(),
                           source_transaction_id=data.get("source_transaction_id"),
                           targets=data.get("targets"), pairs=data.get("pairs"),
                           may_override_stop=may_override_stop())
        return self.response(201, **_group_json(group))

    @expose("/<int:pk>/undo", methods=["POST"])
    @protect()
    @domain_errors
    def undo(self, pk):
        """Undo a transfer once, by reversal, with a reason
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/Reason'}
          responses:
            201:
              description: The reversal
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Reversal'}
            409:
              description: Already undone, or a target's money has moved on
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        data = json_body()
        rev = J.undo(db.session, group_id=pk, reason=data.get("reason"), actor=current_username())
        return self.response(201, id=rev.id, number=rev.number, reverses_id=rev.reverses_id)


def _group_json(group) -> dict:
    targets = db.session.scalars(select(Transaction).where(Transaction.posting_group_id == group.id)
                                 .order_by(Transaction.id)).all()
    from app.services.periods import moved_message

    return {"id": group.id, "number": group.number, "kind": group.kind,
            "accounting_date": group.accounting_date.isoformat() if group.accounting_date else None,
            "period_message": moved_message(group.requested_accounting_date, group.accounting_date),
            "targets": [{"id": t.id, "fund_code": t.fund_code, "account_reference": t.account_reference,
                         "amount": pence_to_str(t.amount),
                         "source_transaction_id": t.source_transaction_id} for t in targets]}


class LedgerApi(_Base):
    resource_name = "ledger"
    class_permission_name = "Ledger"
    base_permissions = ["can_read"]
    method_permission_name = {"trial_balance": "read"}

    @expose("/trial-balance", methods=["GET"])
    @protect()
    def trial_balance(self):
        """Trial balance: do debits equal credits?
        ---
        get:
          responses:
            200:
              description: The totals and every ledger account's debit and credit
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      balanced: {type: boolean}
                      total_debits: {$ref: '#/components/schemas/Money'}
                      total_credits: {$ref: '#/components/schemas/Money'}
                      accounts:
                        type: array
                        items:
                          type: object
                          properties:
                            account: {type: string}
                            fund_code: {type: string, nullable: true}
                            debit: {$ref: '#/components/schemas/Money'}
                            credit: {$ref: '#/components/schemas/Money'}
        """
        tb = L.trial_balance(db.session)
        return self.response(200, balanced=tb["balanced"],
                             total_debits=str(Money(tb["total_debits"])),
                             total_credits=str(Money(tb["total_credits"])),
                             accounts=[{"account": a["account"], "fund_code": a["fund_code"],
                                        "debit": str(Money(a["debit"])),
                                        "credit": str(Money(a["credit"]))} for a in tb["accounts"]])


APIS = (ReferenceValidationApi, ReceiptApi, TransactionApi, JournalApi, TransferApi, LedgerApi)
