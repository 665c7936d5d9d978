"""A report asked for by a page or the API: its arguments read and checked, the report(s)
built, and the download (CSV, XLSX, or a zip of CSVs) made — shared by both layers."""

from __future__ import annotations

from flask import Response
from sqlalchemy import select

from app.domain.errors import ValidationError
from app.domain.i18n import Fixed
from app.extensions import db
from app.models.reference import Office
from app.services import reports as REP

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def translate(value) -> str:
    """Our fixed labels in the reader's language (data unchanged)."""
    from app.formatting import tr

    return tr(value) if isinstance(value, Fixed) else str(value)


def office_filter(raw) -> str | None:
    """The cash book's ``office`` argument: an existing office code, or None."""
    if raw in (None, ""):
        return None
    code = raw.strip().upper() if isinstance(raw, str) else ""
    if not code or len(code) > 10 or db.session.scalar(
            select(Office.id).where(Office.code == code)) is None:
        raise ValidationError(f"office: unknown office {str(raw)[:20]!r}.",
                              {"office": ["Unknown office."]})
    return code


def download(reports: list[REP.Report], fmt: str, name: str, date_from, date_to) -> Response:
    """The report(s) as CSV (a zip of CSVs for several), XLSX or zip, as an attachment."""
    if fmt == "xlsx":
        body, mimetype, ext = REP.to_xlsx(reports, translate), XLSX, "xlsx"
    elif fmt == "zip" or (fmt == "csv" and len(reports) > 1):
        body, mimetype, ext = REP.to_zip(reports, translate), "application/zip", "zip"
    else:
        body = "\ufeff" + REP.to_csv(reports[0], translate)
        mimetype, ext = "text/csv", "csv"
    resp = Response(body, mimetype=mimetype)
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="{REP.filename(name, date_from, date_to, ext)}"')
    resp.headers["Cache-Control"] = "no-store"
    return resp


def run(name: str, args) -> tuple[list[REP.Report], str, tuple]:
    """Parse the arguments and build the report(s): (reports, format, (from, to))."""
    date_from, date_to = REP.parse_period(name, args)
    fmt = REP.parse_format(args.get("format"))
    if fmt == "zip" and name != "month-end":
        raise REP.BadReportArgument("format: zip is for the month-end pack; use json, csv or xlsx.",
                                    {"format": ["Use json, csv or xlsx."]})
    if name == "month-end":
        reports = REP.month_end(db.session, date_from, date_to)
    else:
        office = office_filter(args.get("office")) if name == "cash-book" else None
        reports = [REP.build(db.session, name, date_from, date_to, office_code=office)]
    return reports, fmt, (date_from, date_to)
