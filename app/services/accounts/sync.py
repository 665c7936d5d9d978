"""Account-holder sync: receive a file, check it (parse every line into a staging table, then a
dry run of what would change), apply it as one audited change with a stored change list.

Checking stages the parsed lines (PostgreSQL: one COPY, the progress committed through a
connection of its own so the page can show it; SQLite: chunks, committed with the progress);
nothing about the accounts changes until ``apply_sync``, which runs as one transaction of
set-based SQL (on PostgreSQL a single statement): new accounts, changed ones (and closed ones
the file lists again), and — when the profile says the file is complete — accounts the file no
longer lists, closed (never deleted); unchanged accounts are not written. A failure anywhere
rolls it all back. Running the same file again finds nothing to change.

Stops: the file's stop is applied (stop_source "file"); when the file has none for an account,
a stop the file set before is cleared and a stop staff set is kept (settled question).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, insert, select, text
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound, ValidationError
from app.models.accounts import AccountHolderProfile, AccountSync, AccountSyncChange, AccountSyncRow
from app.models.base import UTCDateTime, utcnow
from app.models.reference import Fund
from app.services import audit
from app.services.accounts.reading import STAGED_COLUMNS, FileRefused, Reader
from app.services.locking import for_update

log = logging.getLogger(__name__)

CHUNK = 20000
SAMPLE = 20
#: file-held fields compared and written (the stop is handled on its own)
FIELDS = ("name", "address", "postcode", "balance", "balance_date")
#: a profile field -> the account field it feeds
_FEEDS = {"name": "name", "title": "name", "forename": "name", "surname": "name",
          "address": "address", "address1": "address", "address2": "address",
          "address3": "address", "address4": "address", "postcode": "postcode",
          "balance": "balance", "balance_date": "balance_date"}
STALE_AFTER = timedelta(minutes=10)


# The statements below are built from fixed column names (FIELDS, chosen by the profile's
# mapping, never from file or user text); values are always bound parameters.
def _sql(statement: str):
    """A statement with its parameters typed (PostgreSQL cannot always infer them)."""
    return text(statement.replace(":fund", "CAST(:fund AS VARCHAR(10))")
                .replace(":sid", "CAST(:sid AS INTEGER)"))


def find_profile(session: Session, profile) -> AccountHolderProfile:
    if isinstance(profile, AccountHolderProfile):
        return profile
    found = None
    if isinstance(profile, int) or (isinstance(profile, str) and profile.isdigit()):
        found = session.get(AccountHolderProfile, int(profile))
    if found is None and isinstance(profile, str):
        found = session.scalar(select(AccountHolderProfile).where(
            AccountHolderProfile.name == profile))
    if found is None:
        raise NotFound(f"No account-holder profile {profile!r}.")
    return found


def fields_of(profile: AccountHolderProfile) -> list[str]:
    """The account fields this profile's files hold (others are left as they are)."""
    mapped = {f for f, spec in profile.mapping.items() if spec not in (None, "")}
    return [f for f in FIELDS if any(_FEEDS.get(m) == f for m in mapped)]


def handles_stops(profile: AccountHolderProfile) -> bool:
    mapped = {f for f, spec in profile.mapping.items() if spec not in (None, "")}
    return bool(mapped & {"stop", "stop_message"})


# ---------------------------------------------------------------------------------------------
# receiving

def receive(session: Session, *, profile, stream, filename: str, actor: str, instance_path: str,
            max_bytes: int, source: str = "upload", apply_after_check: bool = False
            ) -> AccountSync:
    """Store the upload and create its sync (status "checking"). A file over ``max_bytes`` is
    refused before anything is stored."""
    profile = find_profile(session, profile)
    folder = os.path.join(instance_path, "account_syncs")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{uuid.uuid4().hex}.dat")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as out:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FileRefused(f"The file is larger than the limit of "
                                      f"{_size(max_bytes)}. Nothing was applied.")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.remove(path)
        raise
    if size == 0:
        os.remove(path)
        raise FileRefused("The file is empty. Nothing was applied.")
    sync = AccountSync(profile_id=profile.id, fund_code=profile.fund_code,
                       filename=(filename or "upload")[:255], sha256=digest.hexdigest(),
                       size_bytes=size, stored_path=path, source=source, status="checking",
                       created_by=actor, created_at=utcnow(), apply_after_check=apply_after_check)
    session.add(sync)
    session.flush()
    audit.record(session, "account_sync.receive", "AccountSync", sync.id, after={
        "profile": profile.name, "fund": profile.fund_code, "filename": sync.filename,
        "sha256": sync.sha256, "bytes": size}, actor=actor)
    session.commit()
    return sync


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.0f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------------------------------------
# checking (staging and the dry run)

def _csv_text(rows: list[tuple], sync_id: int) -> str:
    """Parsed lines (tuples of STAGED_COLUMNS) and their sync's id as CSV for COPY (None is
    NULL: an unquoted empty field; the reader never gives an empty string)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    data = buf.getvalue()
    if data.count("\n") == len(rows):  # no value holds a line break: each ends a row
        return data.replace("\n", f",{int(sync_id)}\n")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([(*row, sync_id) for row in rows])
    return buf.getvalue()


class _Staging:
    """Where a check puts its parsed lines, CHUNK at a time.

    PostgreSQL: one COPY for the whole file, its text sent by psycopg's writer thread while the
    next lines are parsed; the progress (and heartbeat) is committed twice a second through a
    connection of its own. SQLite: each chunk is inserted and committed with the progress."""

    def __init__(self, session: Session, sync: AccountSync):
        self.session = session
        self.sync = sync
        self.chunk: list[tuple] = []
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self._copy = None
        self._last = 0.0

    def __enter__(self):
        if self.postgres:
            import queue

            from psycopg.copy import QueuedLibpqWriter

            raw = self.session.connection().connection.dbapi_connection
            self._cursor = raw.cursor()
            writer = QueuedLibpqWriter(self._cursor)
            # at most 32 pieces of 128 KB wait for the server (psycopg's default is 1,024: up
            # to 128 MB held when the server is slower than the reading)
            writer._queue = queue.Queue(maxsize=32)
            self._copy_cm = self._cursor.copy(
                f"COPY account_sync_row ({', '.join(STAGED_COLUMNS)}, sync_id) FROM STDIN "
                f"WITH (FORMAT csv)", writer=writer)
            self._copy = self._copy_cm.__enter__()
        return self

    def progress(self, done: int) -> None:
        if not self.postgres:
            self.sync.bytes_done = done
            self.sync.heartbeat_at = utcnow()
            return
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        self._last = now
        table = AccountSync.__table__
        with self.session.get_bind().begin() as conn:
            conn.execute(table.update().where(table.c.id == self.sync.id).values(
                bytes_done=done, heartbeat_at=utcnow()))

    def add(self, row: tuple) -> None:
        self.chunk.append(row)
        if len(self.chunk) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        rows, self.chunk = self.chunk, []
        if not rows:
            return
        if self.postgres:
            self._copy.write(_csv_text(rows, self.sync.id))
            return
        self.session.execute(insert(AccountSyncRow.__table__), [
            dict(zip(("sync_id", *STAGED_COLUMNS), (self.sync.id, *row), strict=True))
            for row in rows])
        self.session.commit()  # staged lines and progress; no account changed

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self._flush()
        if self._copy is not None:
            try:
                self._copy_cm.__exit__(kind, exc, tb)
            finally:
                self._cursor.close()
        return False


def check_sync(session: Session, sync_id: int) -> AccountSync:
    """Parse the stored file into staged rows, then work out what applying it would change.
    A refused file leaves no staged rows; bad lines are listed (all of them)."""
    sync = session.get(AccountSync, sync_id)
    if sync is None:
        raise NotFound(f"No account-holder sync {sync_id}.")
    if sync.status != "checking":
        return sync
    profile = session.get(AccountHolderProfile, sync.profile_id)
    bad: list[dict] = []
    lines = 0
    try:
        reader = Reader(profile)
        session.execute(delete(AccountSyncRow).where(AccountSyncRow.sync_id == sync_id))

        with open(sync.stored_path, "rb") as fh, _Staging(session, sync) as staging:
            add = staging.add
            for number, parsed in reader.rows(fh, staging.progress):
                lines += 1
                if isinstance(parsed, str):
                    bad.append({"line": number, "message": parsed})
                    continue
                add(parsed)
        session.flush()
        if session.get_bind().dialect.name == "postgresql":
            # fresh statistics for the comparison's plans (a large file, a new fund)
            session.execute(text("ANALYZE account_sync_row"))
            session.execute(text("ANALYZE account_holder"))
        bad += _duplicates(session, sync_id)
        if bad and not profile.skip_bad_lines:
            bad.sort(key=lambda b: b["line"])
            raise FileRefused(f"{len(bad)} bad line(s): the file was refused and nothing was "
                              f"applied.", bad)
        if bad:
            dup_refs = select(AccountSyncRow.account_reference).where(
                AccountSyncRow.sync_id == sync_id).group_by(
                AccountSyncRow.account_reference).having(func.count() > 1)
            session.execute(delete(AccountSyncRow).where(
                AccountSyncRow.sync_id == sync_id,
                AccountSyncRow.account_reference.in_(dup_refs.scalar_subquery())))
        if lines == 0:
            raise FileRefused("The file has no account lines. Nothing was applied.")
        bad.sort(key=lambda b: b["line"])
        sync.lines_total = lines
        sync.bad_count = len(bad)
        sync.bad_lines = json.dumps(bad) if bad else None
        _dry_run(session, sync, profile)
        sync.status = "checked"
        sync.bytes_done = sync.size_bytes
        audit.record(session, "account_sync.check", "AccountSync", sync.id, after=counts(sync),
                     actor=sync.created_by)
        session.commit()
    except FileRefused as exc:
        session.rollback()
        _refuse(session, sync_id, exc.message, exc.lines, lines)
        sync = session.get(AccountSync, sync_id)
        return sync
    except Exception as exc:
        session.rollback()
        log.exception("account sync %s: check failed", sync_id)
        _refuse(session, sync_id, f"The check failed: {exc.__class__.__name__}. Nothing was "
                                  f"applied.", [], lines, status="failed")
        raise
    if sync.apply_after_check:
        sync = apply_sync(session, sync_id, actor=sync.created_by)
    return sync


def _refuse(session, sync_id, message, lines, total, status="refused"):
    session.execute(delete(AccountSyncRow).where(AccountSyncRow.sync_id == sync_id))
    sync = session.get(AccountSync, sync_id)
    sync.status = status
    sync.error = message
    sync.bad_lines = json.dumps(lines) if lines else None
    sync.bad_count = len(lines)
    sync.lines_total = total
    audit.record(session, f"account_sync.{status}", "AccountSync", sync_id,
                 after={"error": message, "bad_lines": len(lines)}, actor=sync.created_by)
    session.commit()


def _duplicates(session: Session, sync_id: int) -> list[dict]:
    dup = (select(AccountSyncRow.account_reference).where(AccountSyncRow.sync_id == sync_id)
           .group_by(AccountSyncRow.account_reference).having(func.count() > 1)).subquery()
    rows = session.execute(
        select(AccountSyncRow.line_no, AccountSyncRow.account_reference)
        .where(AccountSyncRow.sync_id == sync_id,
               AccountSyncRow.account_reference.in_(select(dup.c.account_reference)))
        .order_by(AccountSyncRow.account_reference, AccountSyncRow.line_no)).all()
    firsts: dict[str, int] = {}
    out = []
    for line, ref in rows:
        first = firsts.setdefault(ref, line)
        if first != line:
            out.append({"line": line, "message": f"Line {line}: the reference {ref} is also on "
                                                 f"line {first} (duplicate in the file)."})
        else:
            out.append({"line": line, "message": f"Line {line}: the reference {ref} appears "
                                                 f"more than once in the file."})
    return out


def _conditions(profile: AccountHolderProfile) -> tuple[list[str], str, str, str]:
    """SQL pieces comparing a staged row s with its account a: the fields, the new stop message
    and source expressions, and the condition that something changes."""
    fields = fields_of(profile)
    if handles_stops(profile):
        stop = ("CASE WHEN s.stop_message IS NOT NULL THEN s.stop_message "
                "WHEN a.stop_source = 'staff' THEN a.stop_message ELSE NULL END")
        source = ("CASE WHEN s.stop_message IS NOT NULL THEN 'file' "
                  "WHEN a.stop_source = 'staff' THEN 'staff' ELSE NULL END")
    else:
        stop, source = "a.stop_message", "a.stop_source"
    parts = [f"s.{f} IS DISTINCT FROM a.{f}" for f in fields]
    parts += [f"({stop}) IS DISTINCT FROM a.stop_message",
              f"({source}) IS DISTINCT FROM a.stop_source", "a.closed_at IS NOT NULL"]
    return fields, stop, source, "(" + " OR ".join(parts) + ")"


_JOIN = ("FROM account_sync_row s JOIN account_holder a ON a.fund_code = :fund "
         "AND a.account_reference = s.account_reference WHERE s.sync_id = :sid")


def _work_mem(session: Session, size: str = "64MB") -> None:
    """PostgreSQL: room for the comparison's hash joins (and the apply's sort of the new
    accounts into the file's order) of a large file in memory, for this transaction only: the
    default 4 MB makes them spill to disk in batches."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{size}'"))


def _dry_run(session: Session, sync: AccountSync, profile: AccountHolderProfile) -> None:
    """The counts in one pass over the staged lines joined to the accounts, then the sample."""
    fields, stop, _source, changed = _conditions(profile)
    p = {"sid": sync.id, "fund": sync.fund_code}
    postgres = session.get_bind().dialect.name == "postgresql"
    _work_mem(session)
    first = ("(array_agg(s.id ORDER BY s.line_no) FILTER (WHERE a.id IS NOT NULL AND "
             f"{changed}))[1:{SAMPLE}]" if postgres else "NULL")
    staged, matched, changed_n, open_matched, sample_ids = session.execute(_sql(
        f"SELECT count(*), count(a.id), "  # noqa: S608
        f"coalesce(sum(CASE WHEN a.id IS NOT NULL AND {changed} THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN a.id IS NOT NULL AND a.closed_at IS NULL THEN 1 ELSE 0 END), 0),"
        f" {first} FROM account_sync_row s LEFT JOIN account_holder a ON a.fund_code = :fund "
        f"AND a.account_reference = s.account_reference WHERE s.sync_id = :sid"), p).one()
    sync.changed_count = changed_n
    sync.new_count = staged - matched
    sync.unchanged_count = matched - changed_n
    sync.missing_count = 0
    if profile.complete:
        sync.missing_count = session.scalar(_sql(
            "SELECT count(*) FROM account_holder WHERE fund_code = :fund AND closed_at IS NULL"),
            p) - open_matched
    cols = ", ".join(f"s.{f}, a.{f}" for f in fields)
    head = (f"SELECT s.line_no, s.account_reference, a.closed_at, ({stop}), a.stop_message"
            f"{', ' + cols if cols else ''} {_JOIN} AND {changed} ")
    if not changed_n:
        rows = []
    elif postgres:  # the first changed lines, found in the one pass above
        rows = session.execute(_sql(head + "AND s.id IN :ids ORDER BY s.line_no").bindparams(
            bindparam("ids", expanding=True)), {**p, "ids": list(sample_ids or [])}).all()
    else:
        rows = session.execute(_sql(head + f"ORDER BY s.line_no LIMIT {SAMPLE}"), p).all()
    sample = []
    for row in rows:
        line, ref, closed, new_stop, old_stop, *values = row
        diffs = []
        if closed is not None:
            diffs.append({"field": "status", "before": "closed", "after": "open"})
        for i, f in enumerate(fields):
            new, old = values[2 * i], values[2 * i + 1]
            if new != old:
                diffs.append({"field": f, "before": _shown(f, old), "after": _shown(f, new)})
        if new_stop != old_stop:
            diffs.append({"field": "stop_message", "before": old_stop, "after": new_stop})
        sample.append({"line": line, "reference": ref, "changes": diffs})
    sync.sample = json.dumps(sample)


def _shown(field, value):
    if value is None:
        return None
    if field == "balance":
        from app.domain.money import Money

        return str(Money(int(value)))
    return str(value)


# ---------------------------------------------------------------------------------------------
# applying

def _json_of(dialect: str, alias: str, fields: list[str]) -> str:
    fn = "json_build_object" if dialect == "postgresql" else "json_object"
    args = ", ".join(f"'{f}', {alias}.{f}" for f in fields)
    expr = f"{fn}({args})"
    return f"CAST({expr} AS TEXT)" if dialect == "postgresql" else expr


def apply_sync(session: Session, sync_id: int, *, actor: str) -> AccountSync:
    """Apply a checked sync in one transaction; one audit event with the counts, pointing to
    the stored change list. A second apply of the same sync is refused."""
    sync = session.scalar(for_update(session, select(AccountSync).where(AccountSync.id == sync_id)))
    if sync is None:
        raise NotFound(f"No account-holder sync {sync_id}.")
    if sync.status not in ("checked", "applying"):
        raise Conflict(f"Account-holder sync {sync_id} is {sync.status}: only a checked file "
                       f"can be applied.")
    session.scalar(for_update(session, select(Fund.id).where(Fund.code == sync.fund_code)))
    profile = session.get(AccountHolderProfile, sync.profile_id)
    dialect = session.get_bind().dialect.name
    now = utcnow()
    p = {"sid": sync.id, "fund": sync.fund_code}
    try:
        # the staged lines, counted by the check (they do not change until they are dropped)
        staged = sync.new_count + sync.changed_count + sync.unchanged_count
        if dialect == "postgresql":
            _work_mem(session, "256MB")
            new, changed_n, closed = _apply_postgresql(session, profile, p, now)
        else:
            new, changed_n, closed = _apply_statements(session, profile, p, now)
        sync.new_count, sync.changed_count, sync.missing_count = new, changed_n, closed
        sync.unchanged_count = staged - new - changed_n
        _drop_staged(session, sync.id)
        sync.status = "applied"
        sync.applied_at = now
        sync.applied_by = actor
        audit.record(session, "account_sync.apply", "AccountSync", sync.id, after={
            **counts(sync), "fund": sync.fund_code, "filename": sync.filename,
            "sha256": sync.sha256, "change_list": f"account_sync_change.sync_id={sync.id}",
            "change_rows": new + changed_n + closed}, actor=actor)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return sync


def _drop_staged(session: Session, sync_id: int) -> None:
    session.execute(delete(AccountSyncRow).where(AccountSyncRow.sync_id == sync_id))


def _apply_postgresql(session: Session, profile: AccountHolderProfile, p: dict, now
                      ) -> tuple[int, int, int]:
    """PostgreSQL: the apply as one statement — new accounts inserted, changed (and reopened)
    ones updated, missing ones closed, and the change list written from what each of them
    returns — so the staged lines are joined to the accounts once for each kind of change, and
    unchanged accounts are not written. Returns (new, changed, closed)."""
    fields, stop, source, changed = _conditions(profile)
    watched = fields + ["stop_message"]
    sets = ", ".join([f"{f} = x.{f}" for f in fields] +
                     ["stop_message = x.new_stop", "stop_source = x.new_source",
                      "closed_at = NULL", "last_sync_id = :sid"]
                     + (["phonetic_key = x.phonetic_key"] if "name" in fields else []))
    after = ", ".join([f"'{f}', s.{f}" for f in fields] + [f"'stop_message', {stop}"])
    picked = "".join(f"s.{f}, " for f in fields)
    closing = (
        f", cls AS (UPDATE account_holder a SET closed_at = :now, last_sync_id = :sid "  # noqa: S608
        f"WHERE a.fund_code = :fund AND a.closed_at IS NULL AND NOT EXISTS (SELECT 1 "
        f"FROM account_sync_row s WHERE s.sync_id = :sid "
        f"AND s.account_reference = a.account_reference) "
        f"RETURNING a.id, a.account_reference, {_json_of('postgresql', 'a', watched)} AS before)"
        if profile.complete else
        ", cls AS (SELECT 0 AS id, ''::text AS account_reference, ''::text AS before LIMIT 0)")
    statement = _sql(
        # 1. new accounts, in the file's order
        "WITH ins AS (INSERT INTO account_holder (fund_code, account_reference, name, address, "
        "postcode, balance, balance_date, stop_message, stop_source, phonetic_key, last_sync_id) "
        "SELECT :fund, s.account_reference, s.name, s.address, s.postcode, s.balance, "
        "s.balance_date, s.stop_message, CASE WHEN s.stop_message IS NULL THEN NULL "
        "ELSE 'file' END, s.phonetic_key, :sid FROM account_sync_row s "
        "WHERE s.sync_id = :sid AND NOT EXISTS (SELECT 1 FROM account_holder a "
        "WHERE a.fund_code = :fund AND a.account_reference = s.account_reference) "
        "ORDER BY s.line_no RETURNING id, account_reference), "
        # 2. changed and reopened accounts: the values before come from the same join
        f"upd AS (UPDATE account_holder t SET {sets} FROM (SELECT a.id AS aid, s.line_no, "  # noqa: S608
        f"{picked}s.phonetic_key, ({stop}) AS new_stop, ({source}) AS new_source, "
        f"a.closed_at AS was_closed, {_json_of('postgresql', 'a', watched)} AS before, "
        f"CAST(json_build_object({after}) AS TEXT) AS after {_JOIN} AND {changed}) x "
        f"WHERE t.id = x.aid RETURNING t.id, t.account_reference, x.line_no, x.was_closed, "
        f"x.before, x.after)"
        # 3. accounts a complete file no longer lists: closed, never deleted
        f"{closing}, "
        # the change list: new, then changed in the file's order, then closed
        "chg AS (INSERT INTO account_sync_change (sync_id, account_holder_id, account_reference, "
        "kind, before, after) SELECT :sid, u.id, u.account_reference, u.kind, u.before, u.after "
        # (new ones as inserted, in the file's order: sorting them again would cost seconds)
        "FROM (SELECT id, account_reference, 'new' AS kind, NULL::text AS before, "
        "NULL::text AS after FROM ins UNION ALL (SELECT id, account_reference, CASE WHEN "
        "was_closed IS NULL THEN 'changed' ELSE 'reopened' END, before, after FROM upd "
        "ORDER BY line_no) UNION ALL (SELECT id, account_reference, 'closed', before, NULL "
        "FROM cls ORDER BY id)) u) "
        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd), "
        "(SELECT count(*) FROM cls)")
    if profile.complete:
        statement = statement.bindparams(bindparam("now", now, type_=UTCDateTime()))
    new, changed_n, closed = session.execute(statement, p).one()
    return new, changed_n, closed


def _apply_statements(session: Session, profile: AccountHolderProfile, p: dict, now
                      ) -> tuple[int, int, int]:
    """SQLite: the apply as a statement for each step. Returns (new, changed, closed)."""
    dialect = "sqlite"
    fields, stop, source, changed = _conditions(profile)
    tp = [bindparam("now", now, type_=UTCDateTime())]
    watched = fields + ["stop_message"]
    # 1. new accounts
    new = session.execute(_sql(
        "INSERT INTO account_holder (fund_code, account_reference, name, address, postcode, "
        "balance, balance_date, stop_message, stop_source, phonetic_key, last_sync_id) "
        "SELECT :fund, s.account_reference, s.name, s.address, s.postcode, s.balance, "
        "s.balance_date, s.stop_message, CASE WHEN s.stop_message IS NULL THEN NULL "
        "ELSE 'file' END, s.phonetic_key, :sid FROM account_sync_row s "
        "WHERE s.sync_id = :sid AND NOT EXISTS (SELECT 1 FROM account_holder a "
        "WHERE a.fund_code = :fund AND a.account_reference = s.account_reference) "
        "ORDER BY s.line_no"), p).rowcount
    session.execute(_sql(
        "INSERT INTO account_sync_change (sync_id, account_holder_id, account_reference, kind)"
        " SELECT :sid, a.id, a.account_reference, 'new' FROM account_holder a "
        "WHERE a.last_sync_id = :sid AND a.fund_code = :fund ORDER BY a.id"), p)
    # 2. changed (and reopened) accounts: the change list first, then the accounts
    _insert_changed(session, dialect, fields, stop, changed, p)
    sets = ", ".join([f"{f} = s.{f}" for f in fields] +
                     [f"stop_message = {stop}", f"stop_source = {source}",
                      "closed_at = NULL", "last_sync_id = :sid"]
                     + (["phonetic_key = s.phonetic_key"] if "name" in fields else []))
    changed_n = session.execute(_sql(
        f"UPDATE account_holder AS a SET {sets} FROM account_sync_row s "  # noqa: S608
        f"WHERE s.sync_id = :sid AND a.fund_code = :fund "
        f"AND a.account_reference = s.account_reference AND {changed}"), p).rowcount
    # 3. accounts a complete file no longer lists: closed, never deleted
    closed = 0
    if profile.complete:
        missing = ("a.fund_code = :fund AND a.closed_at IS NULL AND NOT EXISTS (SELECT 1 "
                   "FROM account_sync_row s WHERE s.sync_id = :sid "
                   "AND s.account_reference = a.account_reference)")
        session.execute(_sql(
            "INSERT INTO account_sync_change (sync_id, account_holder_id, account_reference, "  # noqa: S608
            f"kind, before) SELECT :sid, a.id, a.account_reference, 'closed', "
            f"{_json_of(dialect, 'a', watched)} FROM account_holder a WHERE {missing} "
            f"ORDER BY a.id"), p)
        closed = session.execute(_sql(
            f"UPDATE account_holder AS a SET closed_at = :now, last_sync_id = :sid "  # noqa: S608
            f"WHERE {missing}").bindparams(*tp), p).rowcount
    return new, changed_n, closed


def _insert_changed(session, dialect, fields, stop, changed, p) -> None:
    watched_a = _json_of(dialect, "a", fields + ["stop_message"])
    fn = "json_build_object" if dialect == "postgresql" else "json_object"
    args = ", ".join([f"'{f}', s.{f}" for f in fields] + [f"'stop_message', {stop}"])
    after = f"CAST({fn}({args}) AS TEXT)" if dialect == "postgresql" else f"{fn}({args})"
    session.execute(_sql(
        "INSERT INTO account_sync_change (sync_id, account_holder_id, account_reference, kind, "
        "before, after) SELECT :sid, a.id, a.account_reference, "
        "CASE WHEN a.closed_at IS NULL THEN 'changed' ELSE 'reopened' END, "
        f"{watched_a}, {after} {_JOIN} AND {changed} ORDER BY s.line_no"), p)


def counts(sync: AccountSync) -> dict:
    return {"lines": sync.lines_total, "new": sync.new_count, "changed": sync.changed_count,
            "unchanged": sync.unchanged_count, "missing": sync.missing_count,
            "bad_lines": sync.bad_count}


def sync_result(sync: AccountSync) -> dict:
    return {"id": sync.id, "status": sync.status, "filename": sync.filename,
            "fund_code": sync.fund_code, "profile_id": sync.profile_id,
            "percent": sync.percent, "bytes_done": sync.bytes_done, "bytes_total": sync.size_bytes,
            **counts(sync), "bad_line_list": sync.bad_line_list[:1000],
            "sample": sync.sample_list, "error": sync.error,
            "created_by": sync.created_by, "applied_by": sync.applied_by,
            "applied_at": sync.applied_at.isoformat() if sync.applied_at else None}


def change_list(session: Session, sync_id: int, *, offset: int = 0, limit: int = 100) -> list[dict]:
    rows = session.scalars(select(AccountSyncChange).where(AccountSyncChange.sync_id == sync_id)
                           .order_by(AccountSyncChange.id).offset(offset).limit(limit)).all()
    return [{"account_holder_id": r.account_holder_id, "reference": r.account_reference,
             "kind": r.kind, "before": json.loads(r.before) if r.before else None,
             "after": json.loads(r.after) if r.after else None} for r in rows]


def discard(session: Session, sync_id: int, *, actor: str) -> AccountSync:
    """Drop a checked sync without applying it."""
    sync = session.scalar(for_update(session, select(AccountSync).where(AccountSync.id == sync_id)))
    if sync is None:
        raise NotFound(f"No account-holder sync {sync_id}.")
    if sync.status != "checked":
        raise Conflict(f"Account-holder sync {sync_id} is {sync.status}.")
    session.execute(delete(AccountSyncRow).where(AccountSyncRow.sync_id == sync_id))
    sync.status = "refused"
    sync.error = "Discarded without applying."
    audit.record(session, "account_sync.discard", "AccountSync", sync_id, actor=actor)
    session.commit()
    return sync


# ---------------------------------------------------------------------------------------------
# running outside the request

def start_background(app, sync_id: int, *, apply: bool = False, actor: str | None = None
                     ) -> threading.Thread:
    """Check (or apply) the sync in a thread of this process; the page polls its progress."""

    def target():
        from app.extensions import db
        from app.services.audit import set_actor

        with app.app_context():
            try:
                sync = db.session.get(AccountSync, sync_id)
                set_actor(actor or (sync.created_by if sync else "worker"))
                if apply:
                    apply_sync(db.session, sync_id, actor=actor or "worker")
                else:
                    check_sync(db.session, sync_id)
            except Exception:  # logged; the sync shows failed
                log.exception("background account sync %s", sync_id)
            finally:
                db.session.remove()

    th = threading.Thread(target=target, name=f"account-sync-{sync_id}", daemon=True)
    th.start()
    return th


def run_due() -> str | None:
    """`ims tick` job: files in the drop folder (one sub-folder per profile) are checked and
    applied; syncs whose check stopped (a crashed process) are marked failed."""
    from flask import current_app

    from app.extensions import db

    session = db.session
    out = []
    stale = utcnow() - STALE_AFTER
    stuck = session.scalars(select(AccountSync).where(
        AccountSync.status == "checking",
        func.coalesce(AccountSync.heartbeat_at, AccountSync.created_at) < stale)).all()
    for sync in stuck:
        session.execute(delete(AccountSyncRow).where(AccountSyncRow.sync_id == sync.id))
        sync.status = "failed"
        sync.error = "The check stopped (the process ended). Upload the file again."
        out.append(f"{sync.id}:failed")
    # an apply whose process ended rolled back: the sync can be applied again
    for sync in session.scalars(select(AccountSync).where(
            AccountSync.status == "applying",
            func.coalesce(AccountSync.heartbeat_at, AccountSync.created_at) < stale)).all():
        sync.status = "checked"
        out.append(f"{sync.id}:checked")
    session.commit()
    drop = current_app.config.get("IMS_ACCOUNT_DROP_DIR")
    if drop and os.path.isdir(drop):
        out += drop_folder(session, drop, current_app.instance_path,
                           current_app.config["IMS_ACCOUNT_SYNC_MAX_BYTES"])
    return f"account syncs {', '.join(out)}" if out else None


def drop_folder(session: Session, drop: str, instance_path: str, max_bytes: int) -> list[str]:
    """Each file in <drop>/<profile name>/ is synced (checked, then applied unless refused) and
    moved to done/ or failed/ beside it, with a .txt report."""
    out = []
    for profile in session.scalars(select(AccountHolderProfile).order_by(
            AccountHolderProfile.name)).all():
        folder = os.path.join(drop, profile.name)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or name.startswith("."):
                continue
            try:
                with open(path, "rb") as fh:
                    sync = receive(session, profile=profile, stream=fh, filename=name,
                                   actor="drop-folder", instance_path=instance_path,
                                   max_bytes=max_bytes, source="drop-folder",
                                   apply_after_check=True)
                sync = check_sync(session, sync.id)
                ok = sync.status == "applied"
                report = json.dumps(sync_result(sync), indent=1)
            except (ValidationError, Conflict, NotFound) as exc:
                session.rollback()
                ok, report = False, exc.message
                sync = None
            target = os.path.join(folder, "done" if ok else "failed")
            os.makedirs(target, exist_ok=True)
            os.replace(path, os.path.join(target, name))
            with open(os.path.join(target, name + ".txt"), "w", encoding="utf-8") as fh:
                fh.write(report)
            out.append(f"{name}:{sync.status if sync else 'refused'}")
    return out


def _register_job() -> None:
    from app.services.jobs import register_job

    register_job("account-syncs", run_due)


_register_job()
