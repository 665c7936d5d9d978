"""Finance reports: daily cash book, VAT, income by fund and GL code against last year, approvals,
and the month-end pack of all four. Grouped SQL aggregates in integer pence; exports as CSV and
XLSX (openpyxl) from one description of each report's tables.

Which date a figure counts on (the accounting date, as for accounting periods):
- money received (the income transactions of receipts and imports: those paid by a method that
  is not a bookkeeping one — journal, transfer, refund, write-off) counts on its transaction
  date;
- every correction — reversals, journals, transfers, allocations from suspense, refunds,
  write-offs — counts on the day it was posted (its posting group's ``created_at``, as a
  Europe/London date).

Figures:
- cash book: money received per day, office, user (who took it) and payment method, less the
  reversals posted that day of money received (attributed to the office, user and method of the
  receipt they reverse, so that a till's cash-up for office + user + method + day compares with
  one row);
- VAT: per VAT code, gross and VAT received, less reversals and refunds (a refund's VAT is its
  share of the transaction's VAT, rounded half up; a failed card refund's reversal adds it back);
  net = gross − VAT. Journals and transfers move income between funds without VAT (their
  targets carry no VAT code), so VAT stays with the receipt;
- income: per fund, money received plus every correction's credits to the FUND and WRITE_OFFS
  ledger accounts (a reversal, refund or journal out is negative), for the period and the same
  dates a year earlier.
- approvals: each decision (approve or reject) taken on a refund, write-off or suspense
  allocation task in the period, by approver, action and amount band.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.domain.errors import DomainError, NotFound, ValidationError
from app.domain.i18n import N_, Fixed
from app.domain.money import pence_to_str
from app.models.ledger import GROUP_KINDS, LedgerLine, PostingGroup, Transaction
from app.models.reference import Fund, Office, PaymentMethod, VatCode
from app.models.workflow import WorkflowInstance, WorkflowTask

#: posting-group kinds that bring money in (counted on their transactions' dates)
MONEY_IN = ("receipt", "import")
#: posting-group kinds that correct or move income (counted on the day they were posted)
CORRECTIONS = tuple(k for k in GROUP_KINDS if k not in MONEY_IN)
#: ledger accounts whose credits are a fund's income
INCOME_ACCOUNTS = ("FUND", "WRITE_OFFS")
#: the approvals report's actions (workflow subject types) and their labels
APPROVAL_ACTIONS = {"refund": N_("Refund"), "write_off": N_("Write-off"),
                    "suspense_allocation": N_("Suspense allocation")}
#: amount bands (pence, inclusive) for the approvals report; the last has no top
AMOUNT_BANDS = ((0, 100_00), (100_01, 1_000_00), (1_000_01, 5_000_00), (5_000_01, 25_000_00),
                (25_000_01, None))
#: the most days a report may cover
MAX_DAYS = {"cash-book": 31, "vat": 366, "income": 366, "approvals": 366}
REPORTS = ("cash-book", "vat", "income", "approvals", "month-end")
TITLES = {"cash-book": N_("Daily cash book"), "vat": N_("VAT report"),
          "income": N_("Income by fund and GL code"), "approvals": N_("Approvals report"),
          "month-end": N_("Month-end pack")}
FORMATS = ("json", "csv", "xlsx")
#: the years a report's dates may fall in
FIRST_YEAR, LAST_YEAR = 1900, 2999
#: at most this many decisions are listed one by one in the approvals report
MAX_DETAIL_ROWS = 10_000


class BadReportArgument(DomainError):
    """A query argument that does not parse (400)."""

    status = 400


# --------------------------------------------------------------------------- periods
def _timezone() -> ZoneInfo:
    name = "Europe/London"
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            name = current_app.config.get("BABEL_DEFAULT_TIMEZONE") or name
    except ImportError:  # pragma: no cover
        pass
    return ZoneInfo(name)


def utc_bounds(date_from: dt.date, date_to: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of the local days date_from..date_to."""
    tz = _timezone()
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=tz).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min,
                              tzinfo=tz).astimezone(dt.timezone.utc)
    return start, end


def local_date(value: dt.datetime) -> dt.date:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(_timezone()).date()


def _parse_day(raw, name: str) -> dt.date:
    text = raw.strip() if isinstance(raw, str) else ""
    if len(text) == 10 and text.isascii() and text[4] == "-" and text[7] == "-":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise BadReportArgument(f"{name}: not a date; give it as YYYY-MM-DD.",
                            {name: ["Give a date as YYYY-MM-DD."]})


def parse_month(raw) -> tuple[dt.date, dt.date]:
    """"2026-11" -> (1 Nov 2026, 30 Nov 2026); BadReportArgument otherwise."""
    text = raw.strip() if isinstance(raw, str) else ""
    if len(text) == 7 and text.isascii() and text[4] == "-" and text[:4].isdigit() \
            and text[5:].isdigit() and 1 <= int(text[5:]) <= 12:
        year, month = int(text[:4]), int(text[5:])
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValidationError(f"month: give a month from {FIRST_YEAR} to {LAST_YEAR}.",
                                  {"month": [f"A month from {FIRST_YEAR} to {LAST_YEAR}."]})
        return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])
    raise BadReportArgument("month: give the month as YYYY-MM.",
                            {"month": ["Give the month as YYYY-MM."]})


def parse_period(name: str, args, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The report's (from, to) from query arguments ``from``, ``to`` (and ``month`` for the
    month-end pack). The cash book defaults to today and ``to`` to ``from``; the others to the
    current month so far; the pack to the last full month. Raises BadReportArgument (400:
    not a date) or ValidationError (422: to before from, too many days)."""
    today = today or dt.datetime.now(_timezone()).date()
    if name not in REPORTS:
        raise NotFound(f"There is no report {str(name)[:40]!r}; reports: {', '.join(REPORTS)}.")
    raw_from, raw_to = args.get("from"), args.get("to")
    if name == "month-end":
        month = args.get("month")
        if month not in (None, ""):
            return parse_month(month)
        if raw_from in (None, ""):
            first = today.replace(day=1) - dt.timedelta(days=1)
            return parse_month(first.strftime("%Y-%m"))
        start = _parse_day(raw_from, "from")
        first, last = parse_month(start.strftime("%Y-%m"))
        if start != first or (raw_to not in (None, "") and _parse_day(raw_to, "to") != last):
            raise ValidationError("The month-end pack covers one whole month: give month=YYYY-MM.",
                                  {"month": ["Give the month as YYYY-MM."]})
        return first, last
    if raw_from in (None, ""):
        date_from = today if name == "cash-book" else today.replace(day=1)
    else:
        date_from = _parse_day(raw_from, "from")
    if raw_to in (None, ""):
        date_to = date_from if name == "cash-book" else max(date_from, today)
    else:
        date_to = _parse_day(raw_to, "to")
    for label, day in (("from", date_from), ("to", date_to)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ValidationError(f"{label}: give a date from {FIRST_YEAR} to {LAST_YEAR}.",
                                  {label: [f"A date from {FIRST_YEAR} to {LAST_YEAR}."]})
    if date_to < date_from:
        raise ValidationError(f"to ({date_to.isoformat()}) is before from ({date_from.isoformat()}).",
                              {"to": ["The end date is before the start date."]})
    days = (date_to - date_from).days + 1
    if days > MAX_DAYS[name]:
        raise ValidationError(f"The {name} report covers at most {MAX_DAYS[name]} days; "
                              f"{days} were asked for.",
                              {"to": [f"At most {MAX_DAYS[name]} days."]})
    return date_from, date_to


def parse_format(raw) -> str:
    fmt = (raw or "json").strip().lower() if isinstance(raw, str) else "json"
    if fmt not in FORMATS + ("zip",):
        raise BadReportArgument(f"format: unknown format {str(raw)[:20]!r}; use json, csv or xlsx.",
                                {"format": ["Use json, csv or xlsx."]})
    return fmt


# --------------------------------------------------------------------------- report shape
@dataclass
class Column:
    key: str
    label: Fixed
    kind: str = "text"  # text | money | count | percent | date | datetime | rate


@dataclass
class Table:
    key: str
    title: Fixed
    columns: list[Column]
    rows: list[dict]
    totals: dict | None = None


@dataclass
class Report:
    name: str
    title: Fixed
    date_from: dt.date
    date_to: dt.date
    tables: list[Table]
    chart: dict = field(default_factory=dict)
    notes: list[Fixed] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def money_in(session: Session) -> tuple:
    """WHERE clauses: income transactions that are money received (a receipt's or an import's),
    not bookkeeping (journal and transfer targets, allocations from suspense), which are paid by
    a method of a bookkeeping kind (receipts and imports cannot use those). By the method rather
    than through the posting group, so that a period's rows are read from one table."""
    from app.services.receipts import NON_RECEIPT_KINDS

    codes = list(session.scalars(select(PaymentMethod.code).where(
        PaymentMethod.kind.in_(NON_RECEIPT_KINDS))))
    return ((Transaction.payment_method_code.not_in(codes),) if codes else ()) + \
        _scoped(Transaction.fund_code)


def _scoped(column) -> tuple:
    """The user's fund groups as WHERE clauses (none for all funds): app/services/scope.py."""
    from app.services.scope import condition

    cond = condition(column)
    return () if cond is None else (cond,)


def _names(session: Session, model, codes) -> dict[str, str]:
    codes = {c for c in codes if c}
    if not codes:
        return {}
    return dict(session.execute(select(model.code, model.name).where(model.code.in_(codes))).all())


def _sum(rows, key):
    return sum(r[key] or 0 for r in rows)


# --------------------------------------------------------------------------- cash book
def cash_book(session: Session, date_from: dt.date, date_to: dt.date | None = None, *,
              office_code: str | None = None) -> Report:
    """Money received per day, office, user and payment method, less the reversals posted that
    day; totals by method and by office. Compare a till's cash-up with one row."""
    date_to = date_to or date_from
    t = Transaction
    stmt = (select(t.transaction_date, t.office_code, t.created_by, t.payment_method_code,
                   func.count(), func.sum(t.amount))
            .where(t.transaction_date >= date_from, t.transaction_date <= date_to,
                   *money_in(session))
            .group_by(t.transaction_date, t.office_code, t.created_by, t.payment_method_code))
    if office_code:
        stmt = stmt.where(t.office_code == office_code)
    keyed: dict[tuple, dict] = {}

    def row(day, office, user, method):
        k = (day, office or "", user or "", method or "")
        if k not in keyed:
            keyed[k] = {"date": day, "office_code": office or "", "user": user or "",
                        "payment_method_code": method or "", "receipts": 0, "received": 0,
                        "reversals": 0, "reversed": 0}
        return keyed[k]

    for day, office, user, method, n, total in session.execute(stmt):
        r = row(day, office, user, method)
        r["receipts"] += int(n)
        r["received"] += int(total or 0)
    # reversals of money received, posted in the period: one row per reversal and till
    start, end = utc_bounds(date_from, date_to)
    rev, orig = aliased(PostingGroup), aliased(PostingGroup)
    rstmt = (select(rev.id, rev.created_at, t.office_code, t.created_by, t.payment_method_code,
                    func.sum(t.amount))
             .select_from(rev)
             .join(orig, orig.id == rev.reverses_id)
             .join(t, t.posting_group_id == orig.id)
             .where(rev.kind == "reversal", rev.created_at >= start, rev.created_at < end,
                    orig.kind.in_(MONEY_IN), *_scoped(t.fund_code))
             .group_by(rev.id, rev.created_at, t.office_code, t.created_by, t.payment_method_code))
    if office_code:
        rstmt = rstmt.where(t.office_code == office_code)
    seen_reversals: dict[tuple, set] = {}
    for rid, at, office, user, method, total in session.execute(rstmt):
        r = row(local_date(at), office, user, method)
        r["reversed"] += int(total or 0)
        ids = seen_reversals.setdefault((r["date"], r["office_code"], r["user"],
                                         r["payment_method_code"]), set())
        if rid not in ids:
            ids.add(rid)
            r["reversals"] += 1
    rows = sorted(keyed.values(), key=lambda r: (r["date"], r["office_code"], r["user"],
                                                  r["payment_method_code"]))
    methods = _names(session, PaymentMethod, {r["payment_method_code"] for r in rows})
    offices = _names(session, Office, {r["office_code"] for r in rows})
    for r in rows:
        r["net"] = r["received"] - r["reversed"]
        r["payment_method"] = methods.get(r["payment_method_code"], "")
        r["office"] = offices.get(r["office_code"], "")

    def by(keys, label_key, names):
        out: dict[str, dict] = {}
        for r in rows:
            k = r[keys]
            o = out.setdefault(k, {keys: k, label_key: names.get(k, ""), "receipts": 0,
                                   "received": 0, "reversals": 0, "reversed": 0, "net": 0})
            for f in ("receipts", "received", "reversals", "reversed", "net"):
                o[f] += r[f]
        return sorted(out.values(), key=lambda o: o[keys])

    figures = [Column("receipts", N_("Lines received"), "count"),
               Column("received", N_("Received"), "money"),
               Column("reversals", N_("Reversals"), "count"),
               Column("reversed", N_("Reversed"), "money"),
               Column("net", N_("Net"), "money")]

    def totals(rs):
        return {f.key: _sum(rs, f.key) for f in figures}

    by_method = by("payment_method_code", "payment_method", methods)
    by_office = by("office_code", "office", offices)
    detail_cols = [Column("date", N_("Date"), "date"), Column("office_code", N_("Office")),
                   Column("user", N_("User")), Column("payment_method_code", N_("Method")),
                   Column("payment_method", N_("Method name"))] + figures
    tables = [
        Table("cash_book", N_("By office, user and payment method"), detail_cols, rows,
              totals(rows)),
        Table("by_method", N_("By payment method"),
              [Column("payment_method_code", N_("Method")),
               Column("payment_method", N_("Method name"))] + figures, by_method,
              totals(by_method)),
        Table("by_office", N_("By office"),
              [Column("office_code", N_("Office")), Column("office", N_("Office name"))]
              + figures, by_office, totals(by_office)),
    ]
    chart = {"type": "bar", "labels": [m["payment_method_code"] for m in by_method],
             "datasets": [{"label": N_("Net"), "values": [m["net"] for m in by_method]}]}
    return Report("cash-book", TITLES["cash-book"], date_from, date_to, tables, chart, notes=[
        N_("Money received counts on its transaction date; a reversal counts on the day it was "
           "posted, against the office, user and method of the receipt it reverses.")],
        extra={"office_code": office_code})


# --------------------------------------------------------------------------- VAT
def _share(vat: int, amount: int, part: int) -> int:
    """part's share of vat (vat × part / amount), rounded half away from zero."""
    if not amount:
        return 0
    sign = -1 if part < 0 else 1
    return sign * ((2 * vat * abs(part) + amount) // (2 * amount))


def vat_report(session: Session, date_from: dt.date, date_to: dt.date) -> Report:
    t, g, ln = Transaction, PostingGroup, LedgerLine
    codes: dict[str, dict] = {}

    def row(code):
        code = code or ""
        if code not in codes:
            codes[code] = {"vat_code": code, "lines": 0, "received_gross": 0, "received_vat": 0,
                           "reversed_gross": 0, "reversed_vat": 0, "refunded_gross": 0,
                           "refunded_vat": 0}
        return codes[code]

    for code, n, gross, vat in session.execute(
            select(t.vat_code, func.count(), func.sum(t.amount), func.sum(t.vat_amount))
            .where(t.transaction_date >= date_from, t.transaction_date <= date_to,
                   *money_in(session))
            .group_by(t.vat_code)):
        r = row(code)
        r["lines"] += int(n)
        r["received_gross"] += int(gross or 0)
        r["received_vat"] += int(vat or 0)
    start, end = utc_bounds(date_from, date_to)
    rev, orig = aliased(PostingGroup), aliased(PostingGroup)
    for code, gross, vat in session.execute(
            select(t.vat_code, func.sum(t.amount), func.sum(t.vat_amount))
            .select_from(rev)
            .join(orig, orig.id == rev.reverses_id)
            .join(t, t.posting_group_id == orig.id)
            .where(rev.kind == "reversal", rev.created_at >= start, rev.created_at < end,
                   orig.kind.in_(MONEY_IN), *_scoped(t.fund_code))
            .group_by(t.vat_code)):
        r = row(code)
        r["reversed_gross"] += int(gross or 0)
        r["reversed_vat"] += int(vat or 0)
    # refunds approved in the period (Dr Fund on the refunded transaction), less the reversals
    # of refund postings (a failed card refund): one row per refunded transaction
    ref_orig = aliased(PostingGroup)
    for code, amount, vat, part in session.execute(
            select(t.vat_code, t.amount, t.vat_amount, func.sum(ln.amount))
            .select_from(g)
            .join(ln, ln.group_id == g.id)
            .join(t, t.id == ln.transaction_id)
            .outerjoin(ref_orig, ref_orig.id == g.reverses_id)
            .where(g.created_at >= start, g.created_at < end, ln.account == "FUND",
                   ln.transaction_id.is_not(None), *_scoped(t.fund_code),
                   g.kind.in_(("refund", "reversal")),
                   or_(g.kind == "refund", and_(g.kind == "reversal", ref_orig.kind == "refund")))
            .group_by(t.id, t.vat_code, t.amount, t.vat_amount)):
        r = row(code)
        r["refunded_gross"] += int(part or 0)
        r["refunded_vat"] += _share(int(vat or 0), int(amount), int(part or 0))
    vat_codes = {v.code: v for v in session.scalars(select(VatCode).where(
        VatCode.code.in_([c for c in codes if c])))}
    rows = []
    for code in sorted(codes):
        r = codes[code]
        r["gross"] = r["received_gross"] - r["reversed_gross"] - r["refunded_gross"]
        r["vat"] = r["received_vat"] - r["reversed_vat"] - r["refunded_vat"]
        r["net"] = r["gross"] - r["vat"]
        v = vat_codes.get(code)
        r["name"] = v.name if v else ""
        r["rate"] = v.rate if v else None
        rows.append(r)
    cols = [Column("vat_code", N_("VAT code")), Column("name", N_("Name")),
            Column("rate", N_("Rate"), "rate"), Column("lines", N_("Lines received"), "count"),
            Column("received_gross", N_("Received (gross)"), "money"),
            Column("received_vat", N_("VAT received"), "money"),
            Column("reversed_gross", N_("Reversed (gross)"), "money"),
            Column("reversed_vat", N_("VAT reversed"), "money"),
            Column("refunded_gross", N_("Refunded (gross)"), "money"),
            Column("refunded_vat", N_("VAT refunded"), "money"),
            Column("net", N_("Net"), "money"), Column("vat", N_("VAT"), "money"),
            Column("gross", N_("Gross"), "money")]
    totals = {c.key: _sum(rows, c.key) for c in cols if c.kind in ("money", "count")}
    chart = {"type": "bar", "stacked": True, "labels": [r["vat_code"] or "—" for r in rows],
             "datasets": [{"label": N_("Net"), "values": [r["net"] for r in rows]},
                          {"label": N_("VAT"), "values": [r["vat"] for r in rows]}]}
    return Report("vat", TITLES["vat"], date_from, date_to,
                  [Table("vat", N_("By VAT code"), cols, rows, totals)], chart, notes=[
                      N_("Output VAT: money received on its transaction date, less reversals and "
                         "refunds on the day they were posted (a refund's VAT is its share of the "
                         "transaction's VAT). Income without a VAT code is listed without one.")])


# --------------------------------------------------------------------------- income
def last_year(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def income_by_fund(session: Session, date_from: dt.date, date_to: dt.date) -> dict[str, int]:
    """Pence of income per fund code for the period (see the module's notes)."""
    t, g, ln = Transaction, PostingGroup, LedgerLine
    out: dict[str, int] = {}
    for fund, total in session.execute(
            select(t.fund_code, func.sum(t.amount))
            .where(t.transaction_date >= date_from, t.transaction_date <= date_to,
                   *money_in(session))
            .group_by(t.fund_code)):
        out[fund] = out.get(fund, 0) + int(total or 0)
    start, end = utc_bounds(date_from, date_to)
    for fund, total in session.execute(
            select(ln.fund_code, func.sum(ln.amount)).select_from(g)
            .join(ln, ln.group_id == g.id)
            .where(g.created_at >= start, g.created_at < end, g.kind.in_(CORRECTIONS),
                   ln.account.in_(INCOME_ACCOUNTS), *_scoped(ln.fund_code))
            .group_by(ln.fund_code)):
        out[fund or ""] = out.get(fund or "", 0) - int(total or 0)
    return out


def income_report(session: Session, date_from: dt.date, date_to: dt.date) -> Report:
    prev_from, prev_to = last_year(date_from), last_year(date_to)
    now = income_by_fund(session, date_from, date_to)
    before = income_by_fund(session, prev_from, prev_to)
    funds = {f.code: f for f in session.scalars(select(Fund).where(
        Fund.code.in_(set(now) | set(before))))}
    rows = []
    for code in set(now) | set(before):
        f = funds.get(code)
        cur, prev = now.get(code, 0), before.get(code, 0)
        if not cur and not prev:
            continue
        rows.append({"gl_code": (f.gl_code if f else "") or "", "fund_code": code,
                     "fund": f.name if f else "", "income": cur, "last_year": prev,
                     "change": cur - prev, "change_pct": _pct(cur - prev, prev)})
    rows.sort(key=lambda r: (r["gl_code"], r["fund_code"]))
    by_gl: dict[str, dict] = {}
    for r in rows:
        o = by_gl.setdefault(r["gl_code"], {"gl_code": r["gl_code"], "funds": 0, "income": 0,
                                            "last_year": 0})
        o["funds"] += 1
        o["income"] += r["income"]
        o["last_year"] += r["last_year"]
    gl_rows = sorted(by_gl.values(), key=lambda o: o["gl_code"])
    for o in gl_rows:
        o["change"] = o["income"] - o["last_year"]
        o["change_pct"] = _pct(o["change"], o["last_year"])
    figures = [Column("income", N_("This period"), "money"),
               Column("last_year", N_("Same period last year"), "money"),
               Column("change", N_("Change"), "money"),
               Column("change_pct", N_("Change %"), "percent")]

    def totals(rs):
        tot = {c: _sum(rs, c) for c in ("income", "last_year", "change")}
        tot["change_pct"] = _pct(tot["change"], tot["last_year"])
        return tot

    tables = [Table("income", N_("By fund"), [Column("gl_code", N_("GL code")),
                                             Column("fund_code", N_("Fund")),
                                             Column("fund", N_("Fund name"))] + figures,
                    rows, totals(rows)),
              Table("by_gl_code", N_("By GL code"), [Column("gl_code", N_("GL code")),
                                                     Column("funds", N_("Funds"), "count")]
                    + figures, gl_rows, totals(gl_rows))]
    chart = {"type": "bar", "labels": [r["fund_code"] for r in rows],
             "datasets": [{"label": N_("This period"), "values": [r["income"] for r in rows]},
                          {"label": N_("Same period last year"),
                           "values": [r["last_year"] for r in rows]}]}
    return Report("income", TITLES["income"], date_from, date_to, tables, chart, notes=[
        N_("Income: money received on its transaction date, plus corrections (reversals, "
           "journals, transfers, allocations, refunds, write-offs) on the day they were posted.")],
        extra={"compare_from": prev_from, "compare_to": prev_to})


def _pct(change: int, base: int) -> Decimal | None:
    if not base:
        return None
    return (Decimal(change) * 100 / abs(Decimal(base))).quantize(Decimal("0.1"))


# --------------------------------------------------------------------------- approvals
def _gbp(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def band_label(index: int) -> Fixed:
    low, high = AMOUNT_BANDS[index]
    if high is None:
        return N_("over %(low)s", low=_gbp(low - 1))
    return N_("%(low)s to %(high)s", low=_gbp(low), high=_gbp(high))


def _band_of(pence: int) -> int:
    """The index of the amount band pence falls in (as _band_case says in SQL)."""
    return next((i for i, (_, high) in enumerate(AMOUNT_BANDS) if high is not None and pence <= high),
                len(AMOUNT_BANDS) - 1)


def _band_case(amount):
    whens = [(amount <= high, i) for i, (_, high) in enumerate(AMOUNT_BANDS) if high is not None]
    return case(*whens, else_=len(AMOUNT_BANDS) - 1)


def approvals_report(session: Session, date_from: dt.date, date_to: dt.date) -> Report:
    w, i = WorkflowTask, WorkflowInstance
    start, end = utc_bounds(date_from, date_to)
    amount = func.coalesce(i.amount_pence, 0)
    band = _band_case(amount).label("band")
    where = (w.status == "completed", w.decision.is_not(None), w.completed_at >= start,
             w.completed_at < end, i.subject_type.in_(tuple(APPROVAL_ACTIONS)))
    from app.services.scope import allowed_fund_codes, subject_allowed

    codes = allowed_fund_codes()
    if codes is not None:  # the user's fund groups: the decisions about their funds only
        seen = session.execute(select(i.id, i.subject_type, i.subject_id).distinct()
                               .join(w, w.instance_id == i.id).where(*where)).all()
        where += (i.id.in_([iid for iid, kind, sid in seen
                            if subject_allowed(session, kind, sid, codes)] or [0]),)
    grouped = session.execute(
        select(w.completed_by, i.subject_type, band,
               func.sum(case((w.decision == "approve", 1), else_=0)),
               func.sum(case((w.decision == "approve", amount), else_=0)),
               func.sum(case((w.decision != "approve", 1), else_=0)),
               func.sum(case((w.decision != "approve", amount), else_=0)),
               func.sum(case((w.completed_by == i.requester, 1), else_=0)))
        .join(i, i.id == w.instance_id).where(*where)
        .group_by(w.completed_by, i.subject_type, band)).all()
    rows = []
    for who, action, b, na, aa, nr, ar, own in grouped:
        rows.append({"approver": who or "", "action": APPROVAL_ACTIONS.get(action, action),
                     "action_code": action, "band": band_label(int(b)), "band_index": int(b),
                     "approved": int(na or 0), "approved_amount": int(aa or 0),
                     "rejected": int(nr or 0), "rejected_amount": int(ar or 0),
                     "own_requests": int(own or 0)})
    rows.sort(key=lambda r: (r["approver"], r["action_code"], r["band_index"]))
    figures = [Column("approved", N_("Approved"), "count"),
               Column("approved_amount", N_("Amount approved"), "money"),
               Column("rejected", N_("Rejected"), "count"),
               Column("rejected_amount", N_("Amount rejected"), "money"),
               Column("own_requests", N_("Own requests decided"), "count")]

    def totals(rs):
        return {c.key: _sum(rs, c.key) for c in figures}

    bands: dict[tuple, dict] = {}
    for r in rows:
        o = bands.setdefault((r["action_code"], r["band_index"]), {
            "action": r["action"], "action_code": r["action_code"], "band": r["band"],
            "band_index": r["band_index"], **{c.key: 0 for c in figures}})
        for c in figures:
            o[c.key] += r[c.key]
    band_rows = [bands[k] for k in sorted(bands)]
    detail = []
    for at, who, action, subject, amt, decision, requester, comment in session.execute(
            select(w.completed_at, w.completed_by, i.subject_type, i.subject_id, i.amount_pence,
                   w.decision, i.requester, w.comment)
            .join(i, i.id == w.instance_id).where(*where)
            .order_by(w.completed_at, w.id).limit(MAX_DETAIL_ROWS)):
        detail.append({"decided_at": at, "approver": who or "",
                       "action": APPROVAL_ACTIONS.get(action, action), "subject_id": subject,
                       "amount": amt, "decision": N_("Approved") if decision == "approve"
                       else N_("Rejected"), "requester": requester, "comment": comment or ""})
    tables = [
        Table("approvals", N_("By approver, action and amount band"),
              [Column("approver", N_("Approver")), Column("action", N_("Action")),
               Column("band", N_("Amount band"))] + figures, rows, totals(rows)),
        Table("by_band", N_("By action and amount band"),
              [Column("action", N_("Action")), Column("band", N_("Amount band"))] + figures,
              band_rows, totals(band_rows)),
        Table("decisions", N_("Decisions"),
              [Column("decided_at", N_("Decided"), "datetime"), Column("approver", N_("Approver")),
               Column("action", N_("Action")), Column("subject_id", N_("Number")),
               Column("amount", N_("Amount"), "money"), Column("decision", N_("Decision")),
               Column("requester", N_("Requested by")), Column("comment", N_("Comment"))],
              detail),
    ]
    approvers = sorted({r["approver"] for r in rows})
    chart = {"type": "bar", "stacked": True, "labels": approvers, "datasets": [
        {"label": N_("Amount approved"),
         "values": [sum(r["approved_amount"] for r in rows if r["approver"] == a)
                    for a in approvers]},
        {"label": N_("Amount rejected"),
         "values": [sum(r["rejected_amount"] for r in rows if r["approver"] == a)
                    for a in approvers]}]}
    notes = [N_("Every decision taken on a refund, write-off or suspense allocation task in the "
                "period; a request that needed two approvers counts once for each.")]
    if len(detail) == MAX_DETAIL_ROWS:
        notes.append(N_("Only the first %(n)s decisions are listed one by one.",
                        n=MAX_DETAIL_ROWS))
    return Report("approvals", TITLES["approvals"], date_from, date_to, tables, chart, notes)


# --------------------------------------------------------------------------- dispatch
BUILDERS = {"cash-book": cash_book, "vat": vat_report, "income": income_report,
            "approvals": approvals_report}


def build(session: Session, name: str, date_from: dt.date, date_to: dt.date, **filters) -> Report:
    if name not in BUILDERS:
        raise NotFound(f"There is no report {str(name)[:40]!r}.")
    if name == "cash-book":
        return cash_book(session, date_from, date_to, office_code=filters.get("office_code"))
    return BUILDERS[name](session, date_from, date_to)


def month_end(session: Session, date_from: dt.date, date_to: dt.date) -> list[Report]:
    return [build(session, name, date_from, date_to) for name in BUILDERS]


# --------------------------------------------------------------------------- exports
def _text(value, translate) -> str:
    if value is None:
        return ""
    if isinstance(value, Fixed):
        return translate(value)
    return str(value)


def _safe(text: str) -> str:
    """A cell that a spreadsheet would read as a formula is quoted with '."""
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            Decimal(text)
            return text
        except ArithmeticError:
            return "'" + text
        except ValueError:  # pragma: no cover
            return "'" + text
    return text


def csv_value(col: Column, value, translate) -> str:
    if value is None or value == "":
        return ""
    if col.kind == "money":
        return pence_to_str(value)
    if col.kind in ("count",):
        return str(int(value))
    if col.kind == "percent":
        return str(value)
    if col.kind == "rate":
        return f"{(Decimal(value) * 100).normalize():f}%"
    if col.kind in ("date", "datetime"):
        if isinstance(value, dt.datetime):
            return value.astimezone(_timezone()).strftime("%Y-%m-%d %H:%M") \
                if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
        return value.isoformat()
    return _safe(_text(value, translate))


def _identity(value):
    return str(value)


def to_csv(report: Report, translate=_identity) -> str:
    """Every table of the report: its title, header, rows and totals, a blank line between."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([translate(report.title), report.date_from.isoformat(), report.date_to.isoformat()])
    for table in report.tables:
        w.writerow([])
        w.writerow([translate(table.title)])
        w.writerow([translate(c.label) for c in table.columns])
        for r in table.rows:
            w.writerow([csv_value(c, r.get(c.key), translate) for c in table.columns])
        if table.totals is not None:
            w.writerow([translate(N_("Total")) if i == 0 else
                        csv_value(c, table.totals.get(c.key), translate)
                        for i, c in enumerate(table.columns)])
    return buf.getvalue()


MONEY_FORMAT = '"£"#,##0.00;-"£"#,##0.00'
_FORMATS = {"money": MONEY_FORMAT, "percent": "0.0%", "rate": "0.0#%", "date": "DD/MM/YYYY",
            "datetime": "DD/MM/YYYY HH:MM"}


def _xlsx_value(col: Column, value, translate):
    """The cell value for a column kind (numbers as numbers, dates as dates)."""
    if value is None or value == "":
        return None
    if col.kind == "money":
        return Decimal(int(value)) / 100
    if col.kind == "count":
        return int(value)
    if col.kind == "percent":
        return Decimal(value) / 100
    if col.kind == "rate":
        return Decimal(value)
    if col.kind == "date":
        return value
    if col.kind == "datetime":
        local = value.astimezone(_timezone()) if value.tzinfo else value
        return local.replace(tzinfo=None)
    return _safe(_text(value, translate))


def _sheet(wb, report: Report, translate):
    """One write-only sheet: title, period, then each table (title, header, rows, totals)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(title=translate(report.title)[:31])
    bold, big = Font(bold=True), Font(bold=True, size=14)
    widths: dict[int, int] = {}
    for table in report.tables:
        for j, c in enumerate(table.columns, 1):
            widths[j] = max(widths.get(j, 12), min(len(translate(c.label)) + 2, 40))
    for j, width in widths.items():
        ws.column_dimensions[get_column_letter(j)].width = width

    def styled(value, font=None, number_format=None):
        cell = WriteOnlyCell(ws, value=value)
        if font is not None:
            cell.font = font
        if number_format is not None:
            cell.number_format = number_format
        return cell

    ws.append([styled(translate(report.title), big)])
    ws.append([styled(report.date_from, number_format="DD/MM/YYYY"),
               styled(report.date_to, number_format="DD/MM/YYYY")])
    for table in report.tables:
        ws.append([])
        ws.append([styled(translate(table.title), bold)])
        ws.append([styled(translate(c.label), bold) for c in table.columns])
        kinds = [(c, _FORMATS.get(c.kind)) for c in table.columns]
        for r in table.rows:
            ws.append([styled(_xlsx_value(c, r.get(c.key), translate), number_format=fmt)
                       if fmt else _xlsx_value(c, r.get(c.key), translate) for c, fmt in kinds])
        if table.totals is not None:
            ws.append([styled(translate(N_("Total")), bold) if j == 0 else
                       styled(_xlsx_value(c, table.totals[c.key], translate), bold, fmt)
                       if c.key in table.totals else None
                       for j, (c, fmt) in enumerate(kinds)])
    return ws


def to_xlsx(reports: list[Report] | Report, translate=_identity) -> bytes:
    """One sheet per report (openpyxl's write-only mode: rows are streamed to the file)."""
    from openpyxl import Workbook

    if isinstance(reports, Report):
        reports = [reports]
    wb = Workbook(write_only=True)
    for rep in reports:
        _sheet(wb, rep, translate)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_zip(reports: list[Report], translate=_identity) -> bytes:
    """A zip of one CSV per report (UTF-8 with a byte-order mark, as spreadsheets expect)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rep in reports:
            name = f"{rep.name}-{rep.date_from.isoformat()}-{rep.date_to.isoformat()}.csv"
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, "\ufeff" + to_csv(rep, translate))
    return buf.getvalue()


def json_value(col: Column, value):
    if value is None:
        return None
    if col.kind == "money":
        return pence_to_str(value)
    if col.kind == "count":
        return int(value)
    if col.kind in ("percent", "rate"):
        return str(value)
    if col.kind in ("date", "datetime"):
        return value.isoformat()
    return str(value)


def to_json(report: Report) -> dict:
    return {"report": report.name, "title": str(report.title),
            "from": report.date_from.isoformat(), "to": report.date_to.isoformat(),
            **{k: (v.isoformat() if isinstance(v, dt.date) else v)
               for k, v in report.extra.items()},
            "tables": {t.key: {"rows": [{c.key: json_value(c, r.get(c.key)) for c in t.columns}
                                        for r in t.rows],
                               "totals": None if t.totals is None else {
                                   c.key: json_value(c, t.totals[c.key])
                                   for c in t.columns if c.key in t.totals}}
                       for t in report.tables}}


def filename(name: str, date_from: dt.date, date_to: dt.date, ext: str) -> str:
    if date_from == date_to:
        return f"{name}-{date_from.isoformat()}.{ext}"
    return f"{name}-{date_from.isoformat()}-to-{date_to.isoformat()}.{ext}"
