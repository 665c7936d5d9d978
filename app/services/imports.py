"""Import use cases: receive a file (store, hash, validate it whole), process it (rules, fund,
validation, bulk postings or suspense, in chunks that resume after a crash), reverse it.

Posting writes the ledger's own tables (app/models/ledger.py) with the ledger's conventions —
one posting group per row: receipts Dr BANK / Cr FUND (kind "import", one Transaction per row)
and unmatched money Dr BANK / Cr SUSPENSE (kind "suspense", one SuspenseItem per row) — but in
bulk (multi-row INSERTs), since post_group()/record_income() work one group at a time.
Each committed chunk records the last file line done, so a re-run resumes idempotently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, selectinload

from app.domain.errors import Conflict, NotFound, ValidationError
from app.domain.money import Money, vat_of
from app.importers import FORMATS, FileRejected, LineError, Row, Summary, parse_file
from app.importers.allpay import DEFAULT_METHODS
from app.models.imports import BankProfile, FundReferencePattern, ImportBatch, ImportStatusEvent
from app.models.ledger import LedgerLine, NumberSequence, PostingGroup, Transaction
from app.models.reference import AccountHolder, Fund, PaymentMethod, VatCode
from app.models.suspense import SuspenseItem
from app.services import audit
from app.services.reference import SUSPENSE_FUND, designated_fund, get_setting
from app.services.rules import RuleSet, load_rules
from app.services.validation import check_reference_format, normalise_reference

log = logging.getLogger(__name__)

CHUNK = 5000  # rows per committed chunk at most (at least 20 progress steps per file)
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

@dataclass
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
    fired: list[str] = field(default_factory=list)
    suspense: bool = False
    reasons: list[str] = field(default_factory=list)


class RowContext:
    """Everything a row needs, loaded once per import."""

    def __init__(self):
        self.funds: dict[str, Fund] = {}
        self.methods: dict[str, PaymentMethod] = {}
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
        funds = session.scalars(select(Fund).options(selectinload(Fund.validator))).all()
        ctx.funds = {f.code: f for f in funds}
        # walk every validator chain now, so later checks never hit the database
        for f in funds:
            v, seen = f.validator, set()
            while v is not None and v.id not in seen:
                seen.add(v.id)
                v = v.next_validator
        ctx.methods = {m.code: m for m in session.scalars(select(PaymentMethod))}
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
        ctx.vat_rates = {v.code: v.rate for v in session.scalars(select(VatCode))}
        # detach the cached objects: chunk commits must not expire (and reload) them
        objs = set(funds) | set(ctx.methods.values())
        for f in funds:
            v = f.validator
            while v is not None and v not in objs:
                objs.add(v)
                v = v.next_validator
        for obj in objs:
            if obj in session:
                session.expunge(obj)
        return ctx

    @staticmethod
    def default_method(import_type: str | None) -> str:
        return DEFAULT_METHOD.get(import_type or "", "BACS")

    def decide(self, *, reference: str, amount: int, narrative: str | None,
               fund_code: str | None, method_code: str, line: int = 0,
               transaction_date: date | None = None, external_reference: str | None = None
               ) -> Decision:
        state = {"reference": reference or "", "amount": amount, "narrative": narrative or "",
                 "fund": fund_code or ""}
        fired = self.rules.run(state) if self.rules.rules else []
        fund = (state["fund"] or "").strip().upper() or None
        source = ("rule" if fund and fund != (fund_code or None) else "file") if fund else ""
        ref_text = state["reference"] or ""
        if fund is None:
            for rx, code in self.patterns:
                if rx.search(ref_text):
                    fund, source = code, "pattern"
                    break
        return Decision(line, transaction_date, reference or "", normalise_reference(ref_text),
                        amount, state["narrative"] or None, fund, source or "none", method_code,
                        external_reference, fired)

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
            for fc, ref, stop in self.session.execute(_PG_ACCOUNTS, {"refs": refs_list}):
                self.accounts[(fc, ref)] = stop
            return
        for i in range(0, len(refs_list), 900):
            part = refs_list[i:i + 900]
            for fc, ref, stop in self.session.execute(
                    select(AccountHolder.fund_code, AccountHolder.account_reference,
                           AccountHolder.stop_message).where(
                        AccountHolder.account_reference.in_(part))):
                self.accounts[(fc, ref)] = stop

    def validate(self, d: Decision) -> None:
        """DOMAIN.md reference validation from cached data (all checks); failures -> suspense."""
        reasons = d.reasons
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
                if fund.maximum_amount is not None and d.amount > fund.maximum_amount:
                    reasons.append(f"Amount {Money(d.amount)} is more than the fund maximum "
                                   f"{Money(fund.maximum_amount)}.")
                method = self.methods.get(d.method_code)
                if method is not None:
                    if method.minimum_amount is not None and d.amount < method.minimum_amount:
                        reasons.append(f"Amount {Money(d.amount)} is less than the "
                                       f"{method.code} minimum {Money(method.minimum_amount)}.")
                    if method.maximum_amount is not None and d.amount > method.maximum_amount:
                        reasons.append(f"Amount {Money(d.amount)} is more than the "
                                       f"{method.code} maximum {Money(method.maximum_amount)}.")
                if not d.reference:
                    reasons.append("The reference is blank.")
                else:
                    if len(d.reference) > 30:
                        reasons.append("The reference is longer than 30 characters.")
                    ok, errs = check_reference_format(fund.validator, d.reference)
                    if not ok:
                        reasons.extend(errs)
                    key = (fund.code, d.reference)
                    if key not in self.accounts:
                        if fund.account_must_exist:
                            reasons.append(f"No account {d.reference} exists in fund {fund.code}.")
                    elif self.accounts[key]:
                        reasons.append(f"Account on stop: {self.accounts[key]}")
        if d.method_code not in self.methods:
            reasons.append(f"Unknown payment method {d.method_code}.")
        d.suspense = bool(reasons)


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
    """The whole-file pass: every line parsed (streaming), errors named by line, no posting."""
    summary = Summary()
    errors: list[LineError] = []
    rows = total = 0
    methods = set(session.scalars(select(PaymentMethod.code)))
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
            rows += 1
            total += item.amount
    except FileRejected as exc:
        errors.append(LineError(exc.line, exc.message))
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
    keys = {}
    for d in decisions:
        keys.setdefault((d.transaction_date, d.reference[:30], d.amount), []).append(d)
        keys.setdefault((d.transaction_date, d.raw_reference.strip()[:200], d.amount), []).append(d)
    refs30 = list({d.reference[:30] for d in decisions if d.reference})
    raws = list({d.raw_reference.strip()[:200] for d in decisions})
    found = set()
    tt = Transaction.__table__
    st = SuspenseItem.__table__
    _collect_duplicates(session, batch_id, refs30, raws, found, tt, st)
    out, seen = [], set()
    for (d_, r_, a_, imp) in found:
        for d in keys.get((d_, r_, a_), []):
            if d.line not in seen:
                seen.add(d.line)
                out.append({"line": d.line, "message": f"Possible duplicate: {d_} {r_} "
                            f"£{Money(a_)} was imported before (import {imp})."})
    return sorted(out, key=lambda x: x["line"])


_PG_DUP_TX = text(
    "SELECT t.transaction_date, t.account_reference, t.amount, t.import_id "
    "FROM income_transaction t JOIN unnest(CAST(:refs AS varchar[])) AS r(ref) "
    "ON t.account_reference = r.ref WHERE t.import_id IS NOT NULL AND t.import_id <> :bid")
_PG_DUP_SUSP = text(
    "SELECT s.transaction_date, s.reference_text, s.amount, s.import_id "
    "FROM suspense_item s JOIN unnest(CAST(:refs AS varchar[])) AS r(ref) "
    "ON s.reference_text = r.ref WHERE s.import_id IS NOT NULL AND s.import_id <> :bid")
_PG_ACCOUNTS = text(
    "SELECT a.fund_code, a.account_reference, a.stop_message "
    "FROM account_holder a JOIN unnest(CAST(:refs AS varchar[])) AS r(ref) "
    "ON a.account_reference = r.ref")


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _collect_duplicates(session, batch_id, refs30, raws, found, tt, st) -> None:
    """On PostgreSQL the references go as one array joined with unnest(): an IN list of 900
    bind parameters becomes, once psycopg prepares the statement, a generic plan that
    compares every row with every parameter (seconds per chunk)."""
    if _is_pg(session):
        for stmt, refs in ((_PG_DUP_TX, refs30), (_PG_DUP_SUSP, raws)):
            if refs:
                for row in session.execute(stmt, {"refs": refs, "bid": batch_id}):
                    found.add((row[0], row[1], row[2], row[3]))
        return
    for i in range(0, len(refs30), 900):
        for row in session.execute(select(tt.c.transaction_date, tt.c.account_reference,
                                          tt.c.amount, tt.c.import_id).where(
                tt.c.account_reference.in_(refs30[i:i + 900]), tt.c.import_id.is_not(None),
                tt.c.import_id != batch_id)):
            found.add((row[0], row[1], row[2], row[3]))
    for i in range(0, len(raws), 900):
        for row in session.execute(select(st.c.transaction_date, st.c.reference_text,
                                          st.c.amount, st.c.import_id).where(
                st.c.reference_text.in_(raws[i:i + 900]), st.c.import_id.is_not(None),
                st.c.import_id != batch_id)):
            found.add((row[0], row[1], row[2], row[3]))


def _post_chunk(session: Session, batch: ImportBatch, ctx: RowContext, decisions: list[Decision],
                actor: str) -> tuple[int, int, int, int]:
    """Insert the chunk's posting groups, transactions, ledger lines and suspense items."""
    now = _now()
    posted = [d for d in decisions if not d.suspense]
    held = [d for d in decisions if d.suspense]
    gt, tt, lt, st = (PostingGroup.__table__, Transaction.__table__, LedgerLine.__table__,
                      SuspenseItem.__table__)
    office = batch.office_code
    p_amount = s_amount = 0
    lines: list[dict] = []
    if posted:
        first = _allocate_numbers(session, "I", len(posted))
        numbers = [f"I{first + i:06d}" for i in range(len(posted))]
        gids = _reserve_ids(session, gt, len(posted))
        _bulk_insert(session, gt, [
            {"id": gids[i], "kind": "import", "number": numbers[i], "created_at": now,
             "created_by": actor, "office_code": office, "reason": None, "import_id": batch.id,
             "reverses_id": None} for i in range(len(posted))])
        txs = []
        for d, gid, number in zip(posted, gids, numbers):
            fund = ctx.funds[d.fund_code]
            vat_code = fund.vat_code
            rate = ctx.vat_rates.get(vat_code) if vat_code else None
            txs.append({
                "id": None, "receipt_number": number, "fund_code": d.fund_code,
                "account_reference": d.reference, "amount": d.amount, "vat_code": vat_code,
                "vat_amount": vat_of(Money(d.amount), rate).pence if rate else 0,
                "payment_method_code": d.method_code,
                "narrative": (d.narrative or "")[:500] or None,
                "transaction_date": d.transaction_date,
                "external_reference": (d.external_reference or "")[:100] or None,
                "office_code": office, "created_by": actor, "created_at": now,
                "import_id": batch.id, "posting_group_id": gid, "source_transaction_id": None})
            p_amount += d.amount
        tids = _reserve_ids(session, tt, len(txs))
        for tx, tid in zip(txs, tids):
            tx["id"] = tid
        _bulk_insert(session, tt, txs)
        for d, gid, tid in zip(posted, gids, tids):
            lines.append({"group_id": gid, "account": "BANK", "fund_code": None,
                          "account_reference": None, "amount": d.amount, "transaction_id": None})
            lines.append({"group_id": gid, "account": "FUND", "fund_code": d.fund_code,
                          "account_reference": d.reference, "amount": -d.amount,
                          "transaction_id": tid})
    if held:
        first = _allocate_numbers(session, "S", len(held))
        sgids = _reserve_ids(session, gt, len(held))
        _bulk_insert(session, gt, [
            {"id": sgids[i], "kind": "suspense", "number": f"S{first + i:06d}",
             "created_at": now, "created_by": actor, "office_code": office, "reason": None,
             "import_id": batch.id, "reverses_id": None} for i in range(len(held))])
        items = []
        for d, gid in zip(held, sgids):
            lines.append({"group_id": gid, "account": "BANK", "fund_code": None,
                          "account_reference": None, "amount": d.amount, "transaction_id": None})
            lines.append({"group_id": gid, "account": "SUSPENSE", "fund_code": ctx.suspense_fund,
                          "account_reference": None, "amount": -d.amount, "transaction_id": None})
            items.append({"amount": d.amount, "reference_text": d.raw_reference.strip()[:200],
                          "narrative": d.narrative, "reason": "; ".join(d.reasons)[:500],
                          "fund_code": d.fund_code if d.fund_code in ctx.funds else None,
                          "transaction_date": d.transaction_date, "import_id": batch.id,
                          "line_number": d.line, "posting_group_id": gid,
                          "status": "unallocated", "created_at": now})
            s_amount += d.amount
        _bulk_insert(session, st, items)
    if sum(line["amount"] for line in lines) != 0:  # every group is Dr = Cr by construction
        raise ValidationError("Internal error: the import postings do not balance.")
    if lines:
        _bulk_insert(session, lt, lines)
    return len(posted), len(held), p_amount, s_amount


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
        chunk_size = min(CHUNK, max(200, batch.rows_total // 20))
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


class _SimulatedCrash(RuntimeError):
    pass


def _run(session: Session, batch: ImportBatch, actor: str, chunk_size: int,
         fail_after_chunks: int | None) -> None:
    ctx = RowContext.load(session, batch.format)
    profile = session.get(BankProfile, batch.profile_id) if batch.profile_id else None
    summary = Summary()
    methods = allpay_methods(session)
    default_method = ctx.default_method(batch.format)
    resume_after = batch.last_line_done
    buf: list[Row] = []
    chunks = 0
    batch_id = batch.id
    is_pg = session.get_bind().dialect.name == "postgresql"

    def flush(rows: list[Row]) -> None:
        nonlocal chunks
        if is_pg:
            # psycopg prepares statements run 5+ times; PostgreSQL then may switch to a generic
            # plan made while these tables were small (full scans per reference, seconds a chunk)
            session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        decisions = []
        for r in rows:
            decisions.append(ctx.decide(
                reference=r.reference, amount=r.amount, narrative=r.narrative,
                fund_code=r.fund_code, method_code=r.payment_method_code or default_method,
                line=r.line, transaction_date=r.transaction_date,
                external_reference=r.external_reference))
        ctx.prefetch_accounts(decisions)
        for d in decisions:
            ctx.validate(d)
        dups = _find_duplicates(session, batch_id, decisions)
        n_posted, n_held, p_amt, s_amt = _post_chunk(session, b, ctx, decisions, actor)
        b.rows_done += len(rows)
        b.rows_posted += n_posted
        b.rows_suspense += n_held
        b.posted_amount += p_amt
        b.suspense_amount += s_amt
        b.last_line_done = rows[-1].line
        b.heartbeat_at = _now()
        if dups:
            old = json.loads(b.duplicates_json or "[]")
            b.rows_duplicate += len(dups)
            b.duplicates_json = json.dumps((old + dups)[:MAX_DUPLICATES])
        audit.record(session, "post", "ImportBatch", batch_id, after={
            "lines": f"{rows[0].line}-{rows[-1].line}", "posted": n_posted,
            "to_suspense": n_held, "amount": str(Money(p_amt + s_amt))}, actor=actor)
        session.commit()
        chunks += 1
        if is_pg and chunks in (1, 4, 16, 64, 256):
            # tables that grew fast (a first big import) need fresh planner statistics, or the
            # ledger's balance trigger and the duplicate look-ups fall back to full scans
            session.execute(text("ANALYZE posting_group, ledger_line, income_transaction, "
                                 "suspense_item"))
            session.commit()
        if fail_after_chunks is not None and chunks >= fail_after_chunks:
            raise _SimulatedCrash(f"simulated crash after {chunks} chunk(s)")

    b = batch
    for item in parse_file(batch.format, batch.stored_path, summary, profile, methods):
        if isinstance(item, LineError):
            raise ValidationError(f"The file changed since it was checked: {item.message}")
        if item.line <= resume_after:
            continue
        buf.append(item)
        if len(buf) >= chunk_size:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    b = session.get(ImportBatch, batch_id)
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
        tt.c.import_id == batch.id, lt.c.group_id != tt.c.posting_group_id).limit(20)).scalars().all()
    sourced = session.execute(select(tt.c.source_transaction_id).where(
        tt.c.source_transaction_id.in_(select(tt.c.id).where(tt.c.import_id == batch.id)))
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
