"""Finance report pages: filters, a chart, the tables, CSV / XLSX downloads and a print layout.
Thin: the figures come from app/services/reports.py; downloads are the API's."""

from __future__ import annotations

from flask import request
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import select

from app.services.report_downloads import download, run
from app.domain.errors import DomainError
from app.domain.i18n import N_
from app.extensions import db
from app.formatting import tr
from app.models.base import utcnow
from app.models.reference import Office
from app.services import reports as REP

#: report name -> (view method, its permission, a line saying what it is for)
PAGES = {
    "cash-book": ("cash_book", N_("Receipts by office, user and payment method for a day, to "
                                  "compare with the tills' cash-ups.")),
    "vat": ("vat", N_("Net, VAT and gross by VAT code for a period: the figures a VAT return "
                      "needs.")),
    "income": ("income", N_("Income by fund and GL code for a period against the same period "
                            "last year.")),
    "approvals": ("approvals", N_("Refunds, write-offs and allocations decided, by approver and "
                                  "amount band.")),
    "month-end": ("month_end", N_("All four reports for one month in one download.")),
}


def chart_datasets(chart: dict) -> list[dict]:
    """The chart's datasets with their labels in the reader's language."""
    return [{"label": tr(d["label"]), "values": [int(v or 0) for v in d["values"]]}
            for d in chart.get("datasets", [])]


class ReportsView(BaseView):
    route_base = "/reports"
    class_permission_name = "Report"
    base_permissions = ["can_read", "can_cash_book", "can_vat", "can_income", "can_approvals",
                        "can_month_end"]
    method_permission_name = {"index": "read", "cash_book": "cash_book", "vat": "vat",
                              "income": "income", "approvals": "approvals",
                              "month_end": "month_end"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        sm = self.appbuilder.sm
        pages = [{"name": name, "endpoint": f"ReportsView.{method}", "title": REP.TITLES[name],
                  "about": about} for name, (method, about) in PAGES.items()
                 if sm.has_access(f"can_{method}", "Report")]
        return self.render_template("reports/index.html", pages=pages)

    def _page(self, name: str):
        args = request.args
        error = None
        reports, period = [], None
        try:
            reports, fmt, period = run(name, args)
            if fmt != "json":
                db.session.rollback()
                return download(reports, fmt, name, *period)
        except DomainError as exc:
            db.session.rollback()
            error = exc
        offices = db.session.scalars(select(Office).order_by(Office.code)).all() \
            if name == "cash-book" else []
        body = self.render_template(
            "reports/report.html", name=name, title=REP.TITLES[name], about=PAGES[name][1],
            endpoint=f"ReportsView.{PAGES[name][0]}", reports=reports, period=period,
            error=error, offices=offices, args=args, chart_datasets=chart_datasets,
            printed_at=utcnow(),
            month=period[0].strftime("%Y-%m") if period and name == "month-end" else
            args.get("month", ""))
        db.session.rollback()
        return (body, error.status) if error is not None else body

    @expose("/cash-book")
    @has_access
    def cash_book(self):
        return self._page("cash-book")

    @expose("/vat")
    @has_access
    def vat(self):
        return self._page("vat")

    @expose("/income")
    @has_access
    def income(self):
        return self._page("income")

    @expose("/approvals")
    @has_access
    def approvals(self):
        return self._page("approvals")

    @expose("/month-end")
    @has_access
    def month_end(self):
        return self._page("month-end")


def register_report_views(appbuilder) -> None:
    from flask_babel import lazy_gettext as _l

    appbuilder.add_view(ReportsView, "Finance reports", label=_l("Finance reports"),
                        icon="fa-bar-chart", category="Closing the books")
