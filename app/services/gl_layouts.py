"""GL export layouts: data, not code. A layout is a JSON object, stored versioned in gl_layout
(a new version is a new row; a batch names the version it used):

    {"name": "generic_journal_csv", "version": 1, "title": "...",
     "delimiter": ",", "header": true, "line_ending": "\\r\\n",
     "date_format": "%Y-%m-%d",
     "amounts": "debit_credit" | "signed",
     "sign": "debit_positive" | "credit_positive",      (how "amount" is signed)
     "columns": [{"header": "Date", "field": "accounting_date"},
                 {"header": "Source", "text": "IMS"}, ...]}

Each column has a header and either a ``field`` (FIELDS) or fixed ``text``; the order of the
list is the order of the file. ``validate`` refuses anything else with a message naming the
column. Three layouts ship (BUILTIN): a generic journal CSV, Oracle Fusion's journal import
(GL_INTERFACE, the FBDI JournalImportTemplate) and Unit4 ERP's GL07 batch input
(acrbatchinput); the README says where their columns are documented.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import NotFound, ValidationError
from app.models.gl import GlLayout

#: fields a column may name: what each summarised row has...
SUMMARY_FIELDS = {
    "batch_number": "the batch's number (GL000012)",
    "cut_off": "the batch's cut-off date",
    "accounting_date": "the accounting date of the row's lines",
    "period": "the accounting period (YYYY-MM)",
    "gl_code": "the GL code: the fund's for net income, the VAT code's for VAT, the account's",
    "cost_centre": "the fund's cost centre (or gl.default_cost_centre)",
    "vat_code": "the VAT code of the income (blank when none)",
    "fund_code": "the fund (blank for a row of several funds' lines)",
    "amount": "the amount, signed as the layout's sign says",
    "debit": "the debit amount (blank on a credit row)",
    "credit": "the credit amount (blank on a debit row)",
    "dc_flag": "D or C",
    "dc_sign": "1 for a debit, -1 for a credit",
    "line_count": "how many ledger lines the row sums",
    "description": "a description: batch, date and GL code",
    "row_number": "the row's number in the file (1, 2, ...)",
    "currency": "GBP",
}
#: ...and what only an itemised export has (one row per ledger line, VAT split out)
ITEM_FIELDS = {
    "posting_number": "the posting group's number (R000123)",
    "posting_kind": "receipt, import, journal, reversal, ...",
    "ledger_line_id": "the ledger line's id",
    "ledger_account": "BANK, FUND, SUSPENSE, REFUNDS_PAYABLE, WRITE_OFFS",
    "account_reference": "the payer's account reference",
    "posted_by": "who posted it",
    "office_code": "the office",
}
FIELDS = {**SUMMARY_FIELDS, **ITEM_FIELDS}
_DATE_DIRECTIVES = set("dmyYbB")
_NAME = re.compile(r"[a-z][a-z0-9_]{1,49}")


def _err(msg: str, field: str = "layout") -> ValidationError:
    return ValidationError(msg, {field: [msg]})


def validate(definition, *, summarised: bool | None = None) -> dict:
    """The layout, checked: ValidationError naming the first problem (an unknown column field
    names the known ones). ``summarised``: also check the columns suit that kind of export."""
    if isinstance(definition, (str, bytes)):
        try:
            definition = json.loads(definition)
        except ValueError as exc:
            raise _err(f"The layout is not valid JSON: {exc}.") from None
    if not isinstance(definition, dict):
        raise _err("A layout is a JSON object.")
    unknown = set(definition) - {"name", "version", "title", "description", "source",
                                 "delimiter", "header", "line_ending", "date_format", "amounts",
                                 "sign", "columns"}
    if unknown:
        raise _err(f"Unknown layout setting(s): {', '.join(sorted(unknown))}.")
    name = definition.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _err("name: 2 to 50 lower-case letters, digits or _, starting with a letter.")
    version = definition.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 10_000:
        raise _err("version: a whole number from 1.")
    title = definition.get("title", name)
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise _err("title: text of at most 200 characters.")
    delimiter = definition.get("delimiter", ",")
    if delimiter not in (",", ";", "|", "\t"):
        raise _err("delimiter: one of , ; | or a tab.")
    header = definition.get("header", True)
    if not isinstance(header, bool):
        raise _err("header: true or false.")
    ending = definition.get("line_ending", "\r\n")
    if ending not in ("\r\n", "\n"):
        raise _err("line_ending: \\r\\n or \\n.")
    date_format = definition.get("date_format", "%Y-%m-%d")
    if (not isinstance(date_format, str) or not date_format or len(date_format) > 30
            or any(d not in _DATE_DIRECTIVES for d in re.findall(r"%(.?)", date_format))):
        raise _err("date_format: a strftime pattern of %d %m %y %Y %b %B and separators, "
                   "e.g. %Y-%m-%d or %d/%m/%Y.")
    amounts = definition.get("amounts", "debit_credit")
    if amounts not in ("debit_credit", "signed"):
        raise _err("amounts: debit_credit or signed.")
    sign = definition.get("sign", "debit_positive")
    if sign not in ("debit_positive", "credit_positive"):
        raise _err("sign: debit_positive or credit_positive.")
    columns = definition.get("columns")
    if not isinstance(columns, list) or not columns or len(columns) > 200:
        raise _err("columns: a list of 1 to 200 columns.")
    used = set()
    for i, col in enumerate(columns, start=1):
        if not isinstance(col, dict) or set(col) - {"header", "field", "text"}:
            raise _err(f"Column {i}: an object with a header and a field or fixed text.",
                       f"columns[{i}]")
        head = col.get("header")
        if not isinstance(head, str) or len(head) > 100:
            raise _err(f"Column {i}: header must be text of at most 100 characters.",
                       f"columns[{i}]")
        if ("field" in col) == ("text" in col):
            raise _err(f"Column {i} ({head!r}): give either a field or fixed text.",
                       f"columns[{i}]")
        if "text" in col:
            if not isinstance(col["text"], str) or len(col["text"]) > 200:
                raise _err(f"Column {i} ({head!r}): fixed text of at most 200 characters.",
                           f"columns[{i}]")
            continue
        field = col["field"]
        if field not in FIELDS:
            raise _err(f"Column {i} ({head!r}): unknown field {field!r}. Known fields: "
                       f"{', '.join(sorted(FIELDS))}.", f"columns[{i}]")
        if summarised and field in ITEM_FIELDS:
            raise _err(f"Column {i} ({head!r}): {field} is only known in an itemised export.",
                       f"columns[{i}]")
        used.add(field)
    if amounts == "signed" and not used & {"amount"}:
        raise _err("A signed layout needs an amount column.")
    if amounts == "debit_credit" and not used & {"debit", "credit", "dc_flag", "dc_sign"}:
        raise _err("A debit/credit layout needs debit and credit columns (or a D/C flag).")
    return {"name": name, "version": version, "title": title.strip(),
            "description": definition.get("description"), "source": definition.get("source"),
            "delimiter": delimiter, "header": header, "line_ending": ending,
            "date_format": date_format, "amounts": amounts, "sign": sign,
            "columns": [dict(c) for c in columns]}


GENERIC = {
    "name": "generic_journal_csv", "version": 1, "title": "Generic journal CSV",
    "description": "One journal line per row: date, GL code, cost centre, VAT code, debit, credit.",
    "delimiter": ",", "header": True, "line_ending": "\r\n", "date_format": "%Y-%m-%d",
    "amounts": "debit_credit", "sign": "debit_positive",
    "columns": [
        {"header": "Batch", "field": "batch_number"},
        {"header": "Date", "field": "accounting_date"},
        {"header": "Period", "field": "period"},
        {"header": "GL code", "field": "gl_code"},
        {"header": "Cost centre", "field": "cost_centre"},
        {"header": "VAT code", "field": "vat_code"},
        {"header": "Fund", "field": "fund_code"},
        {"header": "Description", "field": "description"},
        {"header": "Debit", "field": "debit"},
        {"header": "Credit", "field": "credit"},
        {"header": "Lines", "field": "line_count"},
    ]}

ORACLE = {
    "name": "oracle_fusion_gl_interface", "version": 1,
    "title": "Oracle Fusion journal import (GL_INTERFACE / FBDI)",
    "description": "The GL_INTERFACE columns of Oracle Fusion's Import Journals (FBDI "
                   "JournalImportTemplate): status NEW, actual flag A, segment 1 the GL code, "
                   "segment 2 the cost centre, entered debit or credit. LEDGER_ID is left for "
                   "the council to fill in a copy of this layout.",
    "source": "https://docs.oracle.com/en/cloud/saas/financials/24d/oedmf/glinterface-8261.html",
    "delimiter": ",", "header": False, "line_ending": "\n", "date_format": "%Y/%m/%d",
    "amounts": "debit_credit", "sign": "debit_positive",
    "columns": [
        {"header": "STATUS", "text": "NEW"},
        {"header": "LEDGER_ID", "text": ""},
        {"header": "ACCOUNTING_DATE", "field": "accounting_date"},
        {"header": "USER_JE_SOURCE_NAME", "text": "IMS"},
        {"header": "USER_JE_CATEGORY_NAME", "text": "Receipts"},
        {"header": "CURRENCY_CODE", "field": "currency"},
        {"header": "DATE_CREATED", "field": "cut_off"},
        {"header": "ACTUAL_FLAG", "text": "A"},
        {"header": "SEGMENT1", "field": "gl_code"},
        {"header": "SEGMENT2", "field": "cost_centre"},
        {"header": "ENTERED_DR", "field": "debit"},
        {"header": "ENTERED_CR", "field": "credit"},
        {"header": "REFERENCE1", "field": "batch_number"},
        {"header": "REFERENCE10", "field": "description"},
    ]}

UNIT4 = {
    "name": "unit4_gl07", "version": 1, "title": "Unit4 ERP GL07 batch input (acrbatchinput)",
    "description": "Unit4 ERP (Agresso) GL07 batch input: account, dim_1 the cost centre, "
                   "tax code, signed amount in the currency and in the company's currency, "
                   "transaction date; batch_id the IMS batch number.",
    "source": "https://mfl-doc.gcon4.com/masterfiles/functional/appendix/batchtransactions.html",
    "delimiter": ",", "header": True, "line_ending": "\r\n", "date_format": "%Y%m%d",
    "amounts": "signed", "sign": "debit_positive",
    "columns": [
        {"header": "batch_id", "field": "batch_number"},
        {"header": "interface", "text": "BI"},
        {"header": "voucher_type", "text": "GL"},
        {"header": "trans_type", "text": "GL"},
        {"header": "client", "text": ""},
        {"header": "account", "field": "gl_code"},
        {"header": "dim_1", "field": "cost_centre"},
        {"header": "tax_code", "field": "vat_code"},
        {"header": "currency", "field": "currency"},
        {"header": "dc_flag", "field": "dc_sign"},
        {"header": "cur_amount", "field": "amount"},
        {"header": "amount", "field": "amount"},
        {"header": "description", "field": "description"},
        {"header": "trans_date", "field": "accounting_date"},
        {"header": "voucher_date", "field": "accounting_date"},
    ]}

BUILTIN = (GENERIC, ORACLE, UNIT4)


def ensure_builtin(session: Session) -> None:
    """Store the shipped layouts whose name has no version yet (flushes only)."""
    have = set(session.scalars(select(GlLayout.name)))
    for layout in BUILTIN:
        if layout["name"] not in have:
            v = validate(layout)
            session.add(GlLayout(name=v["name"], version=v["version"], title=v["title"],
                                 definition=json.dumps(layout, sort_keys=True), created_by="system"))
    session.flush()


def add_version(session: Session, definition, *, actor: str) -> GlLayout:
    """Store a new version of a layout (validated; the version is the next one). Flushes."""
    v = validate(definition)
    latest = session.scalar(select(func.max(GlLayout.version)).where(GlLayout.name == v["name"]))
    v["version"] = (latest or 0) + 1
    raw = dict(json.loads(definition) if isinstance(definition, (str, bytes)) else definition)
    raw["version"] = v["version"]
    row = GlLayout(name=v["name"], version=v["version"], title=v["title"],
                   definition=json.dumps(raw, sort_keys=True), created_by=actor)
    session.add(row)
    session.flush()
    from app.services import audit

    audit.record(session, "gl_layout.add", "GlLayout", row.id,
                 after={"name": row.name, "version": row.version}, actor=actor)
    return row


def latest(session: Session) -> list[GlLayout]:
    """The newest version of each layout, by name."""
    ensure_builtin(session)
    newest = (select(GlLayout.name, func.max(GlLayout.version).label("v"))
              .group_by(GlLayout.name).subquery())
    return list(session.scalars(select(GlLayout).join(
        newest, (newest.c.name == GlLayout.name) & (newest.c.v == GlLayout.version))
        .order_by(GlLayout.name)))


def get(session: Session, name) -> GlLayout:
    """The newest version of the layout called ``name``; ValidationError when unknown."""
    if not isinstance(name, str) or not name.strip():
        raise _err("Choose a layout.", "layout")
    for row in latest(session):
        if row.name == name.strip():
            return row
    raise ValidationError(f"Unknown layout {name.strip()[:60]!r}.",
                          {"layout": [f"Unknown layout {name.strip()[:60]!r}."]})


def definition_of(row: GlLayout) -> dict:
    return validate(row.definition)


def by_id(session: Session, layout_id: int) -> GlLayout:
    row = session.get(GlLayout, layout_id)
    if row is None:
        raise NotFound(f"Layout {layout_id} does not exist.")
    return row
