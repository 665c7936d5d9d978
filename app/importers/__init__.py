"""File parsers for imports. Each yields Row or LineError objects while streaming the file.

Parsers never touch the database. They check the file's shape (encoding, columns, amounts,
dates, control totals) and name the line of every problem; the import service posts nothing
unless a whole pass over the file produced no errors.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from flask_babel import gettext as _


@dataclass(slots=True)
class Row:
    """One incoming payment, as read from the file (amount in pence, > 0)."""

    line: int
    transaction_date: date
    reference: str
    amount: int
    narrative: str | None = None
    fund_code: str | None = None
    payment_method_code: str | None = None
    external_reference: str | None = None


@dataclass
class LineError:
    line: int | None
    message: str


#: the most debit lines a statement keeps for reconciliation
MAX_DEBITS = 100_000


@dataclass
class Summary:
    """Filled in by a parser while it runs: control totals and skipped (debit) lines; for bank
    statements, the debit lines (amount > 0, pence paid out) and the statement's opening and
    closing balances (pence, negative when overdrawn) where the file carries them."""

    control: str | None = None
    skipped: int = 0
    first_date: date | None = None  # set by the whole-file check
    last_date: date | None = None
    notes: list[str] = field(default_factory=list)
    debits: list[Row] = field(default_factory=list)
    opening_balance: int | None = None
    closing_balance: int | None = None
    statement_date: date | None = None

    def add_debit(self, row: Row) -> None:
        if len(self.debits) < MAX_DEBITS:
            self.debits.append(row)


class FileRejected(Exception):
    """The whole file is unusable (binary, wrong encoding at the start, hostile XML...)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def t(message: str, **kw) -> str:
    """Translate when a Flask app (and request/app context) is there; plain text otherwise."""
    try:
        return _(message, **kw)
    except Exception:  # outside an app context (pure unit tests, bench)
        return message % kw if kw else message


_AMOUNT = re.compile(r"^(-)?(\d+)(?:\.(\d{1,2}))?$")
_PLAIN_AMOUNT = re.compile(r"(\d+)(?:\.(\d{1,2}))?")
_DATES: dict[tuple[str, str | None], date] = {}


def parse_amount(text: str, *, allow_negative: bool = False, thousands: bool = False) -> int:
    """Strict pounds-and-pence to pence; ValueError (with a user message) otherwise."""
    m = _PLAIN_AMOUNT.fullmatch(text)
    if m is not None:  # the usual "12.34": no sign, symbol, separator or space to deal with
        pounds, pence = m.groups()
        return int(pounds) * 100 + (int(pence.ljust(2, "0")) if pence else 0)
    s = text.strip().lstrip("£").strip()
    if thousands:
        s = s.replace(",", "")
    if s.startswith("+"):
        s = s[1:]
    m = _AMOUNT.match(s)
    if not m:
        if re.match(r"^-?\d+\.\d{3,}$", s):
            raise ValueError(t("Amount %(amount)s has more than two decimal places.", amount=text))
        raise ValueError(t("Amount %(amount)s is not a number.", amount=text or "''"))
    neg, pounds, pence = m.groups()
    value = int(pounds) * 100 + (int((pence or "0").ljust(2, "0")))
    if neg:
        if not allow_negative:
            raise ValueError(t("Amount %(amount)s is negative.", amount=text))
        value = -value
    return value


def parse_date(text: str, fmt: str | None = None) -> date:
    """ISO YYYY-MM-DD or DD/MM/YYYY (or the given strptime format); ValueError otherwise."""
    # a payment file carries few distinct dates: remember the ones already read
    hit = _DATES.get((text, fmt))
    if hit is not None:
        return hit
    d = _parse_date(text, fmt)
    if len(_DATES) >= 4096:
        _DATES.clear()
    _DATES[(text, fmt)] = d
    return d


def _parse_date(text: str, fmt: str | None) -> date:
    s = text.strip()
    try:
        if fmt:
            return datetime.strptime(s, fmt).date()
        if len(s) == 10 and s[4] == "-":
            return date(int(s[0:4]), int(s[5:7]), int(s[8:10]))
        if len(s) == 10 and s[2] == "/" and s[5] == "/":
            return date(int(s[6:10]), int(s[3:5]), int(s[0:2]))
    except ValueError:
        raise ValueError(t("%(date)s is not a real date.", date=text)) from None
    raise ValueError(t("Date %(date)s is not in the form YYYY-MM-DD or DD/MM/YYYY.", date=text or "''"))


def sniff_binary(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if not head.strip(b"\xef\xbb\xbf \r\n\t"):
        raise FileRejected(t("The file is empty."))
    if b"\x00" in head:
        raise FileRejected(t("This is a binary file, not a text payment file."))


def decoded_lines(path: str, state: dict) -> Iterator[str]:
    """Lines of a UTF-8 file (BOM dropped), streaming; a bad byte raises FileRejected naming the line."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FileRejected(t("Line %(line)d is not UTF-8 text (is the file saved as "
                                     "Latin-1/Windows-1252? Save it as UTF-8).", line=n), n) from None
            state["line"] = n
            yield text


def csv_records(reader, state: dict) -> Iterator[tuple[int, list[str]] | LineError]:
    """(line number, record) for each non-blank CSV record; a malformed record ends the file with
    a LineError (the csv module cannot resynchronise after it)."""
    while True:
        start = state["line"] + 1
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield LineError(start, t("Line %(line)d cannot be read as CSV (%(err)s).",
                                     line=start, err=str(exc)))
            return
        if rec and not (len(rec) == 1 and not rec[0].strip()):
            yield start, rec


FORMATS = ("ims_csv", "bank_csv", "camt053", "mt940", "allpay")


def parse_file(fmt: str, path: str, summary: Summary, profile=None,
               method_map: dict[str, str] | None = None) -> Iterator[Row | LineError]:
    """Stream Rows and LineErrors from the file at ``path`` in format ``fmt``."""
    from app.importers import allpay, bank_csv, camt053, ims_csv, mt940_file

    sniff_binary(path)
    if fmt == "ims_csv":
        return ims_csv.parse(path, summary)
    if fmt == "bank_csv":
        if profile is None:
            raise FileRejected(t("Choose the bank's column profile for a bank CSV file."))
        return bank_csv.parse(path, summary, profile)
    if fmt == "camt053":
        return camt053.parse(path, summary)
    if fmt == "mt940":
        return mt940_file.parse(path, summary)
    if fmt == "allpay":
        return allpay.parse(path, summary, method_map)
    raise FileRejected(t("Unknown import format %(fmt)s.", fmt=fmt))
