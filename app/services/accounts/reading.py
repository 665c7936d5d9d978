"""Reading an account-holder file by its profile: CSV or fixed width, line by line, each line
parsed into the fields the IMS keeps (or a message saying why it is bad)."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from app.domain.errors import ValidationError
from app.domain.money import Money
from app.domain.phonetic import _TRAILING, name_key, soundex
from app.models.accounts import FILE_FORMATS, PROFILE_FIELDS, AccountHolderProfile

MAX_REFERENCE = 30
MAX_NAME = 200
MAX_POSTCODE = 10
MAX_STOP = 200
_NO = {"", "N", "NO", "0", "FALSE", "F"}
_YES = {"Y", "YES", "1", "TRUE", "T"}
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?", re.ASCII)
_FIXED = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")
#: the default stop message when the file flags a stop without one
DEFAULT_STOP = "On stop"


class FileRefused(ValidationError):
    """The file as a whole cannot be read: nothing is applied. ``lines`` lists bad lines."""

    def __init__(self, message: str, lines: list[dict] | None = None):
        super().__init__(message, {"file": [message]})
        self.lines = lines or []

    def to_dict(self) -> dict:
        return {"message": self.message, "errors": self.errors, "lines": self.lines}


@dataclass
class Parsed:
    line: int
    reference: str
    name: str | None
    address: str | None
    postcode: str | None
    balance: int | None
    balance_date: date | None
    stop_message: str | None
    phonetic_key: str | None

    def as_tuple(self) -> tuple:
        return (self.line, self.reference, self.name, self.address, self.postcode, self.balance,
                self.balance_date, self.stop_message, self.phonetic_key)


STAGED_COLUMNS = ("line_no", "account_reference", "name", "address", "postcode", "balance",
                  "balance_date", "stop_message", "phonetic_key")


def profile_problems(profile: AccountHolderProfile) -> list[str]:
    """What makes a profile unusable (empty when it is fine)."""
    problems = []
    try:
        mapping = json.loads(profile.columns or "{}")
    except ValueError:
        return ["The column mapping is not valid JSON."]
    if not isinstance(mapping, dict):
        return ["The column mapping must be an object of field: column."]
    unknown = sorted(set(mapping) - set(PROFILE_FIELDS))
    if unknown:
        problems.append(f"Unknown field(s) in the column mapping: {', '.join(unknown)}. "
                        f"Known: {', '.join(PROFILE_FIELDS)}.")
    if not mapping.get("reference"):
        problems.append("The profile maps no column to the account reference.")
    if not (mapping.get("name") or mapping.get("surname")):
        problems.append("The profile maps no column to the name (or surname).")
    if profile.file_format not in FILE_FORMATS:
        problems.append(f"Unknown file format {profile.file_format!r}: csv or fixed.")
    if profile.file_format == "fixed":
        for field, spec in mapping.items():
            m = _FIXED.fullmatch(str(spec))
            if not m or int(m.group(1)) < 1 or int(m.group(2)) < int(m.group(1)):
                problems.append(f"{field}: give a fixed-width column as start-end (1-based), "
                                f"not {spec!r}.")
    elif not profile.has_header:
        for field, spec in mapping.items():
            if not str(spec).isdigit() or int(spec) < 1:
                problems.append(f"{field}: without a header give the column's number (1, 2, …),"
                                f" not {spec!r}.")
    try:
        codecs.lookup(profile.encoding or "")
    except LookupError:
        problems.append(f"Unknown encoding {profile.encoding!r}.")
    try:
        datetime(2026, 12, 31).strftime(profile.date_format or "")
        if not profile.date_format or "%" not in profile.date_format:
            raise ValueError
    except ValueError:
        problems.append(f"Not a date format: {profile.date_format!r} (e.g. %d/%m/%Y).")
    if profile.file_format == "csv" and len(profile.delimiter or "") != 1:
        problems.append("The delimiter must be one character.")
    return problems


def _decoded(stream, encoding: str, progress, start: int = 1) -> Iterator[tuple[int, str]]:
    """The file's lines decoded strictly, numbered from ``start``; a line that does not decode
    refuses the whole file (it is in another encoding)."""
    decoder_name = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    done = 0
    for number, raw in enumerate(stream, start=start):
        done += len(raw)
        if number == 1 and decoder_name == "utf-8-sig" and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRefused(
                f"Line {number} is not valid {encoding} (byte {exc.start + 1}): the file is in "
                f"another encoding than its profile says. Nothing was applied.",
                [{"line": number, "message": f"Line {number}: not valid {encoding}."}]) from None
        if "\x00" in text:
            raise FileRefused(f"Line {number} holds a NUL character: this is not a text file. "
                              f"Nothing was applied.",
                              [{"line": number, "message": f"Line {number}: NUL character."}])
        if progress is not None and number % 2000 == 0:
            progress(done)
        yield number, text
    if progress is not None:
        progress(done)


#: encodings in which a newline byte is only ever a newline (never part of a longer character),
#: so a block of whole lines decodes exactly when each of its lines does
_BLOCK_SAFE = ("ascii", "iso8859-", "cp125", "cp437", "cp850", "mac-roman")
BLOCK = 1 << 20


def _block_safe(encoding: str) -> bool:
    name = codecs.lookup(encoding).name
    return name == "utf-8" or name.startswith(_BLOCK_SAFE)


def _line_blocks(stream, encoding: str, progress) -> Iterator[list[str]]:
    """The same lines as ``_decoded`` (split at each newline byte, kept with their ending), a
    block of about 1 MB at a time, each block decoded at once. A block that does not decode, or
    holds a NUL, is read again line by line for the exact refusal (its line and byte)."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    done = 0
    before = 0  # lines in the blocks already given
    rest = b""
    first = True
    while True:
        data = stream.read(BLOCK)
        if data:
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
        else:
            block, rest = rest, b""
            if not block:
                break
        done += len(block)
        raw, bom = block, False
        if first:
            first = False
            if utf8 and block.startswith(codecs.BOM_UTF8):
                block, bom = block[len(codecs.BOM_UTF8):], True
        try:
            text = block.decode(encoding)
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            for _ in _decoded(io.BytesIO(raw), encoding, None, start=before + 1):
                pass
            raise AssertionError("a block that does not decode has a line that does not")
        parts = text.split("\n")
        last = parts.pop()
        lines = [p + "\n" for p in parts]
        if last or (bom and not text):  # a file of a byte-order mark alone is one empty line
            lines.append(last)
        before += len(lines)
        if progress is not None:
            progress(done)
        yield lines
    if progress is not None:
        progress(done)


class Reader:
    """Iterates (line, staged tuple | error message) over a file by its profile."""

    def __init__(self, profile: AccountHolderProfile):
        problems = profile_problems(profile)
        if problems:
            raise FileRefused("The profile cannot read files: " + " ".join(problems))
        self.profile = profile
        self.mapping = {k: str(v) for k, v in profile.mapping.items() if v not in (None, "")}
        self.stop_flag = "stop" in self.mapping
        self.stop_text = "stop_message" in self.mapping
        self._dates: dict[str, date | None] = {}

    def _date(self, value: str) -> date | None:
        """The date ``value`` spells in the profile's format (None: it does not exist); files
        repeat their dates, so each is parsed once."""
        if value in self._dates:
            return self._dates[value]
        try:
            parsed = datetime.strptime(value, self.profile.date_format).date()
        except ValueError:
            parsed = None
        if len(self._dates) > 50000:
            self._dates.clear()
        self._dates[value] = parsed
        return parsed

    # -- columns -----------------------------------------------------------------------------

    def _csv_positions(self, header: list[str] | None) -> dict[str, int]:
        if not self.profile.has_header:
            return {f: int(spec) - 1 for f, spec in self.mapping.items()}
        names = [h.strip() for h in header]
        index = {}
        for i, h in enumerate(names):
            index.setdefault(h.casefold(), i)
        missing = [spec for spec in self.mapping.values() if spec.strip().casefold() not in index]
        if missing:
            raise FileRefused(f"The file has no column(s) {', '.join(missing)} that the profile "
                              f"maps. Its columns: {', '.join(names)}. Nothing was applied.")
        known = {spec.strip().casefold() for spec in self.mapping.values()}
        known |= {c.strip().casefold() for c in (self.profile.ignored_columns or "").split(",")
                  if c.strip()}
        unknown = [h for h in names if h.casefold() not in known]
        if unknown:
            raise FileRefused(f"Unknown column(s) in the file: {', '.join(unknown)}. Map them "
                              f"in the profile or list them as ignored. Nothing was applied.")
        return {f: index[spec.strip().casefold()] for f, spec in self.mapping.items()}

    def rows(self, stream, progress=None) -> Iterator[tuple[int, tuple | str]]:
        """(line number, the staged tuple (STAGED_COLUMNS) or a message saying why the line is
        bad), line by line."""
        encoding = self.profile.encoding
        if self.profile.file_format == "fixed":
            lines = _decoded(stream, encoding, progress)
            spans = {}
            for f, spec in self.mapping.items():
                a, b = _FIXED.fullmatch(spec).groups()
                spans[f] = (int(a) - 1, int(b))
            first = True
            for number, text in lines:
                text = text.rstrip("\r\n")
                if first and self.profile.has_header:
                    first = False
                    continue
                first = False
                if not text.strip():
                    continue
                raw = {f: text[a:b] for f, (a, b) in spans.items()}
                parsed = self.parse(number, raw)
                yield number, parsed if isinstance(parsed, str) else parsed.as_tuple()
            return
        if _block_safe(encoding):
            lines = itertools.chain.from_iterable(_line_blocks(stream, encoding, progress))
        else:
            lines = (text for _number, text in _decoded(stream, encoding, progress))
        reader = csv.reader(lines, delimiter=self.profile.delimiter, strict=True)
        positions = None
        width = 0
        last_end = 0
        try:
            if self.profile.has_header:
                header = next(reader, None)
                if header is None:
                    raise FileRefused("The file is empty. Nothing was applied.")
                positions = self._csv_positions(header)
                width = len(header)
                last_end = reader.line_num
            else:
                positions = self._csv_positions(None)
                width = max(positions.values()) + 1
            fast = self._fast(positions)
            parse = self.parse
            exact = self.profile.has_header
            for record in reader:
                number, last_end = last_end + 1, reader.line_num
                n = len(record)
                if n == width or (n > width and not exact):
                    row = fast(number, record)
                    if row is not None:
                        yield number, row
                        continue
                if not record or (n == 1 and not record[0].strip()):
                    continue
                if n < width:
                    yield number, (f"Line {number}: {n} column(s), the file has {width}.")
                    continue
                if exact and n > width:
                    yield number, (f"Line {number}: {n} columns, the header has {width}.")
                    continue
                parsed = parse(number, {f: record[i] for f, i in positions.items()})
                yield number, parsed if isinstance(parsed, str) else parsed.as_tuple()
        except csv.Error as exc:
            raise FileRefused(f"Line {reader.line_num}: the CSV cannot be read ({exc}). Nothing "
                              f"was applied.",
                              [{"line": reader.line_num, "message": str(exc)}]) from None

    def _fast(self, positions: dict[str, int]):
        """A parser of one CSV record for lines ``parse`` accepts, giving the same staged tuple
        (tests/unit/test_account_reading.py compares them). It gives None whenever a line is
        anything but plain (a problem, an unusual amount or name): ``parse`` then reads it, with
        its message."""
        get = positions.get
        i_ref = positions["reference"]
        i_name = get("name")
        name_parts = [positions[f] for f in ("title", "forename", "surname") if f in positions]
        i_surname = get("surname")
        i_address = get("address")
        address_parts = [positions[f"address{i}"] for i in range(1, 5) if f"address{i}" in positions]
        i_postcode, i_balance, i_date = get("postcode"), get("balance"), get("balance_date")
        i_stop, i_stop_text = get("stop"), get("stop_message")
        stop_flag, stop_text = self.stop_flag, self.stop_text
        amount, dates, to_date = _AMOUNT.fullmatch, self._dates, self._date
        no, yes = _NO, _YES

        def fast(number, record):
            ref = record[i_ref].strip()
            if not ref or len(ref) > MAX_REFERENCE:
                return None
            name = record[i_name].strip() if i_name is not None else ""
            if not name and name_parts:
                name = " ".join([x for x in [record[i].strip() for i in name_parts] if x])
            name = " ".join(name.split())
            if not name or len(name) > MAX_NAME:
                return None
            if i_address is not None:
                address = record[i_address].strip() or None
            elif address_parts:
                address = ", ".join([x for x in [record[i].strip() for i in address_parts]
                                     if x]) or None
            else:
                address = None
            postcode = None
            if i_postcode is not None:
                postcode = " ".join(record[i_postcode].upper().split()) or None
                if postcode and len(postcode) > MAX_POSTCODE:
                    return None
            balance = None
            if i_balance is not None:
                text = record[i_balance].strip()
                if text:
                    m = amount(text)
                    if m is None or len(m.group(2)) > 13:
                        return None
                    pence = int(m.group(2)) * 100 + int((m.group(3) or "").ljust(2, "0"))
                    balance = -pence if m.group(1) else pence
            balance_date = None
            if i_date is not None:
                text = record[i_date].strip()
                if text:
                    balance_date = dates[text] if text in dates else to_date(text)
                    if balance_date is None:
                        return None
            stop = None
            if stop_flag:
                flag = record[i_stop].strip()
                if flag.upper() not in no:
                    stop = ((record[i_stop_text].strip() if i_stop_text is not None else "")
                            or (DEFAULT_STOP if flag.upper() in yes else flag))
            elif stop_text:
                stop = record[i_stop_text].strip() or None
            if stop and len(stop) > MAX_STOP:
                return None
            surname = record[i_surname].strip() if i_surname is not None else ""
            if surname:
                key = soundex(surname)
            else:
                last = name.rpartition(" ")[2]
                if last.isascii() and last.isalpha() and last.upper() not in _TRAILING:
                    key = soundex(last)  # what name_key finds, without its regular expression
                else:
                    key = name_key(name)
            return (number, ref, name, address, postcode, balance, balance_date, stop, key)

        return fast

    # -- fields ------------------------------------------------------------------------------

    def parse(self, number: int, raw: dict[str, str]) -> Parsed | str:
        problems = []
        v = {f: (s or "").strip() for f, s in raw.items()}
        ref = v.get("reference", "")
        if not ref:
            problems.append("no account reference")
        elif len(ref) > MAX_REFERENCE:
            problems.append(f"the reference is longer than {MAX_REFERENCE} characters")
        if v.get("name"):
            name = v["name"]
        else:
            name = " ".join(x for x in (v.get("title"), v.get("forename"), v.get("surname")) if x)
        name = " ".join(name.split())
        if not name:
            problems.append("no name")
        elif len(name) > MAX_NAME:
            problems.append(f"the name is longer than {MAX_NAME} characters")
        if "address" in v:
            address = v["address"] or None
        else:
            parts = [v.get(f"address{i}") for i in range(1, 5)]
            address = ", ".join(p for p in parts if p) or None
        postcode = " ".join(v.get("postcode", "").upper().split()) or None
        if postcode and len(postcode) > MAX_POSTCODE:
            problems.append(f"the postcode {postcode!r} is longer than {MAX_POSTCODE} characters")
        balance = None
        if v.get("balance"):
            m = _AMOUNT.fullmatch(v["balance"])
            if m and len(m.group(2)) <= 13:
                pence = int(m.group(2)) * 100 + int((m.group(3) or "").ljust(2, "0"))
                balance = -pence if m.group(1) else pence
            else:
                try:
                    balance = Money.parse(v["balance"], "balance", allow_zero=True,
                                          allow_negative=True).pence
                except ValidationError:
                    problems.append(f"the balance {v['balance']!r} is not an amount such as "
                                    f"12.34")
        balance_date = None
        if v.get("balance_date"):
            balance_date = self._date(v["balance_date"])
            if balance_date is None:
                problems.append(f"the date {v['balance_date']!r} does not exist or is not in "
                                f"the format {self.profile.date_format}")
        stop = None
        if self.stop_flag:
            flag = v.get("stop", "")
            if flag.upper() not in _NO:
                stop = v.get("stop_message") or (DEFAULT_STOP if flag.upper() in _YES else flag)
        elif self.stop_text:
            stop = v.get("stop_message") or None
        if stop and len(stop) > MAX_STOP:
            problems.append(f"the stop message is longer than {MAX_STOP} characters")
        if problems:
            return f"Line {number}: " + "; ".join(problems) + "."
        key = soundex(v["surname"]) if v.get("surname") else name_key(name)
        return Parsed(number, ref, name, address, postcode, balance, balance_date, stop, key)
