"""A bank's CSV export read through a saved BankProfile (columns, date format, sign, skips)."""

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

SIGN_CONVENTIONS = ("signed", "signed_negative", "split")


def _resolver(header: list[str] | None):
    names = [h.strip().lower() for h in header] if header else []

    def col(spec: str | None) -> int | None:
        if not spec:
            return None
        s = spec.strip()
        if s.isdigit():
            return int(s) - 1
        if s.lower() in names:
            return names.index(s.lower())
        raise FileRejected(t("The profile's column %(col)s is not in the file's header.", col=s), 1)

    return col


def parse(path: str, summary: Summary, profile) -> Iterator[Row | LineError]:
    state = {"line": 0}
    lines = decoded_lines(path, state)
    for _ in range(profile.skip_rows or 0):
        if next(lines, None) is None:
            raise FileRejected(t("The file is empty."))
    reader = csv.reader(lines, delimiter=profile.delimiter or ",", strict=True)
    header = None
    if profile.has_header:
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise FileRejected(t("The header cannot be read (%(err)s).", err=str(exc))) from None
        if header is None:
            raise FileRejected(t("The file is empty."))
    col = _resolver(header)
    i_date, i_ref = col(profile.date_column), col(profile.reference_column)
    i_nar, i_fund = col(profile.narrative_column), col(profile.fund_column)
    i_bal = col(getattr(profile, "balance_column", None))
    sign = profile.sign_convention or "signed"
    if sign == "split":
        i_cr, i_dr, i_amt = col(profile.credit_column), col(profile.debit_column), None
        if i_cr is None:
            raise FileRejected(t("The profile needs a credit column for split amounts."))
    else:
        i_amt, i_cr, i_dr = col(profile.amount_column), None, None
        if i_amt is None:
            raise FileRejected(t("The profile needs an amount column."))
    need = max(i for i in (i_date, i_ref, i_nar, i_fund, i_amt, i_cr, i_dr, i_bal)
               if i is not None) + 1
    width = len(header) if header else None
    rows = 0
    for record in csv_records(reader, state):
        if isinstance(record, LineError):
            yield record
            return
        start, rec = record
        if (width is not None and len(rec) != width) or len(rec) < need:
            yield LineError(start, t("Line %(line)d has %(n)d columns; expected %(w)d.",
                                     line=start, n=len(rec), w=width or need))
            continue
        rows += 1
        errs = []
        d = None
        try:
            d = parse_date(rec[i_date], profile.date_format or None)
        except ValueError:
            errs.append(t("%(date)s is not a date in the form %(fmt)s.", date=rec[i_date],
                          fmt=profile.date_format))
        amount = 0
        try:
            if sign == "split":
                cr = rec[i_cr].strip()
                amount = parse_amount(cr, thousands=True) if cr else 0
            else:
                raw = rec[i_amt].strip()
                amount = parse_amount(raw, allow_negative=True, thousands=True) if raw else 0
                if sign == "signed_negative":
                    amount = -amount
        except ValueError as exc:
            errs.append(str(exc))
        balance = None
        if i_bal is not None and rec[i_bal].strip():
            try:
                balance = parse_amount(rec[i_bal].strip(), allow_negative=True, thousands=True)
            except ValueError as exc:
                errs.append(str(exc))
        if errs:
            yield LineError(start, t("Line %(line)d: %(msg)s", line=start, msg=" ".join(errs)))
            continue
        nar = rec[i_nar].strip() if i_nar is not None else None
        ref = rec[i_ref].strip()
        if sign == "split" and amount == 0 and i_dr is not None and rec[i_dr].strip():
            try:
                amount = -parse_amount(rec[i_dr].strip(), thousands=True)
            except ValueError as exc:
                yield LineError(start, t("Line %(line)d: %(msg)s", line=start, msg=str(exc)))
                continue
        if balance is not None:  # the running balance: opening = first balance - first amount
            if summary.opening_balance is None:
                summary.opening_balance = balance - amount
            summary.closing_balance = balance
            summary.statement_date = d
        if amount <= 0:  # debits and zero lines are not income
            summary.skipped += 1
            if amount < 0:  # kept for reconciliation
                summary.add_debit(Row(start, d, ref[:100], -amount, nar or None))
            continue
        yield Row(start, d, ref, amount, nar or None,
                  (rec[i_fund].strip().upper() or None) if i_fund is not None else None,
                  profile.payment_method_code or "BACS", None)
    if rows == 0:
        yield LineError(None, t("The file has no payment lines."))
