"""Finance reports API: GET /api/v1/reports/<name>?from=&to=&format=json|csv|xlsx.

Reports: cash-book (also ``office``), vat, income, approvals, month-end (``month=YYYY-MM``;
``format=xlsx`` a workbook with a sheet each, ``csv`` or ``zip`` a zip of CSVs). A date that does
not parse or an unknown format is 400, ``to`` before ``from`` or too long a period 422, an unknown
report 404. One permission per report on the resource "Report" (app/security/roles.py).
"""

from __future__ import annotations

from flask import request
from flask_appbuilder.api import BaseApi, expose
from flask_appbuilder.security.decorators import protect

from app.api.base import domain_errors
from app.domain.errors import NotFound
from app.extensions import db
from app.services import reports as REP
from app.services.report_downloads import XLSX, download, run

_DOC = """{title}
        ---
        get:
          parameters:
          - {{in: query, name: from, schema: {{type: string, format: date}}, description: first day}}
          - {{in: query, name: to, schema: {{type: string, format: date}}, description: last day}}
          - {{in: query, name: format, schema: {{type: string, enum: [json, csv, xlsx{zip}]}}}}{extra}
          responses:
            200:
              description: The report
              content:
                application/json:
                  schema: {{$ref: '#/components/schemas/Report'}}
                text/csv: {{schema: {{type: string}}}}
                {xlsx}: {{schema: {{type: string, format: binary}}}}
                application/zip: {{schema: {{type: string, format: binary}}}}
"""


def _doc(title: str, zip_: bool = False, extra: str = "") -> str:
    return _DOC.format(title=title, zip=", zip" if zip_ else "", extra=extra, xlsx=XLSX)


class ReportsApi(BaseApi):
    resource_name = "reports"
    class_permission_name = "Report"
    allow_browser_login = True
    base_permissions = ["can_read", *(p for p in ("can_cash_book", "can_vat", "can_income",
                                                  "can_approvals", "can_month_end"))]
    method_permission_name = {"cash_book": "cash_book", "vat": "vat", "income": "income",
                              "approvals": "approvals", "month_end": "month_end",
                              "unknown": "read"}

    def _answer(self, name: str):
        reports, fmt, (date_from, date_to) = run(name, request.args)
        if fmt == "json":
            if name == "month-end":
                body = {"report": "month-end", "from": date_from.isoformat(),
                        "to": date_to.isoformat(),
                        "reports": {r.name: REP.to_json(r) for r in reports}}
            else:
                body = REP.to_json(reports[0])
            db.session.rollback()
            return self.response(200, **body)
        db.session.rollback()
        return download(reports, fmt, name, date_from, date_to)

    @expose("/cash-book", methods=["GET"])
    @protect()
    @domain_errors
    def cash_book(self):
        return self._answer("cash-book")

    @expose("/vat", methods=["GET"])
    @protect()
    @domain_errors
    def vat(self):
        return self._answer("vat")

    @expose("/income", methods=["GET"])
    @protect()
    @domain_errors
    def income(self):
        return self._answer("income")

    @expose("/approvals", methods=["GET"])
    @protect()
    @domain_errors
    def approvals(self):
        return self._answer("approvals")

    @expose("/month-end", methods=["GET"])
    @protect()
    @domain_errors
    def month_end(self):
        return self._answer("month-end")

    @expose("/<name>", methods=["GET"])
    @protect()
    @domain_errors
    def unknown(self, name):
        """A report that does not exist
        ---
        get:
          parameters:
          - {in: path, name: name, required: true, schema: {type: string}}
          responses:
            404: {$ref: '#/components/responses/404'}
        """
        raise NotFound(f"There is no report {str(name)[:40]!r}; reports: "
                       f"{', '.join(REP.REPORTS)}.")


ReportsApi.cash_book.__doc__ = _doc("Daily cash book: receipts by day, office, user and method", extra="""
          - {in: query, name: office, schema: {type: string}, description: one office's code}""")
ReportsApi.vat.__doc__ = _doc("VAT report: net, VAT and gross by VAT code")
ReportsApi.income.__doc__ = _doc("Income by fund and GL code against the same period last year")
ReportsApi.approvals.__doc__ = _doc("Approvals: refunds, write-offs and allocations by approver "
                                    "and amount band")
ReportsApi.month_end.__doc__ = _doc("Month-end pack: all four reports for one month", True, """
          - {in: query, name: month, schema: {type: string}, description: the month (YYYY-MM)}""")

APIS = (ReportsApi,)
