"""/api/v1/gl-exports (GL export batches: list, create, get, download, void; layouts) and
/api/v1/accounting-periods (list, one period with its close checks, request a close or a
reopening). Finance Managers run and void batches and request closes; the Head of Finance
approves closes in the tasks API; Auditors read everything."""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect
from sqlalchemy import func, select

from app.api.base import domain_errors, page_arguments
from app.api.ledger import json_body
from app.security.current import current_username
from app.domain.errors import ValidationError
from app.domain.money import Money
from app.extensions import db
from app.models.gl import GlExportBatch, GlLayout
from app.services import gl_export as G
from app.services import gl_layouts as LAY
from app.services import periods as P


def batch_json(session, batch: GlExportBatch) -> dict:
    return G.to_dict(batch, session.get(GlLayout, batch.layout_id))


class GLExportApi(BaseApi):
    resource_name = "gl-exports"
    class_permission_name = "GLExport"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"list_batches": "read", "create": "write", "get": "read",
                              "download": "read", "void": "write", "layouts": "read"}
    openapi_spec_tag = "GL exports"

    @expose("/", methods=["GET"])
    @expose("", methods=["GET"])
    @protect()
    @domain_errors
    def list_batches(self):
        """GL export batches, newest first
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 500}}
          responses:
            200:
              description: One page of batches
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count: {type: integer}
                      result: {type: array, items: {type: object}}
            400: {$ref: '#/components/responses/400'}
        """
        page, size = page_arguments(first=0, default_size=50, max_size=500)
        session = db.session
        rows = G.batches(session, limit=size, offset=page * size)
        count = session.scalar(select(func.count()).select_from(GlExportBatch))
        return self.response(200, count=count, result=[batch_json(session, b) for b in rows])

    @expose("/", methods=["POST"])
    @expose("", methods=["POST"])
    @protect()
    @domain_errors
    def create(self):
        """Run a batch: every line not yet exported up to the cut-off
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [cut_off, layout]
                  properties:
                    cut_off: {type: string, format: date}
                    layout: {type: string}
                    summarised: {type: boolean, default: true}
          responses:
            201:
              description: The batch (download its file at /<id>/download)
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
            422:
              description: Future cut-off, unknown layout, nothing to export; nothing exported
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Error'}
        """
        data = json_body()
        summarised = data.get("summarised", True)
        batch = G.create_batch(db.session, cut_off=data.get("cut_off"),
                               layout=data.get("layout"), summarised=summarised,
                               actor=current_username(), trigger="api")
        return self.response(201, **batch_json(db.session, batch))

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, pk):
        """One batch
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer, minimum: 1}}
          responses:
            200:
              description: The batch
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
        """
        return self.response(200, **batch_json(db.session, G.get_batch(db.session, pk)))

    @expose("/<int:pk>/download", methods=["GET"])
    @protect()
    @domain_errors
    def download(self, pk):
        """The batch's file: the same bytes at every download (audited)
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer, minimum: 1}}
          responses:
            200:
              description: The file
              content:
                text/csv:
                  schema: {type: string}
            404: {$ref: '#/components/responses/404'}
        """
        batch = G.download(db.session, pk, actor=current_username())
        return G.file_response(batch)

    @expose("/<int:pk>/void", methods=["POST"])
    @protect()
    @domain_errors
    def void(self, pk):
        """Void a batch (a reason is required): its lines go into the next batch
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer, minimum: 1}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [reason]
                  properties:
                    reason: {type: string}
          responses:
            200:
              description: The void batch
              content:
                application/json:
                  schema: {type: object}
            404: {$ref: '#/components/responses/404'}
            409: {$ref: '#/components/responses/409'}
            422: {$ref: '#/components/responses/422'}
        """
        data = json_body()
        batch = G.void_batch(db.session, pk, reason=data.get("reason"), actor=current_username())
        return self.response(200, **batch_json(db.session, batch))

    @expose("/layouts", methods=["GET"])
    @protect()
    @domain_errors
    def layouts(self):
        """The layouts a batch may use (newest version of each)
        ---
        get:
          responses:
            200:
              description: Layouts
              content:
                application/json:
                  schema: {type: object}
        """
        rows = LAY.latest(db.session)
        db.session.commit()
        return self.response(200, result=[
            {"name": r.name, "version": r.version, "title": r.title,
             "definition": LAY.definition_of(r)} for r in rows])


class AccountingPeriodApi(BaseApi):
    resource_name = "accounting-periods"
    class_permission_name = "AccountingPeriod"
    allow_browser_login = True
    base_permissions = ["can_read", "can_write"]
    method_permission_name = {"list_periods": "read", "get": "read", "close": "write",
                              "reopen": "write"}
    openapi_spec_tag = "Accounting periods"

    @expose("/", methods=["GET"])
    @expose("", methods=["GET"])
    @protect()
    @domain_errors
    def list_periods(self):
        """The last 13 months and every month with a state, newest first
        ---
        get:
          responses:
            200:
              description: Periods
              content:
                application/json:
                  schema: {type: object}
        """
        return self.response(200, result=[P.to_dict(p) for p in P.periods(db.session)])

    @expose("/<string:period>", methods=["GET"])
    @protect()
    @domain_errors
    def get(self, period):
        """One period (YYYY-MM) with what its close page lists: suspense, unexported lines,
        unreconciled items
        ---
        get:
          parameters:
          - {in: path, name: period, required: true, schema: {type: string, pattern: '^[0-9]{4}-[0-9]{2}$'}}
          responses:
            200:
              description: The period
              content:
                application/json:
                  schema: {type: object}
            422: {$ref: '#/components/responses/422'}
        """
        session = db.session
        info = P.get_period(session, period)
        checks = P.close_checks(session, period)
        for check in checks.values():
            check["total"] = str(Money(check["total"]))
            for item in check["items"]:
                if "amount" in item:
                    item["amount"] = str(Money(item["amount"]))
        return self.response(200, **P.to_dict(info), checks=checks)

    def _request(self, period, action):
        data = request.get_json(silent=True)
        if data is None and request.content_length:
            data = json_body()
        data = data if isinstance(data, dict) else {}
        req = P.request_change(db.session, period, action, actor=current_username(),
                               reason=data.get("reason"))
        return self.response(201, **P.request_dict(req))

    @expose("/<string:period>/close", methods=["POST"])
    @protect()
    @domain_errors
    def close(self, period):
        """Request the period's close (the Head of Finance approves it in the task list)
        ---
        post:
          parameters:
          - {in: path, name: period, required: true, schema: {type: string}}
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    reason: {type: string}
          responses:
            201:
              description: The request, waiting for approval
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
            422: {$ref: '#/components/responses/422'}
        """
        return self._request(period, "close")

    @expose("/<string:period>/reopen", methods=["POST"])
    @protect()
    @domain_errors
    def reopen(self, period):
        """Request a closed period's reopening (reason required; Head of Finance approves)
        ---
        post:
          parameters:
          - {in: path, name: period, required: true, schema: {type: string}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [reason]
                  properties:
                    reason: {type: string}
          responses:
            201:
              description: The request, waiting for approval
              content:
                application/json:
                  schema: {type: object}
            409: {$ref: '#/components/responses/409'}
            422: {$ref: '#/components/responses/422'}
        """
        return self._request(period, "reopen")


__all__ = ["AccountingPeriodApi", "GLExportApi", "ValidationError"]
