"""IMS CSV: UTF-8 (BOM allowed), RFC 4180 quoting, a header row.

Required columns transaction_date, account_reference, amount; optional narrative, fund_code,
payment_method_code, external_reference.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date

from app.importers import (
    FileRejected,
    LineError,
    Row,
    Summary,
    csv_records,
    decoded_lines,
    parse_amount,
    parse_date,
    t,
)

REQUIRED = ("transaction_date", "account_reference", "amount")
OPTIONAL = ("narrative", "fund_code", "payment_method_code", "external_reference")


def parse(path: str, summary: Summary) -> Iterator[Row | LineError]:
    state = {"line": 0}
    reader = csv.reader(decoded_lines(path, state), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise FileRejected(t("Line 1: the header cannot be read (%(err)s).", err=str(exc)), 1) from None
    if header is None or not any(h.strip() for h in header):
        raise FileRejected(t("The file is empty."))
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    unknown = [c for c in names if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(t("missing column(s) %(cols)s", cols=", ".join(missing)))
        if unknown:
            parts.append(t("unknown column(s) %(cols)s", cols=", ".join(unknown)))
        raise FileRejected(t("Line 1: the header is wrong: %(parts)s.", parts="; ".join(parts)), 1)
    idx = {n: i for i, n in enumerate(names)}
    i_date, i_ref, i_amt = idx["transaction_date"], idx["account_reference"], idx["amount"]
    i_nar, i_fund = idx.get("narrative"), idx.get("fund_code")
    i_pm, i_ext = idx.get("payment_method_code"), idx.get("external_reference")
    width = len(names)
    rows = 0
    dates: dict[str, date] = {}  # a payment file carries few distinct dates

    for record in csv_records(reader, state):
        if isinstance(record, LineError):
            yield record
            return
        start, rec = record
        if len(rec) != width:
            yield LineError(start, t("Line %(line)d has %(n)d columns; the header has %(w)d.",
                                     line=start, n=len(rec), w=width))
            continue
        rows += 1
        ref = rec[i_ref].strip()
        d = dates.get(rec[i_date])
        try:
            amount = parse_amount(rec[i_amt])
        except ValueError:
            amount = 0
        if d is None or amount == 0 or len(ref) > 100:
            errs = _errors(rec[i_date], rec[i_amt], ref)
            if errs:
                yield LineError(start, t("Line %(line)d: %(msg)s", line=start, msg=" ".join(errs)))
                continue
            d = dates[rec[i_date]] = parse_date(rec[i_date])
        fund = rec[i_fund].strip() if i_fund is not None else None
        method = rec[i_pm].strip() if i_pm is not None else None
        narrative = rec[i_nar].strip() if i_nar is not None else None
        ext = rec[i_ext].strip() if i_ext is not None else None
        yield Row(start, d, ref, amount, narrative or None, fund.upper() if fund else None,
                  method.upper() if method else None, ext or None)
    if rows == 0:
        yield LineError(None, t("The file has a header but no payment lines."))


def _errors(date_text: str, amount_text: str, ref: str) -> list[str]:
    """What is wrong with a line's date, amount and reference (empty: nothing)."""
    errs = []
    try:
        parse_date(date_text)
    except ValueError as exc:
        errs.append(str(exc))
    try:
        if parse_amount(amount_text) == 0:
            errs.append(t("Amount must be more than zero."))
    except ValueError as exc:
        errs.append(str(exc))
    if len(ref) > 100:
        errs.append(t("The reference is longer than 100 characters."))
    return errs
