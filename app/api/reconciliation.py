"""Bank reconciliation API: bank accounts, one account's reconciliation as at a date, proposed
matches, matching and unmatching, recording expected credits, prepare and sign off (the same
role rules and four-eyes as the page: app/services/reconciliation.py)."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.api.ledger import json_body
from app.extensions import db
from app.security.current import current_roles, current_username
from app.services import reconciliation as RC


def _bank_account_json(a) -> dict:
    return {"id": a.id, "code": a.code, "name": a.name, "sort_code": a.sort_code,
            "account_number": a.account_number, "ledger_account_code": a.ledger_account_code,
            "is_default": a.is_default, "disabled": a.disabled}


class ReconciliationApi(BaseApi):
    resource_name = "reconciliation"
    class_permission_name = "Reconciliation"
    base_permissions = ["can_read", "can_write", "can_sign_off"]
    method_permission_name = {"accounts": "read", "get_reconciliation": "read",
                              "post_debit": "write",
                              "proposals": "read", "match": "write", "unmatch": "write",
                              "confirm_agreed": "write",
                              "refresh": "write", "prepare": "write", "decide": "sign_off"}
    allow_browser_login = True

    @expose("/accounts", methods=["GET"])
    @protect()
    @domain_errors
    def accounts(self):
        """The bank accounts
        ---
        get:
          responses:
            200:
              description: The enabled bank accounts, the default first
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {type: object}}
        """
        result = [_bank_account_json(a) for a in RC.accounts(db.session)]
        db.session.commit()
        return self.response(200, count=len(result), result=result)

    @expose("/accounts/<account>", methods=["GET"])
    @protect()
    @domain_errors
    def get_reconciliation(self, account):
        """One bank account's reconciliation as at a date
        ---
        get:
          parameters:
          - {in: path, name: account, required: true, schema: {type: string}}
          - {in: query, name: as_of, schema: {type: string, format: date}}
          responses:
            200:
              description: Statement closing balance, ledger Bank balance (pence), the
                difference explained, unmatched items on both sides, ageing and sign-offs
              content:
                application/json:
                  schema: {type: object}
        """
        session = db.session
        acct = RC.bank_account_for(session, account)
        as_of = RC.parse_as_of(request.args.get("as_of"))
        rec = RC.reconciliation(session, acct, as_of)
        rec["ageing"] = RC.ageing(session, as_of)
        rec["sign_offs"] = [RC.sign_off_json(s) for s in RC.sign_offs(session, acct)]
        rec["matches"] = RC.recent_matches(session, acct)
        session.commit()
        return self.response(200, **rec)

    @expose("/accounts/<account>/proposals", methods=["GET"])
    @protect()
    @domain_errors
    def proposals(self, account):
        """Proposed matches for the account's unmatched settlement lines, each with its reason
        ---
        get:
          parameters:
          - {in: path, name: account, required: true, schema: {type: string}}
          responses:
            200:
              description: The proposals
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {type: object}}
        """
        session = db.session
        acct = RC.bank_account_for(session, account)
        result = [p.as_json() for p in RC.propose(session, acct)]
        session.commit()
        return self.response(200, count=len(result), result=result)

    @expose("/accounts/<account>/refresh", methods=["POST"])
    @protect()
    @domain_errors
    def refresh(self, account):
        """Record the expected credits not yet recorded (card settlements, agent files)
        ---
        post:
          parameters:
          - {in: path, name: account, required: true, schema: {type: string}}
          responses:
            200:
              description: How many were recorded
              content:
                application/json:
                  schema: {type: object}
        """
        RC.bank_account_for(db.session, account)
        made = RC.refresh_expected(db.session)
        db.session.commit()
        return self.response(200, **made)

    @expose("/accounts/<account>/confirm-agreed", methods=["POST"])
    @protect()
    @domain_errors
    def confirm_agreed(self, account):
        """Confirm every proposal whose reference agrees (`agreed` in the proposals), each as
        its own match; those another clerk matched meanwhile are skipped and counted
        ---
        post:
          parameters:
          - {in: path, name: account, required: true, schema: {type: string}}
          responses:
            200:
              description: The matches made (posted as POST /matches does) and how many
                proposals were skipped
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      skipped: {type: integer}
                      result: {type: array, items: {type: object}}
        """
        session = db.session
        acct = RC.bank_account_for(session, account)
        done = RC.confirm_agreed(session, acct, actor=current_username())
        result = [RC.match_json(session, m) for m in done.matches]
        session.commit()
        return self.response(200, count=len(result), skipped=done.skipped, result=result)

    @expose("/matches", methods=["POST"])
    @protect()
    @domain_errors
    def match(self):
        """Match statement lines to expected credits (their amounts must add up)
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [line_ids, item_ids]
                  properties:
                    line_ids: {type: array, items: {type: integer}}
                    item_ids: {type: array, items: {type: integer}}
                    fee_adjustment: {type: string}
                    reason: {type: string, maxLength: 500}
          responses:
            201:
              description: The match, posted (Dr Bank / Dr Card fees / Cr clearing)
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        m = RC.match(db.session, actor=current_username(), line_ids=data.get("line_ids"),
                     item_ids=data.get("item_ids"), fee_adjustment=data.get("fee_adjustment"),
                     reason=data.get("reason") if isinstance(data.get("reason"), str) else None)
        return self.response(201, **RC.match_json(db.session, m))

    @expose("/lines/<int:pk>/post", methods=["POST"])
    @protect()
    @domain_errors
    def post_debit(self, pk):
        """Post a statement's debit line (bank charges) to the ledger: Dr Bank charges / Cr Bank
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [reason]
                  properties:
                    reason: {type: string, maxLength: 500}
          responses:
            201:
              description: Posted (a match of the line alone; unmatching reverses it)
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        m = RC.post_debit_line(db.session, pk, actor=current_username(), reason=reason)
        return self.response(201, **RC.match_json(db.session, m))

    @expose("/matches/<int:pk>/unmatch", methods=["POST"])
    @protect()
    @domain_errors
    def unmatch(self, pk):
        """Undo a match: its posting is reversed and both sides are unmatched
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [reason]
                  properties:
                    reason: {type: string, maxLength: 500}
          responses:
            200:
              description: The match, undone
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        m = RC.unmatch(db.session, pk, actor=current_username(), reason=reason)
        return self.response(200, **RC.match_json(db.session, m))

    @expose("/accounts/<account>/sign-offs", methods=["POST"])
    @protect()
    @domain_errors
    def prepare(self, account):
        """Submit the account's reconciliation as at a date for sign-off (no unexplained
        difference allowed)
        ---
        post:
          parameters:
          - {in: path, name: account, required: true, schema: {type: string}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [as_of]
                  properties:
                    as_of: {type: string, format: date}
          responses:
            201:
              description: Prepared, awaiting a Finance Manager's sign-off
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        acct = RC.bank_account_for(db.session, account)
        so = RC.prepare(db.session, acct, RC.parse_as_of(data.get("as_of"), required=True),
                        actor=current_username())
        return self.response(201, **RC.sign_off_json(so))

    @expose("/sign-offs/<int:pk>", methods=["POST"])
    @protect()
    @domain_errors
    def decide(self, pk):
        """Sign off or reject a prepared reconciliation (a Finance Manager who did not
        prepare it)
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [decision]
                  properties:
                    decision: {type: string, enum: [sign_off, reject]}
                    comment: {type: string, maxLength: 500}
          responses:
            200:
              description: Signed off or rejected
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
        """
        data = json_body()
        decision = data.get("decision")
        if decision not in ("sign_off", "reject"):
            from app.domain.errors import ValidationError

            raise ValidationError("decision: sign_off or reject.",
                                  {"decision": ["sign_off or reject."]})
        comment = data.get("comment") if isinstance(data.get("comment"), str) else None
        so = RC.decide(db.session, pk, actor=current_username(), roles=current_roles(),
                       approve=decision == "sign_off", comment=comment)
        return self.response(200, **RC.sign_off_json(so))



class BankAccountApi(BaseApi):
    """The council's bank accounts as reference data (Administrators add and edit them)."""

    resource_name = "bank-accounts"
    class_permission_name = "BankAccount"
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"list_accounts": "read", "create": "write", "edit": "write"}
    allow_browser_login = True

    @expose("/", methods=["GET"])
    @protect()
    @domain_errors
    def list_accounts(self):
        """Every bank account, the default first
        ---
        get:
          responses:
            200:
              description: The bank accounts, enabled or not
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {type: object}}
        """
        from sqlalchemy import select

        from app.models.reconciliation import BankAccount

        session = db.session
        RC.default_account(session)
        rows = session.scalars(select(BankAccount).order_by(BankAccount.is_default.desc(),
                                                            BankAccount.code)).all()
        result = [_bank_account_json(a) for a in rows]
        session.commit()
        return self.response(200, count=len(result), result=result)

    @expose("/", methods=["POST"])
    @protect()
    @domain_errors
    def create(self):
        """Add a bank account
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    code: {type: string, description: "1 to 20 letters, digits, - or _"}
                    name: {type: string}
                    sort_code: {type: string, example: "20-00-00"}
                    account_number: {type: string, example: "12345678"}
                    ledger_account_code: {type: string, description: the GL code of its Bank lines}
                    disabled: {type: boolean}
          responses:
            201: {description: The bank account, content: {application/json: {schema: {type: object}}}}
            422: {description: Not valid (nothing saved), content: {application/json: {schema: {type: object}}}}
        """
        session = db.session
        acct = RC.save_bank_account(session, actor=current_username(), data=json_body())
        session.commit()
        return self.response(201, id=acct.id, result=_bank_account_json(acct))

    @expose("/<int:account_id>", methods=["PUT"])
    @protect()
    @domain_errors
    def edit(self, account_id):
        """Change a bank account (its code and the default account's dimension never change)
        ---
        put:
          parameters:
          - {in: path, name: account_id, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    code: {type: string, description: "1 to 20 letters, digits, - or _"}
                    name: {type: string}
                    sort_code: {type: string, example: "20-00-00"}
                    account_number: {type: string, example: "12345678"}
                    ledger_account_code: {type: string, description: the GL code of its Bank lines}
                    disabled: {type: boolean}
          responses:
            200: {description: The bank account, content: {application/json: {schema: {type: object}}}}
            404: {description: No such bank account, content: {application/json: {schema: {type: object}}}}
            422: {description: Not valid (nothing saved), content: {application/json: {schema: {type: object}}}}
        """
        session = db.session
        acct = RC.save_bank_account(session, actor=current_username(), data=json_body(),
                                    account_id=account_id)
        session.commit()
        return self.response(200, id=acct.id, result=_bank_account_json(acct))
