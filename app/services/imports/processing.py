"""Posting a received import: the file is parsed again (it was checked whole on receipt) and
each chunk's rows decided (rules, fund, validation) and staged by this thread, while writer
threads, each on a connection of its own, post the chunks and commit them in file order with the
batch's progress. What has been committed is always the file up to a line, so a crash or a
failed chunk leaves the lines before it posted and a re-run resumes after them.

The database's writer (app.services.imports.postgres or .sqlite) does the posting; this module
is the same for both.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from itertools import islice

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import metrics
from app.domain.errors import NotFound, ValidationError
from app.domain.money import Money, gbp
from app.importers import LineError, Summary, parse_file
from app.models.base import utcnow
from app.models.imports import BankProfile, ImportBatch, ImportStatusEvent
from app.observability import current_request_id, new_request_id, request_id_context
from app.services import audit
from app.services.imports import postgres, sqlite
from app.services.imports.batches import STALE_AFTER, set_status
from app.services.imports.lookups import MAX_DUPLICATES, find_duplicates, is_pg
from app.services.imports.rows import Decision, RowContext, allpay_methods
from app.services.imports.staging import BatchInfo, Staged, stage

log = logging.getLogger(__name__)


def writer_for(session: Session):
    """The module that posts chunks on this session's database."""
    return postgres if is_pg(session) else sqlite


def _claim(session: Session, batch_id: int, actor: str) -> ImportBatch | None:
    """Atomically take a queued (or stale, crashed) batch; None if someone else has it."""
    now = utcnow()
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


def process_import(session: Session, batch_id: int, *, actor: str | None = None,
                   chunk_size: int | None = None, fail_after_chunks: int | None = None
                   ) -> ImportBatch:
    """Post a received import. Safe to call again after a crash: it resumes after the last
    committed line. ``fail_after_chunks`` simulates a crash (tests). Logs under the id of the
    request that received the file, wherever it runs (a thread, `ims worker`)."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise NotFound(f"No import {batch_id}.")
    rid = batch.request_id or current_request_id() or new_request_id("import-")
    with request_id_context(rid):
        batch = _process(session, batch, actor, chunk_size, fail_after_chunks)
        if batch.status in ("succeeded", "failed") and batch.finished_at is not None:
            metrics.import_finished(batch.status, batch.rows_posted, batch.rows_suspense)
            log.info("import %s %s: %s rows posted, %s to suspense", batch.id, batch.status,
                     batch.rows_posted, batch.rows_suspense)
    return batch


def _process(session: Session, batch: ImportBatch, actor: str | None, chunk_size: int | None,
             fail_after_chunks: int | None) -> ImportBatch:
    batch_id = batch.id
    actor = actor or batch.created_by
    batch = _claim(session, batch_id, actor)
    if batch is None:
        return session.get(ImportBatch, batch_id)
    if chunk_size is None:
        writer = writer_for(session)
        chunk_size = min(writer.CHUNK, max(200, batch.rows_total // writer.STEPS))
    try:
        _run(session, batch, actor, chunk_size, fail_after_chunks)
    except SimulatedCrash:
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
        set_status(session, batch, "failed", actor, msg[:300] + (
            f" (posted through line {batch.last_line_done}; run again to resume)"
            if batch.rows_done else " (nothing posted)"))
        batch.finished_at = utcnow()
        session.commit()
    return session.get(ImportBatch, batch_id)


def _run(session: Session, batch: ImportBatch, actor: str, chunk_size: int,
         fail_after_chunks: int | None) -> None:
    ctx = RowContext.load(session, batch.format)
    ctx.statement = batch.bank_account_id is not None
    writer = writer_for(session)
    profile = session.get(BankProfile, batch.profile_id) if batch.profile_id else None
    summary = Summary()
    default_method = ctx.default_method(batch.format)
    info = _batch_info(session, batch)
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

    def checked(decisions: list[Decision]) -> tuple[Staged, list[dict]]:
        """Validate the chunk's rows (failures go to suspense) and stage them; its possible
        duplicates."""
        ctx.prefetch_accounts(decisions)
        for d in decisions:
            ctx.validate(d)
        dups = find_duplicates(session, info.id, decisions)
        return stage(writer, session, ctx, info.id, decisions), dups

    _write_in_parallel(session, writer, info, ctx, actor, next_chunk, checked, fail_after_chunks)
    session.rollback()  # end the look-ups' transaction; the writers' progress is read afresh
    b = session.get(ImportBatch, info.id)
    done = b.rows_posted + b.rows_suspense + b.rows_settlement
    if b.rows_done and done != b.rows_total:
        raise ValidationError(f"Rows processed ({done}) differ from rows checked "
                              f"({b.rows_total}).")
    if b.posted_amount + b.suspense_amount + b.settlement_amount != b.total_amount:
        raise ValidationError("The amounts posted differ from the file's total.")
    b.heartbeat_at = None
    b.finished_at = utcnow()
    set_status(session, b, "succeeded", actor,
            f"{b.rows_posted} posted, {b.rows_suspense} to suspense, {gbp(b.total_amount)}"
            + (f"; {b.rows_settlement} settlement line(s) kept for reconciliation, "
               f"{gbp(b.settlement_amount)}" if b.rows_settlement else ""))
    session.commit()


def _batch_info(session: Session, batch: ImportBatch) -> BatchInfo:
    """What the writers need of the batch; a bank statement's account and its ledger dimension."""
    ref = None
    if batch.bank_account_id is not None:
        from app.models.reconciliation import BankAccount

        ref = session.scalar(select(BankAccount.ledger_reference).where(
            BankAccount.id == batch.bank_account_id))
    return BatchInfo(batch.id, batch.office_code, batch.format, ref)


def _record_chunk(session: Session, batch_id: int, staged: Staged, dups: list[dict],
                  actor: str) -> None:
    """The batch's progress after a chunk, and its audit event, in the chunk's transaction (so
    the progress is exactly what has been posted, and a re-run resumes after it)."""
    n_posted, n_held, p_amt, s_amt = staged.counts
    t = ImportBatch.__table__
    n_settled = len(staged.settled)
    values = {"rows_done": t.c.rows_done + staged.n + n_settled,
              "rows_posted": t.c.rows_posted + n_posted,
              "rows_suspense": t.c.rows_suspense + n_held,
              "posted_amount": t.c.posted_amount + p_amt,
              "suspense_amount": t.c.suspense_amount + s_amt,
              "last_line_done": staged.last_line, "heartbeat_at": utcnow()}
    if n_settled:
        from app.services.reconciliation import record_settlement_lines

        amount = record_settlement_lines(session, batch_id, staged.settled)
        values["rows_settlement"] = t.c.rows_settlement + n_settled
        values["settlement_amount"] = t.c.settlement_amount + amount
    if dups:
        old = session.execute(select(t.c.duplicates_json).where(t.c.id == batch_id)).scalar()
        values["rows_duplicate"] = t.c.rows_duplicate + len(dups)
        values["duplicates_json"] = json.dumps((json.loads(old or "[]") + dups)[:MAX_DUPLICATES])
    session.execute(update(t).where(t.c.id == batch_id).values(**values))
    audit.record(session, "post", "ImportBatch", batch_id, after={
        "lines": f"{staged.first_line}-{staged.last_line}", "posted": n_posted,
        "to_suspense": n_held, "amount": str(Money(p_amt + s_amt))}, actor=actor)


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


def _write_in_parallel(session: Session, writer, info: BatchInfo, ctx: RowContext, actor: str,
                       next_chunk, checked, fail_after_chunks: int | None) -> None:
    """Post the chunks on connections of their own (``writer.WRITERS`` of them: two on
    PostgreSQL, one on SQLite), in file order of commit.

    This thread parses, decides, validates and stages each chunk (and looks up duplicates on
    ``session``); writer k % writers posts chunk k, then waits for chunk k-1 to commit before
    recording progress and committing. So what has been committed is always the file up to a
    line, as with one connection: a failure in chunk k rolls back the chunks after it, and a
    re-run resumes after the last line committed.
    """
    engine = session.get_bind()
    cond = threading.Condition()
    state: dict = {"next": 0, "stop_at": None, "error": None}
    queues: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in range(writer.WRITERS)]

    def stopped(k: int) -> bool:
        """Whether chunk k must not commit (a chunk before it, or it, failed). Hold cond."""
        return state["stop_at"] is not None and k >= state["stop_at"]

    def fail(k: int, exc: BaseException) -> None:
        with cond:
            if state["stop_at"] is None or k < state["stop_at"]:
                state["stop_at"], state["error"] = k, exc
            cond.notify_all()

    def write(q: queue.Queue) -> None:
        wc = engine.connect()  # one connection for all the writer's chunks
        ws = Session(bind=wc)
        restore = writer.prepare_connection(wc)
        try:
            while (item := q.get()) is not None:
                k, staged, dups = item
                try:
                    with cond:
                        if stopped(k):
                            continue
                    if staged.n:  # (a chunk of settlement lines only writes no postings)
                        writer.post_chunk(ws, info, ctx, staged, utcnow(), actor)
                    with cond:  # commit in file order
                        while state["next"] != k and not stopped(k):
                            cond.wait()
                        if stopped(k):
                            ws.rollback()
                            continue
                    _record_chunk(ws, info.id, staged, dups, actor)
                    ws.commit()
                    if k == 0:
                        writer.after_first_chunk(ws)
                    with cond:  # (cond's lock is re-entrant: fail() takes it again)
                        if fail_after_chunks is not None and k + 1 >= fail_after_chunks:
                            fail(k + 1, SimulatedCrash(f"simulated crash after {k + 1} chunk(s)"))
                        state["next"] = k + 1
                        cond.notify_all()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    ws.rollback()
                    fail(k, exc)
        finally:
            ws.close()
            restore()
            wc.close()

    threads = [threading.Thread(target=write, args=(q,), name=f"import-{info.id}-writer-{i}",
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


class SimulatedCrash(RuntimeError):
    """The crash ``fail_after_chunks`` simulates (tests): the import stops as a killed process
    would, leaving its batch "processing" to be resumed."""


def _rows_after(items, resume_after: int):
    """The file's rows after line ``resume_after``; the file was checked whole on receipt, so a
    line error now means it changed on disk."""
    for item in items:
        if isinstance(item, LineError):
            raise ValidationError(f"The file changed since it was checked: {item.message}")
        if item.line > resume_after:
            yield item
