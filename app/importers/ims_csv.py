"""IMS CSV: UTF-8 (BOM allowed), RFC 4180 quoting, a header row.

Required columns transaction_date, account_reference, amount; optional narrative, fund_code,
payment_method_code, external_reference.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

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

    def opt(rec, i):
        if i is None:
            return None
        v = rec[i].strip()
        return v or None

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
        errs = []
        try:
            d = parse_date(rec[i_date])
        except ValueError as exc:
            errs.append(str(exc))
        try:
            amount = parse_amount(rec[i_amt])
            if amount == 0:
                errs.append(t("Amount must be more than zero."))
        except ValueError as exc:
            errs.append(str(exc))
        ref = rec[i_ref].strip()
        if len(ref) > 100:
            errs.append(t("The reference is longer than 100 characters."))
        if errs:
            yield LineError(start, t("Line %(line)d: %(msg)s", line=start, msg=" ".join(errs)))
            continue
        fund = opt(rec, i_fund)
        method = opt(rec, i_pm)
        yield Row(start, d, ref, amount, opt(rec, i_nar), fund.upper() if fund else None,
                  method.upper() if method else None, opt(rec, i_ext))
    if rows == 0:
        yield LineError(None, t("The file has a header but no payment lines."))
