"""Import pipeline: receive, rules, fund patterns, validation, postings, suspense, duplicates,
resume after a crash, and reversal (real database, SQLite or PostgreSQL)."""

from __future__ import annotations

import io
import json
import random

import pytest
from sqlalchemy import func, select, update

from app.domain.errors import Conflict, ValidationError
from app.models.imports import FundReferencePattern, ImportBatch, ProcessingRule
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import Fund
from app.models.suspense import SuspenseItem
from app.services import imports as svc
from app.services.imports import sqlite as sqlite_writer
from app.services.imports.processing import IMPORT_SWITCH_INTERVAL, SimulatedCrash, writer_for
from app.services.ledger import trial_balance
from app.services.seed import make_reference
from tests.conftest import unique


def _receive(app, session, content: str | bytes, fmt="ims_csv", actor="clerk", **kw):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return svc.receive_import(session, stream=io.BytesIO(data), filename=f"{unique('f')}.csv",
                              fmt=fmt, actor=actor, instance_path=app.instance_path,
                              max_bytes=kw.pop("max_bytes", app.config["IMS_IMPORT_MAX_BYTES"]),
                              **kw)


@pytest.fixture
def fund(session):
    code = unique("IF")
    session.add(Fund(code=code, name="Import test fund " + code))
    session.commit()
    return code


def _ctax_refs(session, n):
    v = session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
    rng = random.Random()
    return [make_reference(v, rng) for _ in range(n)]


def test_narratives_are_written_apart_each_to_its_own_row(app, session, fund):
    """A posted row's narrative goes to transaction_narrative (erasable), matched to its own
    transaction also when suspense rows and rows without a narrative are among them; a row
    without a narrative has no narrative row; suspense items keep theirs. Each narrative keeps
    its transaction's fund and date (for the scoped search and its sort)."""
    from app.models.ledger import TransactionNarrative

    tag = unique("N", 7)
    lines = ["transaction_date,account_reference,amount,narrative,fund_code"]
    for i in range(40):
        if i % 5 == 3:  # no fund: to suspense
            lines.append(f"2026-01-05,{tag}U{i},1.{i:02d},held {i},")
        elif i % 3 == 0:
            lines.append(f"2026-01-05,{tag}R{i},2.{i:02d},,{fund}")
        else:
            lines.append(f"2026-01-{5 + i % 7:02d},{tag}R{i},2.{i:02d},paid {tag}R{i},{fund}")
    batch = _receive(app, session, "\n".join(lines) + "\n")
    batch = svc.process_import(session, batch.id, actor="clerk")
    assert batch.status == "succeeded", batch.errors_json
    assert (batch.rows_posted, batch.rows_suspense) == (32, 8)
    txs = session.scalars(select(Transaction).where(Transaction.of_import(batch.id))).all()
    with_narrative = {t.id for t in txs if int(t.account_reference[len(tag) + 1:]) % 3}
    assert len(with_narrative) == 21
    for t in txs:
        assert t.narrative == (f"paid {t.account_reference}" if t.id in with_narrative else None)
    N = TransactionNarrative
    kept = {row[0]: row[1:] for row in session.execute(
        select(N.transaction_id, N.fund_code, N.transaction_date).where(
            N.transaction_id.in_([t.id for t in txs])))}
    assert set(kept) == with_narrative
    # each with its transaction's fund and date
    assert {i: kept[i] for i in with_narrative} == {
        t.id: (fund, t.transaction_date) for t in txs if t.id in with_narrative}
    assert len({d for _f, d in kept.values()}) == 7
    items = session.scalars(select(SuspenseItem).where(SuspenseItem.import_id == batch.id)).all()
    assert sorted(i.narrative for i in items) == sorted(f"held {i}" for i in range(3, 40, 5))


def test_posts_rows_and_sends_unmatched_to_suspense(app, session, fund):
    tag = unique("Z", 7)
    refs = _ctax_refs(session, 1)
    csv_text = ("transaction_date,account_reference,amount,narrative,fund_code\n"
                f"2026-01-05,{tag}1,12.34,\"Smith, J\",{fund}\n"
                f"05/01/2026,{refs[0]},50.00,council tax,CTAX\n"
                f"2026-01-05,{tag}UNKNOWN,7.00,\"multi\nline narrative\",\n"
                f"2026-01-05,99999999X,8.00,bad check digit,CTAX\n")
    batch = _receive(app, session, csv_text)
    assert batch.status == "received" and batch.rows_total == 4 and batch.total_amount == 7734
    batch = svc.process_import(session, batch.id, actor="clerk")
    assert batch.status == "succeeded", batch.errors_json
    assert (batch.rows_posted, batch.rows_suspense) == (2, 2)
    txs = session.scalars(select(Transaction).where(Transaction.import_id == batch.id)
                          .order_by(Transaction.id)).all()
    assert [(t.fund_code, t.account_reference, t.amount) for t in txs] == [
        (fund, f"{tag}1", 1234), ("CTAX", refs[0], 5000)]
    assert txs[0].narrative == "Smith, J"
    items = session.scalars(select(SuspenseItem).where(SuspenseItem.import_id == batch.id)
                            .order_by(SuspenseItem.id)).all()
    assert [(i.reference_text, i.amount, i.status) for i in items] == [
        (f"{tag}UNKNOWN", 700, "unallocated"), ("99999999X", 800, "unallocated")]
    assert items[0].narrative == "multi\nline narrative"
    assert "No fund" in items[0].reason and "Check digit" in items[1].reason
    # every group: Dr Bank / Cr Fund or Cr Suspense, balanced
    lines = session.execute(select(LedgerLine.account, func.sum(LedgerLine.amount)).join(
        PostingGroup, PostingGroup.id == LedgerLine.group_id).where(
        PostingGroup.import_id == batch.id).group_by(LedgerLine.account)).all()
    assert dict(lines) == {"BANK": 7734, "FUND": -6234, "SUSPENSE": -1500}
    assert trial_balance(session)["balanced"]
    hist = [e.status for e in session.get(ImportBatch, batch.id).history]
    assert hist == ["received", "processing", "succeeded"]


def test_fund_from_reference_pattern_and_rules(app, session, fund):
    tag = unique("P", 6)
    session.add(FundReferencePattern(fund_code=fund, pattern=f"^{tag}[0-9]+$", priority=1))
    rule = ProcessingRule(name=unique("rule"), priority=1, import_type="ims_csv",
                          conditions=f'narrative contains "{tag}-PARK" AND amount between 1.00 20.00',
                          set_reference=f"{tag}777", stop_processing=True)
    later = ProcessingRule(name=unique("rule"), priority=2, import_type="ims_csv",
                           conditions=f'narrative contains "{tag}-PARK"', set_fund_code="CTAX")
    off = ProcessingRule(name=unique("rule"), priority=0, enabled=False,
                         conditions=f'narrative contains "{tag}"', set_fund_code="CTAX")
    session.add_all([rule, later, off])
    session.commit()
    try:
        csv_text = ("transaction_date,account_reference,amount,narrative\n"
                    f"2026-02-01,{tag}123,10.00,plain\n"
                    f"2026-02-01,junk,15.00,{tag}-PARK fine\n"
                    f"2026-02-01,junk,25.00,{tag}-PARK too big for rule 1\n")
        batch = svc.process_import(session, _receive(app, session, csv_text).id)
        txs = session.scalars(select(Transaction).where(Transaction.import_id == batch.id)
                              .order_by(Transaction.id)).all()
        # row 1 by pattern; row 2: rule 1 rewrote the reference (pattern then matched), stop
        # kept rule 2 away; row 3: rule 2 set CTAX, "JUNK" fails CTAX validation -> suspense
        assert [(t.fund_code, t.account_reference) for t in txs] == [
            (fund, f"{tag}123"), (fund, f"{tag}777")]
        items = session.scalars(select(SuspenseItem).where(SuspenseItem.import_id == batch.id)).all()
        assert [(i.fund_code, i.amount) for i in items] == [("CTAX", 2500)]
    finally:
        for r in (rule, later, off):
            r.enabled = False
        session.commit()


def test_malformed_file_posts_nothing_and_names_lines(app, session, fund):
    csv_text = ("transaction_date,account_reference,amount,fund_code\n"
                f"2026-01-05,A1,1.234,{fund}\n"
                f"2026-02-30,A2,5.00,{fund}\n"
                f"2026-01-05,A3,abc,{fund}\n"
                f"2026-01-05,A4,5.00\n"
                f"2026-01-05,A5,5.00,{fund},extra\n"
                f"2026-01-05,A6,5.00,{fund}\n")
    before = session.scalar(select(func.count()).select_from(Transaction))
    with pytest.raises(svc.ImportRejected) as exc:
        _receive(app, session, csv_text)
    lines = {e["line"]: e["message"] for e in exc.value.lines}
    assert set(lines) == {2, 3, 4, 5, 6}
    assert "two decimal places" in lines[2] and "not a real date" in lines[3]
    assert "not a number" in lines[4] and "columns" in lines[5] and "columns" in lines[6]
    assert session.scalar(select(func.count()).select_from(Transaction)) == before
    batch = session.get(ImportBatch, exc.value.import_id)
    assert batch.status == "failed" and batch.active_sha256 is None


def test_same_file_twice_is_refused_and_earlier_lines_reported(app, session, fund):
    tag = unique("D", 6)
    base = f"transaction_date,account_reference,amount,fund_code\n2026-03-01,{tag},9.99,{fund}\n"
    b1 = svc.process_import(session, _receive(app, session, base).id)
    assert b1.status == "succeeded"
    with pytest.raises(Conflict):
        _receive(app, session, base)
    b2 = svc.process_import(session, _receive(app, session, base + f"2026-03-02,{tag},9.99,{fund}\n").id)
    assert b2.rows_duplicate == 1
    dups = json.loads(b2.duplicates_json)
    assert dups[0]["line"] == 2 and f"import {b1.id}" in dups[0]["message"]
    assert (b2.first_date.isoformat(), b2.last_date.isoformat()) == ("2026-03-01", "2026-03-02")
    # an import received before dates were recorded still counts as covering every date
    session.execute(update(ImportBatch.__table__).where(ImportBatch.id.in_([b1.id, b2.id]))
                    .values(first_date=None, last_date=None))
    session.commit()
    b3 = svc.process_import(session, _receive(
        app, session, base + f"2026-03-03,{tag},9.99,{fund}\n2026-03-04,{tag},1.00,{fund}\n").id)
    assert b3.rows_duplicate == 1 and json.loads(b3.duplicates_json)[0]["line"] == 2
    # the same reference and amount on dates no earlier import covers: not a duplicate
    b4 = svc.process_import(session, _receive(
        app, session, f"transaction_date,account_reference,amount,fund_code\n"
                      f"2026-05-01,{tag},9.99,{fund}\n").id)
    assert b4.status == "succeeded" and b4.rows_duplicate == 0


def test_crash_mid_import_resumes_without_double_posting(app, session, fund):
    tag = unique("C", 6)
    rows = "".join(f"2026-04-01,{tag}{i},1.00,{fund}\n" for i in range(25))
    batch = _receive(app, session, "transaction_date,account_reference,amount,fund_code\n" + rows)
    with pytest.raises(SimulatedCrash):
        svc.process_import(session, batch.id, chunk_size=10, fail_after_chunks=1)
    session.rollback()
    b = session.get(ImportBatch, batch.id)
    session.refresh(b)
    assert b.status == "processing" and b.rows_done == 10 and b.last_line_done == 11
    # not stale yet: another runner does not take it
    assert svc.process_import(session, batch.id).rows_done == 10
    svc.retry_import(session, batch.id, actor="clerk")
    b = svc.process_import(session, batch.id, chunk_size=10)
    assert b.status == "succeeded" and b.rows_posted == 25
    assert session.scalar(select(func.count()).select_from(Transaction).where(
        Transaction.import_id == batch.id)) == 25
    assert session.scalar(select(func.sum(Transaction.amount)).where(
        Transaction.import_id == batch.id)) == 2500


def test_failure_in_a_middle_chunk_keeps_the_posted_lines_before_it(app, session, fund,
                                                                    monkeypatch):
    """Chunks may be written at once (two connections on PostgreSQL) but commit in file order: a
    chunk that fails rolls back the chunks after it, progress stays "the file up to a line", and
    a retry posts the rest once."""
    tag = unique("M", 6)
    rows = "".join(f"2026-04-02,{tag}{i},1.{i:02d},{fund}\n" for i in range(50))
    batch = _receive(app, session, "transaction_date,account_reference,amount,fund_code\n" + rows)
    writer = writer_for(session)
    real_post = writer.post_chunk

    def post_or_fail(s, info, ctx, staged, now, actor):
        if staged.first_line <= 25 <= staged.last_line:  # the third chunk (lines 22-31)
            raise RuntimeError("disk full")
        real_post(s, info, ctx, staged, now, actor)

    monkeypatch.setattr(writer, "post_chunk", post_or_fail)
    b = svc.process_import(session, batch.id, chunk_size=10)
    assert b.status == "failed" and "disk full" in b.errors_json
    assert (b.rows_done, b.last_line_done, b.rows_posted) == (20, 21, 20)
    lines = session.scalars(select(SuspenseItem.id).where(SuspenseItem.import_id == batch.id)).all()
    numbers = session.scalars(select(Transaction.receipt_number).where(
        Transaction.import_id == batch.id)).all()
    assert lines == [] and sorted(numbers, key=lambda n: int(n.split("-")[1])) == [
        f"I{batch.id}-{line}" for line in range(2, 22)]
    monkeypatch.setattr(writer, "post_chunk", real_post)
    svc.retry_import(session, batch.id, actor="clerk")
    b = svc.process_import(session, batch.id, chunk_size=10)
    assert b.status == "succeeded" and (b.rows_done, b.rows_posted) == (50, 50)
    amounts = session.scalars(select(Transaction.amount).where(
        Transaction.import_id == batch.id)).all()
    assert len(amounts) == 50 and sum(amounts) == b.total_amount == sum(100 + i for i in range(50))
    assert trial_balance_is_zero(session)


def trial_balance_is_zero(session) -> bool:
    return session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0))) == 0


def test_two_imports_at_once_post_every_row_once(app, session, fund):
    """Two imports processed at the same time (each with its own writers on PostgreSQL)."""
    import threading

    from app.extensions import db

    batches = []
    for k in range(2):
        tag = unique(f"P{k}", 6)
        rows = "".join(f"2026-04-03,{tag}{i},2.{i % 100:02d},{fund}\n" for i in range(600))
        batches.append(_receive(app, session, "transaction_date,account_reference,amount,"
                                              "fund_code\n" + rows).id)
    session.commit()
    errors = []

    def run(batch_id):
        with app.app_context():
            try:
                svc.process_import(db.session, batch_id, actor="clerk", chunk_size=50)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []
    session.expire_all()
    for batch_id in batches:
        b = session.get(ImportBatch, batch_id)
        assert b.status == "succeeded" and b.rows_posted == 600, b.errors_json
        n, total = session.execute(select(func.count(), func.sum(Transaction.amount)).where(
            Transaction.import_id == batch_id)).one()
        assert (n, total) == (600, b.total_amount)
        assert session.scalar(select(func.count(func.distinct(PostingGroup.number))).where(
            PostingGroup.import_id == batch_id)) == 600
    assert trial_balance_is_zero(session)


def test_reversal_withdraws_suspense_and_reverses_postings(app, session, fund):
    tag = unique("R", 6)
    csv_text = ("transaction_date,account_reference,amount,fund_code\n"
                f"2026-05-01,{tag}A,10.00,{fund}\n2026-05-01,{tag}B,3.00,\n")
    batch = svc.process_import(session, _receive(app, session, csv_text).id)
    with pytest.raises(ValidationError):
        svc.reverse_import(session, batch.id, actor="manager", reason=" ")
    svc.reverse_import(session, batch.id, actor="manager", reason="Wrong file from the bank")
    b = session.get(ImportBatch, batch.id)
    assert b.status == "reversed" and b.reversed_by == "manager"
    assert [e.status for e in b.history][-1] == "reversed"
    items = session.scalars(select(SuspenseItem).where(SuspenseItem.import_id == batch.id)).all()
    assert [i.status for i in items] == ["withdrawn"]
    net = session.execute(select(LedgerLine.account, func.sum(LedgerLine.amount)).join(
        PostingGroup, PostingGroup.id == LedgerLine.group_id).where(
        PostingGroup.import_id == batch.id).group_by(LedgerLine.account)).all()
    assert all(v == 0 for _, v in net) and len(net) == 3
    rev = session.scalars(select(PostingGroup).where(PostingGroup.import_id == batch.id,
                                                     PostingGroup.kind == "reversal")).all()
    assert len(rev) == 2 and all(g.reason == "Wrong file from the bank" for g in rev)
    with pytest.raises(Conflict):
        svc.reverse_import(session, batch.id, actor="manager", reason="again")


def test_reversal_refused_when_suspense_item_allocated(app, session, fund):
    tag = unique("A", 6)
    csv_text = f"transaction_date,account_reference,amount\n2026-05-01,{tag}B,3.00\n"
    batch = svc.process_import(session, _receive(app, session, csv_text).id)
    item = session.scalar(select(SuspenseItem).where(SuspenseItem.import_id == batch.id))
    item.status = "allocated"
    session.commit()
    with pytest.raises(Conflict) as exc:
        svc.reverse_import(session, batch.id, actor="manager", reason="wrong")
    assert str(item.id) in exc.value.message and "allocated" in exc.value.message
    assert session.get(ImportBatch, batch.id).status == "succeeded"


def test_file_over_size_limit_is_refused(app, session):
    with pytest.raises(ValidationError) as exc:
        _receive(app, session, "transaction_date,account_reference,amount\n" + "x" * 2000,
                 max_bytes=1000)
    assert "larger than the limit" in exc.value.message


def test_tick_job_processes_queued_imports(app, session, fund):
    from app.services.jobs import run_tick

    tag = unique("K", 6)
    batch = _receive(app, session, f"transaction_date,account_reference,amount,fund_code\n"
                                   f"2026-06-01,{tag},4.00,{fund}\n")
    session.commit()
    out = list(run_tick())
    assert any(f"{batch.id}:succeeded" in line for line in out)
    session.expire_all()
    assert session.get(ImportBatch, batch.id).status == "succeeded"


def test_cli_import_command(app, session, fund, tmp_path):
    from app.cli import ims_cli

    tag = unique("L", 6)
    path = tmp_path / "cli.csv"
    path.write_text("transaction_date,account_reference,amount,fund_code\n"
                    f"2026-07-01,{tag}1,3.00,{fund}\n2026-07-01,{tag}2,4.00,\n")
    runner = app.test_cli_runner()
    result = runner.invoke(ims_cli, ["import", str(path), "--format", "ims_csv", "--user", "clerk"])
    assert result.exit_code == 0, result.output
    assert "succeeded; 1 posted, 1 to suspense, total £7.00" in result.output
    again = runner.invoke(ims_cli, ["import", str(path), "--format", "ims_csv"])
    assert again.exit_code == 1 and "already imported" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_date,account_reference,amount\n2026-07-01,A,1.999\n")
    result = runner.invoke(ims_cli, ["import", str(bad), "--format", "ims_csv"])
    assert result.exit_code == 1 and "Line 2" in result.output


def test_import_shortens_the_thread_switch_interval_only_while_it_runs(app, session, fund,
                                                                        monkeypatch):
    """Writer threads get the GIL back quickly while an import runs; the interpreter's own
    interval comes back afterwards, also when the import fails."""
    import sys

    seen = []
    writer = writer_for(session)
    real_post = writer.post_chunk

    def post(s, info, ctx, staged, now, actor):
        seen.append(sys.getswitchinterval())
        if staged.first_line > 30:
            raise RuntimeError("disk full")
        real_post(s, info, ctx, staged, now, actor)

    monkeypatch.setattr(writer, "post_chunk", post)
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    try:
        rows = "".join(f"2026-04-04,{unique('W', 6)},1.00,{fund}\n" for _ in range(40))
        batch = _receive(app, session, "transaction_date,account_reference,amount,fund_code\n"
                         + rows)
        b = svc.process_import(session, batch.id, chunk_size=10)
        assert b.status == "failed" and b.rows_done == 30  # lines 2-31 posted, then "disk full"
        assert seen and all(v == pytest.approx(IMPORT_SWITCH_INTERVAL) for v in seen)
        assert sys.getswitchinterval() == 0.004
    finally:
        sys.setswitchinterval(before)


def test_sqlite_writer_page_cache_is_put_back(app):
    from app.extensions import db

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's per-connection page cache")
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        before = raw.execute("PRAGMA cache_size").fetchone()[0]
        restore = sqlite_writer.prepare_connection(conn)
        assert raw.execute("PRAGMA cache_size").fetchone()[0] == -sqlite_writer.WRITER_CACHE_KIB
        restore()
        assert raw.execute("PRAGMA cache_size").fetchone()[0] == before


def test_sqlite_statements_keep_one_shape_per_table(app, session, fund):
    """Chunks with different mixes of posted and suspense rows still use one statement text per
    table: the driver caches prepared statements by text, and a text per row count would keep
    a large statement per chunk in memory over a big file."""
    from app.extensions import db

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's multi-row VALUES statements")
    tag = unique("V", 6)
    # chunk k of 10 rows has k rows without a fund (to suspense): every chunk a different mix
    lines = [f"2026-04-06,{tag}{k}-{i},4.00,{'' if i < k else fund}\n"
             for k in range(1, 6) for i in range(10)]
    batch = _receive(app, session, "transaction_date,account_reference,amount,fund_code\n"
                     + "".join(lines))
    sqlite_writer._insert_sql.cache_clear()
    b = svc.process_import(session, batch.id, chunk_size=10)
    assert b.status == "succeeded" and (b.rows_posted, b.rows_suspense) == (35, 15)
    assert sqlite_writer._insert_sql.cache_info().currsize == 3  # groups, transactions, suspense
    assert trial_balance_is_zero(session)


def test_agent_file_debits_agent_clearing_and_bank_files_debit_bank(app, session):
    """Issue 17: a payment agent's file (allpay) posts Dr Agent clearing (dimension ALLPAY), not
    Bank; a bank's file still posts Dr Bank."""
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "imports", "allpay_sample.txt")
    with open(path, "rb") as fh:
        content = fh.read()
    batch = svc.receive_import(session, stream=io.BytesIO(content), filename=f"{unique('a')}.txt",
                               fmt="allpay", actor="clerk", instance_path=app.instance_path,
                               max_bytes=app.config["IMS_IMPORT_MAX_BYTES"])
    batch = svc.process_import(session, batch.id, actor="clerk")
    assert batch.status == "succeeded", batch.errors_json
    debits = session.execute(select(LedgerLine.account, LedgerLine.account_reference,
                                    func.sum(LedgerLine.amount)).join(
        PostingGroup, PostingGroup.id == LedgerLine.group_id).where(
        PostingGroup.import_id == batch.id, LedgerLine.amount > 0)
        .group_by(LedgerLine.account, LedgerLine.account_reference)).all()
    assert [(a, r) for a, r, _ in debits] == [("AGENT_CLEARING", "ALLPAY")]
    assert debits[0][2] == batch.total_amount
    assert trial_balance(session)["balanced"]
