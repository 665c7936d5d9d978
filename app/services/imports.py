"""Import use cases: receive a file (store, hash, validate it whole), process it (rules, fund,
validation, bulk postings or suspense, in chunks that resume after a crash), reverse it.

Posting writes the ledger's own tables (app/models/ledger.py) with the ledger's conventions —
one posting group per row: receipts Dr BANK / Cr FUND (kind "import", one Transaction per row)
and unmatched money Dr BANK / Cr SUSPENSE (kind "suspense", one SuspenseItem per row) — but in
bulk (multi-row INSERTs), since post_group()/record_income() work one group at a time.
Each committed chunk records the last file line done, so a re-run resumes idempotently. A row's
posting number names the import and the file line (I42-17, S42-18).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import queue
import re
import sqlite3
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, selectinload

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.money import Money, vat_by_fraction, vat_fraction
from app.importers import FORMATS, FileRejected, LineError, Summary, parse_file
from app.importers.allpay import DEFAULT_METHODS
from app.models.imports import BankProfile, FundReferencePattern, ImportBatch, ImportStatusEvent
from app.models.ledger import LedgerLine, NumberSequence, PostingGroup, Transaction
from app.models.reference import Fund, PaymentMethod, VatCode
from app.models.suspense import SuspenseItem
from app.services import audit
from app.services.reference import SUSPENSE_FUND, designated_fund, get_setting
from app.services.rules import RuleSet, load_rules
from app.services.validation import ReferenceCheck, date_outside_window, transaction_date_window

log = logging.getLogger(__name__)

CHUNK = 2500  # rows per committed chunk at most (at least 40 progress steps per file)
#: SQLite: larger chunks (at least 10 progress steps): each commit writes out and syncs the
#: pages the chunk changed, and its one writer cannot overlap commits as PostgreSQL's do
SQLITE_CHUNK, SQLITE_STEPS = 10000, 10
MAX_ERRORS = 500
MAX_DUPLICATES = 500
STALE_AFTER = timedelta(minutes=10)
DEFAULT_METHOD = {"ims_csv": "BACS", "bank_csv": "BACS", "camt053": "BACS", "mt940": "BACS",
                  "allpay": "PO"}
ALLPAY_SETTING = "allpay_payment_types"


class ImportRejected(ValidationError):
    """The file is malformed: nothing was posted. ``lines`` lists {"line","message"}."""

    def __init__(self, message: str, lines: list[dict], import_id: int | None = None):
        super().__init__(message, {"file": [f"Line {e['line']}: {e['message']}" if e["line"]
                                            else e["message"] for e in lines[:50]]})
        self.lines = lines
        self.import_id = import_id

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lines": self.lines, "id": self.import_id}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def storage_dir(instance_path: str) -> str:
    path = os.path.join(instance_path, "imports")
    os.makedirs(path, exist_ok=True)
    return path


def allpay_methods(session: Session) -> dict[str, str]:
    """Payment-type letter -> payment method code (setting "allpay_payment_types", e.g. P=PO,T=PP)."""
    text = get_setting(session, ALLPAY_SETTING)
    if not text:
        return dict(DEFAULT_METHODS)
    out = {}
    for pair in text.split(","):
        k, _, v = pair.partition("=")
        if k.strip() and v.strip():
            out[k.strip().upper()] = v.strip().upper()
    return out or dict(DEFAULT_METHODS)


# ---------------------------------------------------------------------------------------------
# per-row decisions: rules, fund, validation (funds, validators, patterns cached per import)

@dataclass(slots=True)
class Decision:
    line: int
    transaction_date: date | None
    raw_reference: str
    reference: str
    amount: int
    narrative: str | None
    fund_code: str | None
    fund_source: str
    method_code: str
    external_reference: str | None = None
    fired: tuple[str, ...] = ()
    suspense: bool = False
    reasons: tuple[str, ...] = ()  # why the row goes to suspense (empty: it posts)


class _FundInfo:
    """What row decisions need of a fund, read once (no ORM attribute access per row)."""

    __slots__ = ("code", "disabled", "maximum_amount", "account_must_exist", "vat_code",
                 "vat_share", "check")

    def __init__(self, fund: Fund, vat_rates: dict[str, Decimal]):
        self.code = fund.code
        self.disabled = bool(fund.disabled)
        self.maximum_amount = fund.maximum_amount
        self.account_must_exist = bool(fund.account_must_exist)
        self.vat_code = fund.vat_code
        rate = vat_rates.get(fund.vat_code) if fund.vat_code else None
        self.vat_share = vat_fraction(rate) if rate else (0, 1)  # VAT inside a gross amount
        # references repeat across a file (the same council tax account paid many times)
        self.check = ReferenceCheck(fund.validator, memo_size=20000) \
            if fund.validator is not None else None


class _MethodInfo:
    __slots__ = ("code", "minimum_amount", "maximum_amount")

    def __init__(self, method: PaymentMethod):
        self.code = method.code
        self.minimum_amount = method.minimum_amount
        self.maximum_amount = method.maximum_amount


class RowContext:
    """Everything a row needs, loaded once per import: funds with their validator chains
    compiled, payment methods, reference patterns and rules compiled, VAT rates."""

    def __init__(self):
        self.funds: dict[str, _FundInfo] = {}
        self.methods: dict[str, _MethodInfo] = {}
        self.patterns: list[tuple[re.Pattern, str]] = []
        self.rules = RuleSet()
        self.suspense_fund = "SUSP"
        self.vat_rates: dict[str, Decimal] = {}
        self.accounts: dict[tuple[str, str], str | None] = {}
        self.session: Session | None = None

    @classmethod
    def load(cls, session: Session, import_type: str | None) -> "RowContext":
        ctx = cls()
        ctx.session = session
        ctx.vat_rates = {v.code: v.rate for v in session.scalars(select(VatCode))}
        funds = session.scalars(select(Fund).options(selectinload(Fund.validator))).all()
        ctx.funds = {f.code: _FundInfo(f, ctx.vat_rates) for f in funds}
        ctx.methods = {m.code: _MethodInfo(m) for m in session.scalars(select(PaymentMethod))}
        for p in session.scalars(select(FundReferencePattern).where(
                FundReferencePattern.enabled.is_(True)).order_by(
                FundReferencePattern.priority, FundReferencePattern.id)):
            try:
                ctx.patterns.append((re.compile(p.pattern, re.IGNORECASE), p.fund_code))
            except re.error:
                log.warning("fund reference pattern %s is not a valid regex", p.id)
        ctx.rules = load_rules(session, import_type)
        try:
            ctx.suspense_fund = designated_fund(session, SUSPENSE_FUND).code
        except ValidationError:
            ctx.suspense_fund = "SUSP"
        return ctx

    @staticmethod
    def default_method(import_type: str | None) -> str:
        return DEFAULT_METHOD.get(import_type or "", "BACS")

    def decide(self, *, reference: str, amount: int, narrative: str | None,
               fund_code: str | None, method_code: str, line: int = 0,
               transaction_date: date | None = None, external_reference: str | None = None
               ) -> Decision:
        """Rules, then the fund: the row's own code (or a rule's), else the first matching
        reference pattern."""
        if self.rules.rules:
            state = {"reference": reference or "", "amount": amount,
                     "narrative": narrative or "", "fund": fund_code or ""}
            fired = tuple(self.rules.run(state))
            ref_text = state["reference"] or ""
            narrative = state["narrative"] or None
            fund = (state["fund"] or "").strip().upper() or None
        else:
            fired = ()
            ref_text = reference or ""
            narrative = narrative or None
            fund = (fund_code or "").strip().upper() or None
        if fund:
            source = "rule" if fund != (fund_code or None) else "file"
        else:
            source = "none"
            for rx, code in self.patterns:
                if rx.search(ref_text):
                    fund, source = code, "pattern"
                    break
        return Decision(line, transaction_date, reference or "", ref_text.strip().upper(),
                        amount, narrative, fund, source, method_code, external_reference, fired)

    def prefetch_accounts(self, decisions: list[Decision]) -> None:
        """One query per chunk: account holders (and stops) for the chunk's references."""
        refs = {d.reference for d in decisions if d.fund_code and d.reference}
        self.accounts = {}
        if not refs or self.session is None:
            return
        refs_list = list(refs)
        self._fetch_accounts(refs_list)

    def _fetch_accounts(self, refs_list: list[str]) -> None:
        if _is_pg(self.session):
            for fc, ref, stop in _pg_rows(self.session, _PG_ACCOUNTS,
                                             {"refs": _pg_array(refs_list)}):
                self.accounts[(fc, ref)] = stop
            return
        for fc, ref, stop in _in_batches(
                self.session, "SELECT fund_code, account_reference, stop_message "
                "FROM account_holder WHERE account_reference IN ({})", refs_list):
            self.accounts[(fc, ref)] = stop

    def validate(self, d: Decision) -> None:
        """DOMAIN.md reference validation from cached data (all checks); failures -> suspense."""
        reasons: list[str] = []
        amount = d.amount
        if not d.fund_code:
            reasons.append("No fund matches the reference (no fund code, rule or pattern).")
        else:
            fund = self.funds.get(d.fund_code)
            if fund is None:
                reasons.append(f"Unknown fund {d.fund_code}.")
            elif fund.code == self.suspense_fund:
                reasons.append("Directed to suspense.")
            else:
                if fund.disabled:
                    reasons.append(f"Fund {fund.code} is disabled.")
                if fund.maximum_amount is not None and amount > fund.maximum_amount:
                    reasons.append(f"Amount {Money(amount)} is more than the fund maximum "
                                   f"{Money(fund.maximum_amount)}.")
                method = self.methods.get(d.method_code)
                if method is not None:
                    if method.minimum_amount is not None and amount < method.minimum_amount:
                        reasons.append(f"Amount {Money(amount)} is less than the "
                                       f"{method.code} minimum {Money(method.minimum_amount)}.")
                    if method.maximum_amount is not None and amount > method.maximum_amount:
                        reasons.append(f"Amount {Money(amount)} is more than the "
                                       f"{method.code} maximum {Money(method.maximum_amount)}.")
                ref = d.reference
                if not ref:
                    reasons.append("The reference is blank.")
                else:
                    if len(ref) > 30:
                        reasons.append("The reference is longer than 30 characters.")
                    if fund.check is not None:
                        ok, errs = fund.check.check(ref)
                        if not ok:
                            reasons.extend(errs)
                    key = (fund.code, ref)
                    accounts = self.accounts
                    if key not in accounts:
                        if fund.account_must_exist:
                            reasons.append(f"No account {ref} exists in fund {fund.code}.")
                    elif accounts[key]:
                        reasons.append(f"Account on stop: {accounts[key]}")
        if d.method_code not in self.methods:
            reasons.append(f"Unknown payment method {d.method_code}.")
        d.reasons = tuple(reasons)
        d.suspense = bool(reasons)

    def vat_amount(self, fund: _FundInfo, amount: int) -> int:
        """VAT inside the gross amount at the fund's rate (0 without a VAT code)."""
        return vat_by_fraction(amount, *fund.vat_share)


# ---------------------------------------------------------------------------------------------
# receiving a file

def _status(session: Session, batch: ImportBatch, status: str, actor: str,
            message: str | None = None) -> None:
    before = batch.status
    batch.status = status
    session.add(ImportStatusEvent(import_id=batch.id, status=status, actor=actor,
                                  message=(message or "")[:500] or None))
    audit.record(session, "status", "ImportBatch", batch.id, before={"status": before},
                 after={"status": status, "message": message}, actor=actor)


def _errors(items: list[LineError]) -> list[dict]:
    return [{"line": e.line, "message": e.message} for e in items]


def validate_file(session: Session, fmt: str, path: str, profile: BankProfile | None
                  ) -> tuple[list[LineError], int, int, Summary]:
    """The whole-file pass: every line parsed (streaming), errors named by line, no posting.
    A date outside the accepted window (validation.transaction_date_window) is an error of its
    line. The summary gets the file's first and last transaction dates."""
    summary = Summary()
    errors: list[LineError] = []
    rows = total = 0
    first = last = None
    methods = set(session.scalars(select(PaymentMethod.code)))
    window = transaction_date_window()
    try:
        for item in parse_file(fmt, path, summary, profile, allpay_methods(session)):
            if isinstance(item, LineError):
                if len(errors) < MAX_ERRORS:
                    errors.append(item)
                continue
            if item.payment_method_code and item.payment_method_code not in methods:
                if len(errors) < MAX_ERRORS:
                    errors.append(LineError(item.line, f"Line {item.line}: unknown payment method "
                                                       f"{item.payment_method_code}."))
                continue
            if outside := date_outside_window(item.transaction_date, window):
                if len(errors) < MAX_ERRORS:
                    errors.append(LineError(item.line, f"Line {item.line}: {outside}"))
                continue
            rows += 1
            total += item.amount
            d = item.transaction_date
            if first is None or d < first:
                first = d
            if last is None or d > last:
                last = d
    except FileRejected as exc:
        errors.append(LineError(exc.line, exc.message))
    summary.first_date, summary.last_date = first, last
    return errors, rows, total, summary


def receive_import(session: Session, *, stream, filename: str, fmt: str, actor: str,
                   instance_path: str, max_bytes: int, profile: str | int | None = None,
                   office_code: str | None = "BANK") -> ImportBatch:
    """Store and check an uploaded file. Returns the batch, status "received" (queued).

    ValidationError (422) for a bad format/profile or a file over the size limit; ImportRejected
    (422, naming lines) for malformed content — the batch is kept as "failed"; Conflict (409) for
    a file already imported.
    """
    if fmt not in FORMATS:
        raise ValidationError(f"Unknown format {fmt!r}.",
                              {"format": [f"Use one of {', '.join(FORMATS)}."]})
    prof = None
    if fmt == "bank_csv":
        if profile in (None, ""):
            raise ValidationError("A bank CSV needs the bank's column profile.",
                                  {"profile": ["Choose a bank profile."]})
        q = select(BankProfile)
        prof = session.scalar(q.where(BankProfile.id == int(profile)) if str(profile).isdigit()
                              else q.where(BankProfile.name == str(profile)))
        if prof is None:
            raise ValidationError("Unknown bank profile.", {"profile": ["Unknown bank profile."]})
    folder = storage_dir(instance_path)
    tmp = os.path.join(folder, f"upload-{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(
                        f"The file is larger than the limit of {max_bytes // (1024 * 1024)} MB "
                        f"({max_bytes} bytes).", {"file": ["The file is too large."]})
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    sha = digest.hexdigest()
    if size == 0:
        os.remove(tmp)
        raise ImportRejected("The file is empty.", [{"line": None, "message": "The file is empty."}])
    existing = session.scalar(select(ImportBatch).where(ImportBatch.active_sha256 == sha))
    if existing is not None:
        os.remove(tmp)
        raise Conflict(f"This file was already imported (import {existing.id}, "
                       f"{existing.filename}).", {"file": ["Duplicate file."]})
    errors, rows, total, summary = validate_file(session, fmt, tmp, prof)
    batch = ImportBatch(format=fmt, profile_id=prof.id if prof else None,
                        filename=(filename or "upload")[:255], sha256=sha,
                        active_sha256=None if errors else sha, size_bytes=size,
                        status="received", rows_total=rows, total_amount=total,
                        control_total=summary.control, created_by=actor, office_code=office_code,
                        first_date=summary.first_date, last_date=summary.last_date,
                        errors_json=json.dumps(_errors(errors)))
    session.add(batch)
    session.flush()
    session.add(ImportStatusEvent(import_id=batch.id, status="received", actor=actor,
                                  message=f"{size} bytes, sha256 {sha[:12]}…"))
    audit.record(session, "receive", "ImportBatch", batch.id, after={
        "format": fmt, "filename": batch.filename, "sha256": sha, "rows": rows,
        "total": str(Money(total))}, actor=actor)
    if errors:
        os.remove(tmp)
        _status(session, batch, "failed", actor, f"{len(errors)} error(s); nothing posted")
        batch.finished_at = _now()
        session.commit()
        raise ImportRejected(f"The file has {len(errors)} error(s); nothing was posted.",
                             _errors(errors), batch.id)
    final = os.path.join(folder, f"{batch.id}-{sha[:16]}.dat")
    os.replace(tmp, final)
    batch.stored_path = final
    try:
        session.commit()
    except Exception:
        session.rollback()
        if os.path.exists(final):
            os.remove(final)
        if session.scalar(select(ImportBatch.id).where(ImportBatch.active_sha256 == sha)):
            raise Conflict("This file was already imported.", {"file": ["Duplicate file."]}) from None
        raise
    return batch


# ---------------------------------------------------------------------------------------------
# processing

def _claim(session: Session, batch_id: int, actor: str) -> ImportBatch | None:
    """Atomically take a queued (or stale, crashed) batch; None if someone else has it."""
    now = _now()
    stale = now - STALE_AFTER
    t = ImportBatch.__table__
    res = session.execute(update(t).where(t.c.id == batch_id).where(
        (t.c.status == "received") | ((t.c.status == "processing") & (
            (t.c.heartbeat_at.is_(None)) | (t.c.heartbeat_at < stale))))
        .values(status="processing", heartbeat_at=now, started_at=func.coalesce(t.c.started_at, now)))
    if res.rowcount != 1:
        session.rollback()
        return None
    batch = session.get(ImportBatch, batch_id)
    session.refresh(batch)
    session.add(ImportStatusEvent(import_id=batch.id, status="processing", actor=actor,
                                  message="resumed after line %d" % batch.last_line_done
                                  if batch.last_line_done else None))
    audit.record(session, "status", "ImportBatch", batch.id, before={"status": "received"},
                 after={"status": "processing"}, actor=actor)
    session.commit()
    return batch


def _allocate_numbers(session: Session, prefix: str, n: int) -> int:
    """Reserve n consecutive numbers for prefix (the ledger's NumberSequence); returns the first."""
    table = NumberSequence.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(prefix=prefix, last_value=n).on_conflict_do_update(
            index_elements=[table.c.prefix], set_={"last_value": table.c.last_value + n})
        last = session.execute(stmt.returning(table.c.last_value)).scalar_one()
    else:
        last = session.execute(update(table).where(table.c.prefix == prefix).values(
            last_value=table.c.last_value + n).returning(table.c.last_value)).scalar()
        if last is None:
            session.execute(table.insert().values(prefix=prefix, last_value=n))
            last = n
    return last - n + 1


def _reserve_ids(session: Session, table, n: int) -> list[int]:
    """n fresh primary keys for table, so rows can be bulk-inserted without RETURNING.

    PostgreSQL: from the column's sequence. SQLite: after max(id); the caller has already
    written in this transaction, so it holds SQLite's single write lock.
    """
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(text(
            "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n}).scalars())
    top = session.execute(select(func.max(table.c.id))).scalar() or 0
    return list(range(top + 1, top + n + 1))


_PROCESSORS: dict = {}


def _bulk_insert(session: Session, table, rows: list[dict]) -> None:
    """executemany straight to the driver (no per-row SQLAlchemy parameter building).

    Values pass through each column type's bind processor (dates and UTC datetimes on SQLite)
    so what lands is exactly what the ORM would have written.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    cols = list(rows[0].keys())
    key = (table.name, dialect.name, tuple(cols))
    if key not in _PROCESSORS:
        procs = [table.c[c].type._cached_bind_processor(dialect) for c in cols]
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {table.name} ({', '.join(cols)}) "
               f"VALUES ({', '.join([mark] * len(cols))})")
        _PROCESSORS[key] = (sql, [(i, p) for i, p in enumerate(procs) if p is not None])
    sql, procs = _PROCESSORS[key]
    if dialect.name == "postgresql":
        # COPY: one round trip for the whole chunk, inside the session's transaction
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(
                f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                values = [r[c] for c in cols]
                for i, p in procs:
                    if values[i] is not None:
                        values[i] = p(values[i])
                copy.write_row(values)
        return
    data = []
    for r in rows:
        values = [r[c] for c in cols]
        for i, p in procs:
            if values[i] is not None:
                values[i] = p(values[i])
        data.append(tuple(values))
    conn.exec_driver_sql(sql, data)


def _find_duplicates(session: Session, batch_id: int, decisions: list[Decision]) -> list[dict]:
    """Rows whose date+reference+amount was imported earlier (by another import)."""
    if not decisions or not _earlier_imports_cover(
            session, batch_id, min(d.transaction_date for d in decisions),
            max(d.transaction_date for d in decisions)):
        return []
    tx_keys = {(d.transaction_date, d.reference[:30], d.amount) for d in decisions if d.reference}
    raw_keys = {(d.transaction_date, d.raw_reference.strip()[:200], d.amount) for d in decisions}
    found: set[tuple] = set()
    _collect_duplicates(session, batch_id, tx_keys, raw_keys, found)
    if not found:
        return []
    keys: dict[tuple, list[Decision]] = {}
    for d in decisions:
        keys.setdefault((d.transaction_date, d.reference[:30], d.amount), []).append(d)
        keys.setdefault((d.transaction_date, d.raw_reference.strip()[:200], d.amount), []).append(d)
    out, seen = [], set()
    for (d_, r_, a_, imp) in found:
        for d in keys.get((d_, r_, a_), []):
            if d.line not in seen:
                seen.add(d.line)
                out.append({"line": d.line, "message": f"Possible duplicate: {d_} {r_} "
                            f"£{Money(a_)} was imported before (import {imp})."})
    return sorted(out, key=lambda x: x["line"])


def _earlier_imports_cover(session: Session, batch_id: int, first: date, last: date) -> bool:
    """Whether another import that has posted rows may hold these dates (an import received
    before its dates were recorded counts as covering every date)."""
    t = ImportBatch.__table__
    return session.execute(select(t.c.id).where(
        t.c.id != batch_id, t.c.rows_done > 0,
        t.c.first_date.is_(None) | ((t.c.first_date <= last) & (t.c.last_date >= first)))
        .limit(1)).first() is not None


# PostgreSQL look-ups by the chunk's references: arrays joined with unnest(), run unprepared
# (see _pg_rows). An IN list of 900 bind parameters would, once prepared, get a generic plan that
# compares every row with every parameter.
# Possible duplicates: one probe of the (reference, date, amount) index per key. By reference
# alone, a reference paid often (council tax, every month) fetches all its earlier payments for
# every chunk. OFFSET 0 keeps the probe per key: flattened into a join, PostgreSQL may prefer a
# full scan of the table for every chunk when earlier imports are few.
_PG_DUP_TX = (
    "SELECT x.transaction_date, x.account_reference, x.amount, x.import_id "
    "FROM unnest(CAST(%(dates)s AS date[]), CAST(%(refs)s AS varchar[]), "
    "CAST(%(amounts)s AS bigint[])) AS k(d, ref, amount) CROSS JOIN LATERAL ("
    "SELECT t.transaction_date, t.account_reference, t.amount, t.import_id "
    "FROM income_transaction t WHERE t.account_reference = k.ref "
    "AND t.transaction_date = k.d AND t.amount = k.amount OFFSET 0) AS x "
    "WHERE x.import_id IS NOT NULL AND x.import_id <> %(bid)s")
_PG_DUP_SUSP = (
    "SELECT x.transaction_date, x.reference_text, x.amount, x.import_id "
    "FROM unnest(CAST(%(dates)s AS date[]), CAST(%(refs)s AS varchar[]), "
    "CAST(%(amounts)s AS bigint[])) AS k(d, ref, amount) CROSS JOIN LATERAL ("
    "SELECT s.transaction_date, s.reference_text, s.amount, s.import_id "
    "FROM suspense_item s WHERE s.reference_text = k.ref "
    "AND s.transaction_date = k.d AND s.amount = k.amount OFFSET 0) AS x "
    "WHERE x.import_id IS NOT NULL AND x.import_id <> %(bid)s")
_PG_ACCOUNTS = (
    "SELECT a.fund_code, a.account_reference, a.stop_message "
    "FROM account_holder a JOIN unnest(CAST(%(refs)s AS varchar[])) AS r(ref) "
    "ON a.account_reference = r.ref")


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _pg_array(values) -> str:
    """A PostgreSQL array literal of text values, for CAST(... AS varchar[]): built in one
    join, where psycopg's list adapter works element by element."""
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') if ('"' in v or "\\" in v) else v
              for v in values]
    return '{"' + '","'.join(quoted) + '"}' if quoted else "{}"


def _pg_rows(session: Session, sql: str, params: dict) -> list[tuple]:
    """Run a query on the session's psycopg connection (its transaction) unprepared, so it is
    planned for these parameter values every time. psycopg prepares a statement run 5+ times,
    and PostgreSQL may then keep a generic plan made while the tables were small (full scans
    per reference, seconds a chunk). Scoped to these queries: forcing custom plans for the
    whole transaction would re-plan every foreign-key and balance-trigger check as well."""
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute(sql, params, prepare=False)
        return cur.fetchall()


def _collect_duplicates(session, batch_id, tx_keys, raw_keys, found) -> None:
    """Earlier imports' transactions matching tx_keys and suspense items matching raw_keys,
    as (date, reference, amount, import id); keys are (date, reference, amount)."""
    if _is_pg(session):
        for sql, keys in ((_PG_DUP_TX, tx_keys), (_PG_DUP_SUSP, raw_keys)):
            if keys:
                dates, refs, amounts = zip(*keys, strict=True)
                iso = {d: d.isoformat() for d in set(dates)}
                params = {"dates": "{" + ",".join([iso[d] for d in dates]) + "}",
                          "refs": _pg_array(refs), "amounts": "{" + ",".join(map(str, amounts)) + "}",
                          "bid": batch_id}
                for row in _pg_rows(session, sql, params):
                    found.add(tuple(row))
        return
    # SQLite keeps dates as text: keys go in as stored, rows come back as the ORM reads them
    date_type = Transaction.__table__.c.transaction_date.type
    dialect = session.get_bind().dialect
    stored = date_type._cached_bind_processor(dialect) or (lambda v: v)
    to_date = date_type._cached_result_processor(dialect, None) or (lambda v: v)
    conn = session.connection()
    for sql, keys in ((_DUP_TX, tx_keys), (_DUP_SUSP, raw_keys)):
        keys = list(keys)
        for i in range(0, len(keys), 300):
            part = keys[i:i + 300]
            params = [v for d, ref, amount in part for v in (ref, stored(d), amount)]
            values = ", ".join(["(?, ?, ?)"] * len(part))
            for d, ref, amount, imp in conn.exec_driver_sql(sql.format(values),
                                                            (*params, batch_id)):
                found.add((to_date(d), ref, amount, imp))


# SQLite: a join with the keys (a row-value IN list would scan the whole table)
_DUP_TX = ("SELECT t.transaction_date, t.account_reference, t.amount, t.import_id "
           "FROM (VALUES {}) AS k JOIN income_transaction t ON t.account_reference = k.column1 "
           "AND t.transaction_date = k.column2 AND t.amount = k.column3 "
           "WHERE t.import_id IS NOT NULL AND t.import_id <> ?")
_DUP_SUSP = ("SELECT s.transaction_date, s.reference_text, s.amount, s.import_id "
             "FROM (VALUES {}) AS k JOIN suspense_item s ON s.reference_text = k.column1 "
             "AND s.transaction_date = k.column2 AND s.amount = k.column3 "
             "WHERE s.import_id IS NOT NULL AND s.import_id <> ?")


def _in_batches(session: Session, sql: str, values: list, extra: tuple = ()) -> list[tuple]:
    """SQLite: rows of ``sql`` with its IN ({}) list filled from ``values``, 900 at a time, run
    on the driver (no statement compiled per batch of references)."""
    conn = session.connection()
    out = []
    for i in range(0, len(values), 900):
        part = values[i:i + 900]
        out.extend(conn.exec_driver_sql(sql.format(", ".join("?" * len(part))),
                                        (*part, *extra)).all())
    return out


@dataclass(frozen=True, slots=True)
class _BatchInfo:
    """What posting needs of the batch (a writer thread has no ORM copy of it)."""
    id: int
    office_code: str | None


@dataclass(frozen=True, slots=True)
class _Staged:
    """A chunk ready to write, built by the thread that parses, so that a writer thread only
    talks to the database: one row per file line, as _STAGE_COLUMNS (posted rows first, then
    suspense) — tuples for PostgreSQL's COPY; for SQLite, flat value lists (_sqlite_values)."""
    rows: list[tuple] | tuple[list, list, list]
    n: int
    first_line: int
    last_line: int
    counts: tuple[int, int, int, int]  # rows posted, rows to suspense, their amounts


def _stage(session: Session, batch: _BatchInfo, ctx: RowContext,
           decisions: list[Decision]) -> _Staged:
    posted = [d for d in decisions if not d.suspense]
    held = [d for d in decisions if d.suspense]
    rows = list(_stage_rows(ctx, batch.id, posted, held))
    if not _is_pg(session):
        rows = _sqlite_values(session, rows)
    return _Staged(rows, len(decisions), decisions[0].line, decisions[-1].line,
                   (len(posted), len(held), sum(d.amount for d in posted),
                    sum(d.amount for d in held)))


def _post_chunk(session: Session, batch: _BatchInfo, ctx: RowContext, staged: _Staged,
                actor: str) -> None:
    """Insert the chunk's posting groups, transactions, ledger lines and suspense items."""
    if _is_pg(session):
        _post_chunk_pg(session, batch, ctx, staged, _now(), actor)
    else:
        _post_chunk_rows(session, batch, ctx, staged, _now(), actor)


def _stage_rows(ctx: RowContext, import_id: int, posted: list[Decision], held: list[Decision]):
    """One tuple per row, as _STAGE_COLUMNS: what its posting group, transaction or suspense
    item and ledger lines need (posted rows first, then suspense, each in file order).

    A row's posting number is I (receipt) or S (suspense), the import and the file line, e.g.
    I42-1017: unique without a shared counter, and it says where the money came from."""
    funds = ctx.funds
    prefix_i, prefix_s = f"I{import_id}-", f"S{import_id}-"
    for d in posted:
        fund = funds[d.fund_code]
        yield (d.line, False, f"{prefix_i}{d.line}", d.fund_code, d.reference, d.amount,
               fund.vat_code, ctx.vat_amount(fund, d.amount), d.method_code,
               (d.narrative or "")[:500] or None, d.transaction_date,
               (d.external_reference or "")[:100] or None, None, None)
    for d in held:
        yield (d.line, True, f"{prefix_s}{d.line}", d.fund_code if d.fund_code in funds else None,
               None, d.amount, None, 0, None, d.narrative, d.transaction_date, None,
               d.raw_reference.strip()[:200], "; ".join(d.reasons)[:500])


_STAGE_COLUMNS = ("line", "held", "number", "fund_code", "account_reference", "amount",
                  "vat_code", "vat_amount", "payment_method_code", "narrative",
                  "transaction_date", "external_reference", "reference_text", "reason")
_PG_STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS ims_import_row (
        line integer NOT NULL, held boolean NOT NULL, number varchar(20) NOT NULL,
        fund_code varchar(10), account_reference varchar(30), amount bigint NOT NULL,
        vat_code varchar(10), vat_amount bigint NOT NULL, payment_method_code varchar(10),
        narrative text, transaction_date date NOT NULL, external_reference varchar(100),
        reference_text varchar(200), reason varchar(500)
    ) ON COMMIT DELETE ROWS"""
# One statement writes the chunk from the staged rows: posting groups (ids from the table's own
# sequence, in file order: posted rows, then suspense), receipts Dr BANK / Cr FUND with one
# income_transaction each, unmatched money Dr BANK / Cr SUSPENSE with one suspense_item each.
_PG_POST = """
    WITH g AS (
        INSERT INTO posting_group (kind, number, created_at, created_by, office_code, import_id)
        SELECT CASE WHEN held THEN 'suspense' ELSE 'import' END, number,
               %(now)s, %(actor)s, %(office)s, %(bid)s
        FROM ims_import_row ORDER BY held, line
        RETURNING id, number
    ), r AS MATERIALIZED (
        SELECT s.*, g.id AS group_id FROM ims_import_row s JOIN g ON g.number = s.number
    ), t AS (
        INSERT INTO income_transaction (receipt_number, fund_code, account_reference, amount,
            vat_code, vat_amount, payment_method_code, narrative, transaction_date,
            external_reference, office_code, created_by, created_at, import_id, posting_group_id)
        SELECT number, fund_code, account_reference, amount, vat_code, vat_amount,
               payment_method_code, narrative, transaction_date, external_reference,
               %(office)s, %(actor)s, %(now)s, %(bid)s, group_id
        FROM r WHERE NOT held ORDER BY line
        RETURNING id, posting_group_id
    ), si AS (
        INSERT INTO suspense_item (amount, reference_text, narrative, reason, fund_code,
            transaction_date, import_id, line_number, posting_group_id, status, created_at)
        SELECT amount, reference_text, narrative, reason, fund_code, transaction_date,
               %(bid)s, line, group_id, 'unallocated', %(now)s
        FROM r WHERE held ORDER BY line
    )
    INSERT INTO ledger_line (group_id, account, fund_code, account_reference, amount,
                             transaction_id)
    SELECT r.group_id, v.account, v.fund_code, v.account_reference, v.amount, v.transaction_id
    FROM r LEFT JOIN t ON t.posting_group_id = r.group_id
    CROSS JOIN LATERAL (VALUES
        (1, 'BANK', NULL, NULL, r.amount, NULL::integer),
        (2, CASE WHEN r.held THEN 'SUSPENSE' ELSE 'FUND' END,
            CASE WHEN r.held THEN CAST(%(suspense_fund)s AS varchar) ELSE r.fund_code END,
            CASE WHEN r.held THEN NULL ELSE r.account_reference END, -r.amount, t.id)
    ) AS v(k, account, fund_code, account_reference, amount, transaction_id)
    ORDER BY r.held, r.line, v.k"""


def _post_chunk_pg(session, batch, ctx, staged, now, actor) -> None:
    """PostgreSQL: COPY the chunk's rows into a temporary table (one row per file line), then
    write every ledger table from it in one statement. The ledger's trigger checks, at the end
    of that statement, that every posting group balances."""
    params = {"now": now, "actor": actor, "office": batch.office_code, "bid": batch.id,
              "suspense_fund": ctx.suspense_fund}
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute(_PG_STAGE)
        with cur.copy(f"COPY ims_import_row ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as copy:
            for row in staged.rows:
                copy.write_row(row)
        cur.execute(_PG_POST, params, prepare=False)
        expected = 2 * staged.n
        if cur.rowcount != expected:
            raise ValidationError(f"Internal error: {cur.rowcount} ledger lines written for "
                                  f"{expected}.")


def _sqlite_values(session: Session, rows: list[tuple]) -> tuple[list, list, list]:
    """SQLite: the staged rows as the flat VALUES lists of _SQLITE_GROUPS, _SQLITE_TX and
    _SQLITE_SUSPENSE (one value per placeholder), seq being the row's place in the chunk.
    Dates as SQLite keeps them (text), converted once per date."""
    to_text = Transaction.__table__.c.transaction_date.type._cached_bind_processor(
        session.get_bind().dialect) or (lambda v: v)
    dates: dict = {}
    groups: list = []
    txs: list = []
    held: list = []
    for seq, (line, is_held, number, fund, ref, amount, vat_code, vat, method, narrative, d,
              ext, ref_text, reason) in enumerate(rows):
        sd = dates.get(d)
        if sd is None:
            sd = dates[d] = to_text(d)
        if is_held:
            groups += (seq, "suspense", number)
            held += (seq, amount, ref_text, narrative, reason, fund, sd, line)
        else:
            groups += (seq, "import", number)
            txs += (seq, number, fund, ref, amount, vat_code, vat, method, narrative, sd, ext)
    return groups, txs, held


# The same postings as _PG_POST, on SQLite: multi-row VALUES (bound in C, one step, so one GIL
# release per statement), ids after the tables' max(id) read under the write lock (posted rows
# come first: a posted row's transaction id is tbase + seq). Constants are bound once, before
# the VALUES (positional parameters number in the order they appear).
_SQLITE_GROUPS = (3, "INSERT INTO posting_group (id, kind, number, created_at, created_by, "
                     "office_code, import_id) SELECT ? + column1, column2, column3, ?, ?, ?, ? "
                     "FROM (VALUES {})")
_SQLITE_TX = (11, "INSERT INTO income_transaction (id, posting_group_id, receipt_number, "
                  "fund_code, account_reference, amount, vat_code, vat_amount, "
                  "payment_method_code, narrative, transaction_date, external_reference, "
                  "office_code, created_by, created_at, import_id) "
                  "SELECT ? + column1, ? + column1, column2, column3, column4, column5, column6, "
                  "column7, column8, column9, column10, column11, ?, ?, ?, ? FROM (VALUES {})")
_SQLITE_SUSPENSE = (8, "INSERT INTO suspense_item (id, posting_group_id, amount, reference_text, "
                       "narrative, reason, fund_code, transaction_date, line_number, import_id, "
                       "status, created_at) SELECT ? + column1, ? + column1, column2, column3, "
                       "column4, column5, column6, column7, column8, ?, 'unallocated', ? "
                       "FROM (VALUES {})")
# Ledger lines from the rows just written (a range of ids): the chunk's BANK lines, then its FUND
# (or SUSPENSE) lines, each in id order, so that each group's debit comes before its credit with
# no sort (one statement interleaving them sorted every pair of lines)
_LINES = ("INSERT INTO ledger_line (group_id, account, fund_code, account_reference, amount, "
          "transaction_id) SELECT posting_group_id, {} FROM {} WHERE id BETWEEN ? AND ? "
          "ORDER BY id")
_SQLITE_TX_LINES = (
    _LINES.format("'BANK', NULL, NULL, amount, NULL", "income_transaction"),
    _LINES.format("'FUND', fund_code, account_reference, -amount, id", "income_transaction"))
_SQLITE_SUSPENSE_LINES = (
    _LINES.format("'BANK', NULL, NULL, amount, NULL", "suspense_item"),
    _LINES.format("'SUSPENSE', ?, NULL, -amount, NULL", "suspense_item"))
# Takes SQLite's write lock first, then reads where the chunk's ids start: one statement
# (UPDATE ... RETURNING, which ledger.next_number relies on as well), so one round trip
_SQLITE_LOCK = ("UPDATE import_batch SET heartbeat_at = ? WHERE id = ? RETURNING "
                "(SELECT coalesce(max(id), 0) FROM posting_group), "
                "(SELECT coalesce(max(id), 0) FROM income_transaction), "
                "(SELECT coalesce(max(id), 0) FROM suspense_item)")
_SQLITE_BALANCE = ("SELECT coalesce(sum(amount), 0), count(*) FROM ledger_line "
                   "WHERE group_id BETWEEN ? AND ?")


#: SQLite: rows per multi-row VALUES statement at most. Every statement of a table has this many
#: rows (the last padded with NULL rows, which the insert skips), so each table has one statement
#: text: the driver caches prepared statements by text, and one per chunk size would keep
#: hundreds of large statements in memory over a big file.
SQLITE_ROWS_PER_STATEMENT = 2000


@functools.cache
def _sqlite_insert(sql: str, width: int, n: int) -> str:
    return sql.format(", ".join(["(" + ", ".join("?" * width) + ")"] * n)) + \
        " WHERE column1 IS NOT NULL"


def _sqlite_insert_values(cur, statement: tuple[int, str], values: list, consts: tuple) -> None:
    """Run a multi-row VALUES insert over ``values`` (``width`` values a row), in statements of
    one size: as many rows as SQLite's limit on bound parameters allows, at most
    SQLITE_ROWS_PER_STATEMENT."""
    width, sql = statement
    getlimit = getattr(cur.connection, "getlimit", None)  # Python 3.11+
    limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999
    per = min((limit - len(consts)) // width, SQLITE_ROWS_PER_STATEMENT)
    stmt = _sqlite_insert(sql, width, per)
    size = per * width
    for i in range(0, len(values), size):
        part = values[i:i + size]
        if len(part) < size:
            part = part + [None] * (size - len(part))
        cur.execute(stmt, (*consts, *part))


def _post_chunk_rows(session, batch, ctx, staged, now, actor) -> None:
    """Other databases (SQLite): the chunk's rows go straight into the ledger tables in a few
    statements, run on the driver: sqlite3 releases the GIL while SQLite works, and each
    statement's return waits for the GIL again while the parsing thread runs."""
    conn = session.connection()
    stamp = Transaction.__table__.c.created_at.type._cached_bind_processor(conn.dialect)
    now = stamp(now) if stamp else now
    groups, txs, held = staged.rows
    n_posted = staged.counts[0]
    cur = conn.connection.dbapi_connection.cursor()
    try:
        gbase, tbase, sbase = cur.execute(_SQLITE_LOCK, (now, batch.id)).fetchone()
        gbase, tbase, sbase = gbase + 1, tbase + 1, sbase + 1
        office = batch.office_code
        _sqlite_insert_values(cur, _SQLITE_GROUPS, groups, (gbase, now, actor, office, batch.id))
        _sqlite_insert_values(cur, _SQLITE_TX, txs, (tbase, gbase, office, actor, now, batch.id))
        _sqlite_insert_values(cur, _SQLITE_SUSPENSE, held,
                              (sbase - n_posted, gbase, batch.id, now))
        if n_posted:
            ids = (tbase, tbase + n_posted - 1)
            cur.execute(_SQLITE_TX_LINES[0], ids)
            cur.execute(_SQLITE_TX_LINES[1], ids)
        if staged.n > n_posted:
            ids = (sbase, sbase + staged.n - n_posted - 1)
            cur.execute(_SQLITE_SUSPENSE_LINES[0], ids)
            cur.execute(_SQLITE_SUSPENSE_LINES[1], (ctx.suspense_fund, *ids))
        # no deferred trigger on SQLite: check here that the chunk's groups balance
        net, count = cur.execute(_SQLITE_BALANCE, (gbase, gbase + staged.n - 1)).fetchone()
    finally:
        cur.close()
    if net != 0 or count != 2 * staged.n:
        raise ValidationError("Internal error: the import postings do not balance.")


def process_import(session: Session, batch_id: int, *, actor: str | None = None,
                   chunk_size: int | None = None, fail_after_chunks: int | None = None
                   ) -> ImportBatch:
    """Post a received import. Safe to call again after a crash: it resumes after the last
    committed line. ``fail_after_chunks`` simulates a crash (tests)."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    actor = actor or batch.created_by
    batch = _claim(session, batch_id, actor)
    if batch is None:
        return session.get(ImportBatch, batch_id)
    if chunk_size is None:
        most, steps = (CHUNK, 40) if _is_pg(session) else (SQLITE_CHUNK, SQLITE_STEPS)
        chunk_size = min(most, max(200, batch.rows_total // steps))
    try:
        _run(session, batch, actor, chunk_size, fail_after_chunks)
    except _SimulatedCrash:
        session.rollback()
        raise
    except Exception as exc:
        session.rollback()
        log.exception("import %s failed", batch_id)
        batch = session.get(ImportBatch, batch_id)
        errs = json.loads(batch.errors_json or "[]")
        msg = exc.message if hasattr(exc, "message") else f"{type(exc).__name__}: {exc}"
        errs.append({"line": None, "message": f"Processing stopped: {msg[:300]}"})
        batch.errors_json = json.dumps(errs)
        batch.heartbeat_at = None
        if batch.rows_done == 0:
            batch.active_sha256 = None  # nothing posted: the file may be uploaded again
        _status(session, batch, "failed", actor, msg[:300] + (
            f" (posted through line {batch.last_line_done}; run again to resume)"
            if batch.rows_done else " (nothing posted)"))
        batch.finished_at = _now()
        session.commit()
    return session.get(ImportBatch, batch_id)


def _run(session: Session, batch: ImportBatch, actor: str, chunk_size: int,
         fail_after_chunks: int | None) -> None:
    ctx = RowContext.load(session, batch.format)
    profile = session.get(BankProfile, batch.profile_id) if batch.profile_id else None
    summary = Summary()
    default_method = ctx.default_method(batch.format)
    info = _BatchInfo(batch.id, batch.office_code)
    rows_left = _rows_after(parse_file(batch.format, batch.stored_path, summary, profile,
                                       allpay_methods(session)), batch.last_line_done)

    def next_chunk() -> list[Decision]:
        """The next chunk's rows with rules and fund applied (pure Python, no database)."""
        decide = ctx.decide
        return [decide(reference=r.reference, amount=r.amount, narrative=r.narrative,
                       fund_code=r.fund_code, method_code=r.payment_method_code or default_method,
                       line=r.line, transaction_date=r.transaction_date,
                       external_reference=r.external_reference)
                for r in islice(rows_left, chunk_size)]

    def checked(decisions: list[Decision]) -> tuple[_Staged, list[dict]]:
        """Validate the chunk's rows (failures go to suspense) and stage them; its possible
        duplicates."""
        ctx.prefetch_accounts(decisions)
        for d in decisions:
            ctx.validate(d)
        dups = _find_duplicates(session, info.id, decisions)
        return _stage(session, info, ctx, decisions), dups

    _write_in_parallel(session, info, ctx, actor, next_chunk, checked, fail_after_chunks)
    session.rollback()  # end the look-ups' transaction; the writers' progress is read afresh
    b = session.get(ImportBatch, info.id)
    if b.rows_done and b.rows_posted + b.rows_suspense != b.rows_total:
        raise ValidationError(f"Rows processed ({b.rows_posted + b.rows_suspense}) differ from "
                              f"rows checked ({b.rows_total}).")
    if b.posted_amount + b.suspense_amount != b.total_amount:
        raise ValidationError("The amounts posted differ from the file's total.")
    b.heartbeat_at = None
    b.finished_at = _now()
    _status(session, b, "succeeded", actor,
            f"{b.rows_posted} posted, {b.rows_suspense} to suspense, £{Money(b.total_amount)}")
    session.commit()


def _record_chunk(session: Session, batch_id: int, staged: _Staged, dups: list[dict],
                  actor: str) -> None:
    """The batch's progress after a chunk, and its audit event, in the chunk's transaction (so
    the progress is exactly what has been posted, and a re-run resumes after it)."""
    n_posted, n_held, p_amt, s_amt = staged.counts
    t = ImportBatch.__table__
    values = {"rows_done": t.c.rows_done + staged.n, "rows_posted": t.c.rows_posted + n_posted,
              "rows_suspense": t.c.rows_suspense + n_held,
              "posted_amount": t.c.posted_amount + p_amt,
              "suspense_amount": t.c.suspense_amount + s_amt,
              "last_line_done": staged.last_line, "heartbeat_at": _now()}
    if dups:
        old = session.execute(select(t.c.duplicates_json).where(t.c.id == batch_id)).scalar()
        values["rows_duplicate"] = t.c.rows_duplicate + len(dups)
        values["duplicates_json"] = json.dumps((json.loads(old or "[]") + dups)[:MAX_DUPLICATES])
    session.execute(update(t).where(t.c.id == batch_id).values(**values))
    audit.record(session, "post", "ImportBatch", batch_id, after={
        "lines": f"{staged.first_line}-{staged.last_line}", "posted": n_posted,
        "to_suspense": n_held, "amount": str(Money(p_amt + s_amt))}, actor=actor)


#: PostgreSQL: connections writing chunks at once. The server's work per row (indexes, foreign
#: keys) is most of an import's time; two writers keep both cores of a small server busy.
#: SQLite allows one writer at a time: one writer thread, which works while this thread parses
#: the next chunk (sqlite3 releases the GIL while SQLite runs a statement).
PG_WRITERS = 2
# After the first chunk, fresh planner statistics for the ledger's tables while they are small
# (a new database's first big import): statistics of near-empty tables would lead the look-ups
# into full scans. Larger tables are left to autovacuum.
_ANALYZE_BELOW = 50_000
_ANALYZE = text("ANALYZE posting_group, ledger_line, income_transaction, suspense_item")
_LEDGER_SIZE = text("SELECT reltuples FROM pg_class WHERE oid = 'ledger_line'::regclass")


#: SQLite: the writer's page cache (KiB), so a chunk's changes stay in memory until its commit.
#: Spilling them to the file mid-transaction would take the exclusive lock early and block the
#: parsing thread's look-ups until the commit.
SQLITE_WRITER_CACHE_KIB = 65536


def _writer_connection(wc):
    """Set up a writer's connection; returns what undoes it before the connection goes back
    to the pool."""
    if wc.dialect.name != "sqlite":
        return lambda: None
    raw = wc.connection.dbapi_connection  # the driver's: no SQLAlchemy transaction begun
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}")
    return lambda: raw.execute(f"PRAGMA cache_size = {int(before)}")


#: Python's thread switch interval (seconds) while an import runs. A writer thread gives up the
#: GIL while the database works; when the statement returns, it waits for the parsing thread to
#: hand the GIL back, up to the interval (5 ms by default) per statement. On SQLite, whose one
#: writer sets the pace, 0.1 ms took a 100,000-line import from 2.3-2.6 s to 2.1-2.2 s
#: (0.5 ms before; 0.05 ms no better).
IMPORT_SWITCH_INTERVAL = 0.0001
_switch = {"lock": threading.Lock(), "users": 0, "before": None}


def _quick_switch(on: bool) -> None:
    """Shorten the interpreter's switch interval while any import runs, then restore it."""
    with _switch["lock"]:
        if on:
            if _switch["users"] == 0:
                _switch["before"] = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch["before"], IMPORT_SWITCH_INTERVAL))
            _switch["users"] += 1
        else:
            _switch["users"] -= 1
            if _switch["users"] == 0:
                sys.setswitchinterval(_switch["before"])


def _write_in_parallel(session: Session, info: _BatchInfo, ctx: RowContext, actor: str,
                       next_chunk, checked, fail_after_chunks: int | None) -> None:
    """Post the chunks on connections of their own (PG_WRITERS on PostgreSQL, one on SQLite),
    in file order of commit.

    This thread parses, decides, validates and stages each chunk (and looks up duplicates on
    ``session``); writer k % writers posts chunk k, then waits for chunk k-1 to commit before
    recording progress and committing. So what has been committed is always the file up to a
    line, as with one connection: a failure in chunk k rolls back the chunks after it, and a
    re-run resumes after the last line committed.
    """
    engine = session.get_bind()
    cond = threading.Condition()
    state: dict = {"next": 0, "stop_at": None, "error": None}
    pg = _is_pg(session)
    queues: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in range(PG_WRITERS if pg else 1)]

    def stopped(k: int) -> bool:
        """Whether chunk k must not commit (a chunk before it, or it, failed). Hold cond."""
        return state["stop_at"] is not None and k >= state["stop_at"]

    def fail(k: int, exc: BaseException) -> None:
        with cond:
            if state["stop_at"] is None or k < state["stop_at"]:
                state["stop_at"], state["error"] = k, exc
            cond.notify_all()

    def writer(q: queue.Queue) -> None:
        wc = engine.connect()  # one connection for all the writer's chunks
        ws = Session(bind=wc)
        restore = _writer_connection(wc)
        try:
            while (item := q.get()) is not None:
                k, staged, dups = item
                try:
                    with cond:
                        if stopped(k):
                            continue
                    _post_chunk(ws, info, ctx, staged, actor)
                    with cond:  # commit in file order
                        while state["next"] != k and not stopped(k):
                            cond.wait()
                        if stopped(k):
                            ws.rollback()
                            continue
                    _record_chunk(ws, info.id, staged, dups, actor)
                    ws.commit()
                    if k == 0 and pg and ws.execute(_LEDGER_SIZE).scalar() < _ANALYZE_BELOW:
                        ws.execute(_ANALYZE)
                        ws.commit()
                    with cond:  # (cond's lock is re-entrant: fail() takes it again)
                        if fail_after_chunks is not None and k + 1 >= fail_after_chunks:
                            fail(k + 1, _SimulatedCrash(f"simulated crash after {k + 1} chunk(s)"))
                        state["next"] = k + 1
                        cond.notify_all()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    ws.rollback()
                    fail(k, exc)
        finally:
            ws.close()
            restore()
            wc.close()

    threads = [threading.Thread(target=writer, args=(q,), name=f"import-{info.id}-writer-{i}",
                                daemon=True) for i, q in enumerate(queues)]
    _quick_switch(True)
    for th in threads:
        th.start()
    k = 0
    try:
        while decisions := next_chunk():
            with cond:
                if stopped(k):
                    break
            staged, dups = checked(decisions)
            session.rollback()  # no snapshot or lock held while the writers work
            queues[k % len(queues)].put((k, staged, dups))
            k += 1
    except BaseException as exc:
        fail(k, exc)
    finally:
        for q in queues:
            q.put(None)
        for th in threads:
            th.join()
        _quick_switch(False)
    if state["error"] is not None:
        raise state["error"]


class _SimulatedCrash(RuntimeError):
    pass


def _rows_after(items, resume_after: int):
    """The file's rows after line ``resume_after``; the file was checked whole on receipt, so a
    line error now means it changed on disk."""
    for item in items:
        if isinstance(item, LineError):
            raise ValidationError(f"The file changed since it was checked: {item.message}")
        if item.line > resume_after:
            yield item


# ---------------------------------------------------------------------------------------------
# background running

def start_background(app, batch_id: int) -> threading.Thread:
    """Process the import in a thread of this process (the page polls its progress)."""

    def target():
        from app.extensions import db
        from app.services.audit import set_actor

        with app.app_context():
            try:
                batch = db.session.get(ImportBatch, batch_id)
                set_actor(batch.created_by if batch else "worker")
                process_import(db.session, batch_id)
            except Exception:  # logged; the batch shows failed or resumes on the next tick
                log.exception("background import %s", batch_id)
            finally:
                db.session.remove()

    th = threading.Thread(target=target, name=f"import-{batch_id}", daemon=True)
    th.start()
    return th


def run_queued() -> str | None:
    """`ims tick` job: process imports still queued, and resume crashed ones."""
    from app.extensions import db

    session = db.session
    stale = _now() - STALE_AFTER
    ids = session.scalars(select(ImportBatch.id).where(
        (ImportBatch.status == "received") | ((ImportBatch.status == "processing") & (
            ImportBatch.heartbeat_at.is_(None) | (ImportBatch.heartbeat_at < stale))))
        .order_by(ImportBatch.id)).all()
    session.rollback()
    done = []
    for batch_id in ids:
        batch = process_import(session, batch_id)
        done.append(f"{batch_id}:{batch.status}")
    return f"imports {', '.join(done)}" if done else None


def retry_import(session: Session, batch_id: int, *, actor: str) -> ImportBatch:
    """Re-queue a failed (or stuck) import; processing resumes after the last committed line."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    if batch.status not in ("failed", "processing") or not batch.stored_path \
            or not os.path.exists(batch.stored_path):
        raise Conflict("Only a failed import whose file passed its checks can be run again.")
    if batch.active_sha256 is None:
        other = session.scalar(select(ImportBatch.id).where(ImportBatch.active_sha256 == batch.sha256))
        if other:
            raise Conflict(f"The same file was imported again as import {other}.")
        batch.active_sha256 = batch.sha256
    batch.heartbeat_at = None
    _status(session, batch, "received", actor, "queued again")
    session.commit()
    return batch


# ---------------------------------------------------------------------------------------------
# reversal

def reverse_import(session: Session, batch_id: int, *, actor: str, reason: str) -> ImportBatch:
    """Reverse every posting of the import and withdraw its untouched suspense items.

    Refused (Conflict, naming them) if any suspense item was allocated or written off, or any
    imported transaction has been journalled, transferred or refunded since.
    """
    if not reason or not reason.strip():
        raise ValidationError("Give a reason for reversing the import.",
                              {"reason": ["A reason is required."]})
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    if batch.status != "succeeded":
        raise Conflict(f"Only a succeeded import can be reversed (this one is {batch.status}).")
    st = SuspenseItem.__table__
    touched = session.execute(select(st.c.id, st.c.status).where(
        st.c.import_id == batch.id, st.c.status != "unallocated").limit(20)).all()
    touched_ids = [f"{i} ({s})" for i, s in touched]
    gt, lt, tt = PostingGroup.__table__, LedgerLine.__table__, Transaction.__table__
    own = select(gt.c.id).where(gt.c.import_id == batch.id, gt.c.kind.in_(("import", "suspense")))
    # allocations etc. post against the suspense item's group or the transactions
    moved = session.execute(select(tt.c.id).join(lt, lt.c.transaction_id == tt.c.id).where(
        Transaction.of_import(batch.id), lt.c.group_id != tt.c.posting_group_id)
        .limit(20)).scalars().all()
    sourced = session.execute(select(tt.c.source_transaction_id).where(
        tt.c.source_transaction_id.in_(select(tt.c.id).where(Transaction.of_import(batch.id))))
        .limit(20)).scalars().all()
    from app.models.suspense import REMAINING_AMOUNT

    if REMAINING_AMOUNT[0] is not None:
        for item in session.scalars(select(SuspenseItem).where(
                SuspenseItem.import_id == batch.id, SuspenseItem.status == "unallocated")):
            if item.remaining_amount != item.amount:
                touched_ids.append(f"{item.id} (part allocated)")
    problems = []
    if touched_ids:
        problems.append("suspense item(s) already allocated or written off: "
                        + ", ".join(str(x) for x in touched_ids))
    if moved or sourced:
        problems.append("transaction(s) journalled, transferred or refunded since: "
                        + ", ".join(str(x) for x in sorted(set(moved) | set(sourced))))
    if problems:
        raise Conflict("The import cannot be reversed: " + "; ".join(problems) + ".",
                       {"import": problems})
    already = session.scalar(select(func.count()).select_from(gt).where(
        gt.c.reverses_id.in_(own)))
    if already:
        raise Conflict("Some of this import's postings have already been reversed.")
    now = _now()
    group_ids = session.execute(own.order_by(gt.c.id)).scalars().all()
    for i in range(0, len(group_ids), CHUNK):
        part = group_ids[i:i + CHUNK]
        first = _allocate_numbers(session, "V", len(part))
        new_ids = _reserve_ids(session, gt, len(part))
        _bulk_insert(session, gt, [
            {"id": new_ids[j], "kind": "reversal", "number": f"V{first + j:06d}",
             "created_at": now, "created_by": actor, "office_code": batch.office_code,
             "reason": reason.strip(), "import_id": batch.id, "reverses_id": gid}
            for j, gid in enumerate(part)])
        mapping = dict(zip(part, new_ids))
        lines = [{"group_id": mapping[g], "account": a, "fund_code": f, "account_reference": r,
                  "amount": -amt, "transaction_id": t}
                 for g, a, f, r, amt, t in session.execute(
                     select(lt.c.group_id, lt.c.account, lt.c.fund_code, lt.c.account_reference,
                            lt.c.amount, lt.c.transaction_id).where(lt.c.group_id.in_(part))
                     .order_by(lt.c.id))]
        if sum(x["amount"] for x in lines) != 0:
            raise ValidationError("Internal error: the reversal does not balance.")
        _bulk_insert(session, lt, lines)
    withdrawn = session.execute(update(st).where(st.c.import_id == batch.id,
                                                 st.c.status == "unallocated")
                                .values(status="withdrawn")).rowcount
    batch.reversed_by = actor
    batch.reversal_reason = reason.strip()[:500]
    audit.record(session, "reverse", "ImportBatch", batch.id, before={"status": "succeeded"},
                 after={"groups_reversed": len(group_ids), "suspense_withdrawn": withdrawn,
                        "amount": str(Money(batch.total_amount))}, reason=reason.strip(),
                 actor=actor)
    _status(session, batch, "reversed", actor, reason.strip())
    batch.active_sha256 = None
    session.commit()
    return batch


# ---------------------------------------------------------------------------------------------
# views of a batch

def import_result(batch: ImportBatch) -> dict:
    return {
        "id": batch.id,
        "status": batch.status,
        "format": batch.format,
        "filename": batch.filename,
        "rows_total": batch.rows_total,
        "rows_done": batch.rows_done,
        "rows_posted": batch.rows_posted,
        "rows_suspense": batch.rows_suspense,
        "rows_duplicate": batch.rows_duplicate,
        "total_amount": str(Money(batch.total_amount)),
        "posted_amount": str(Money(batch.posted_amount)),
        "suspense_amount": str(Money(batch.suspense_amount)),
        "percent": (100 if batch.status in ("succeeded", "reversed") else
                    int(100 * batch.rows_done / batch.rows_total) if batch.rows_total else 0),
        "control_total": batch.control_total,
        "first_date": batch.first_date.isoformat() if batch.first_date else None,
        "last_date": batch.last_date.isoformat() if batch.last_date else None,
        "errors": json.loads(batch.errors_json or "[]"),
        "duplicates": json.loads(batch.duplicates_json or "[]"),
        "created_by": batch.created_by,
        "created_at": batch.created_at.isoformat() if batch.created_at else None,
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "history": [{"status": e.status, "at": e.at.isoformat(), "actor": e.actor,
                     "message": e.message} for e in batch.history],
    }


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("imports", run_queued)


_register_job()
