"""GL export of 1,000,000 ledger lines, summarised, on PostgreSQL, against its baseline.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/gl_export.py

Loads --lines ledger lines (half Dr BANK, half Cr FUND, one income row per FUND line, a third
of them standard-rated VAT on Trade Waste, accounting dates over 60 days) straight into the
ledger tables with generate_series, then times:

* baseline: a plain GROUP BY of the same lines (accounting date, account, fund) plus writing
  their membership rows (INSERT INTO gl_export_line ... SELECT), rolled back;
* the export: gl_export.create_batch (membership, control total, the summary by date, GL code,
  cost centre, VAT code and direction with VAT split out, the file, audit, commit).

Prints the time of each, their ratio (target <= 5x) and the process's peak memory (peak RSS;
target < 300 MB). The database named by DATABASE_URL is WIPED.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app  # noqa: E402

_GROUPS = """
INSERT INTO posting_group (id, kind, number, created_at, created_by, accounting_date)
SELECT g, 'import', 'B' || g, now(), 'bench', DATE '2026-09-01' + (g % 60)
FROM generate_series(:lo, :hi) g"""
_TXNS = """
INSERT INTO income_transaction (id, receipt_number, fund_code, account_reference, amount,
    vat_code, vat_amount, payment_method_code, transaction_date, created_by, created_at,
    posting_group_id)
SELECT g, 'B' || g, CASE WHEN g % 3 = 0 THEN 'TWS' WHEN g % 3 = 1 THEN 'CTAX' ELSE 'PCN' END,
       'REF' || g, 600 + (g % 5000) * 6,
       CASE WHEN g % 3 = 0 THEN 'S' ELSE 'O' END,
       CASE WHEN g % 3 = 0 THEN (600 + (g % 5000) * 6) / 6 ELSE 0 END,
       'CASH', DATE '2026-09-01' + (g % 60), 'bench', now(), g
FROM generate_series(:lo, :hi) g"""
_LINES = """
INSERT INTO ledger_line (group_id, account, fund_code, account_reference, amount, transaction_id)
SELECT t.posting_group_id, v.account, v.fund_code, v.ref, v.amount, v.tid
FROM income_transaction t
CROSS JOIN LATERAL (VALUES ('BANK', NULL, NULL, t.amount, NULL::integer),
                           ('FUND', t.fund_code, t.account_reference, -t.amount, t.id))
     AS v(account, fund_code, ref, amount, tid)
WHERE t.id BETWEEN :lo AND :hi
ORDER BY t.id"""
_BASELINE_GROUP_BY = """
SELECT p.accounting_date, l.account, l.fund_code, sum(l.amount), count(*)
FROM ledger_line l JOIN posting_group p ON p.id = l.group_id
WHERE p.accounting_date <= :cut
GROUP BY 1, 2, 3"""
_BASELINE_MEMBERS = """
INSERT INTO gl_export_line (batch_id, ledger_line_id, voided)
SELECT :bid, l.id, false FROM ledger_line l JOIN posting_group p ON p.id = l.group_id
WHERE p.accounting_date <= :cut"""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db
        from app.models.gl import GlExportBatch
        from app.services import gl_export as G
        from app.services import gl_layouts as LAY
        from app.services.periods import today

        session = db.session
        groups = args.lines // 2
        t0 = time.perf_counter()
        step = 100_000
        for lo in range(1, groups + 1, step):
            hi = min(groups, lo + step - 1)
            p = {"lo": lo, "hi": hi}
            session.execute(text(_GROUPS), p)
            session.execute(text(_TXNS), p)
            session.execute(text(_LINES), p)
            session.commit()
        session.execute(text("SELECT setval('posting_group_id_seq', :n)"), {"n": groups})
        session.execute(text("SELECT setval('income_transaction_id_seq', :n)"), {"n": groups})
        session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE posting_group, income_transaction, ledger_line")
        n_lines = session.scalar(text("SELECT count(*) FROM ledger_line"))
        print(f"loaded {n_lines:,} ledger lines in {time.perf_counter() - t0:.1f} s")
        LAY.ensure_builtin(session)
        layout = LAY.get(session, "generic_journal_csv")
        session.commit()
        cut = today()
        rss_before = peak_mb()

        def baseline() -> float:
            start = time.perf_counter()
            bid = session.execute(text(
                "INSERT INTO gl_export_batch (number, cut_off, layout_id, summarised, status, "
                "line_count, row_count, control_total, filename, content_type, content, sha256, "
                "created_at, created_by, trigger) VALUES ('BASE', :cut, :lay, true, 'complete', "
                "0, 0, 0, '', 'text/csv', '', '', now(), 'bench', 'cli') RETURNING id"),
                {"cut": cut, "lay": layout.id}).scalar_one()
            rows = session.execute(text(_BASELINE_GROUP_BY), {"cut": cut}).all()
            session.execute(text(_BASELINE_MEMBERS), {"bid": bid, "cut": cut})
            elapsed = time.perf_counter() - start
            session.rollback()
            assert rows
            return elapsed

        baseline()  # warm the cache
        base = min(baseline(), baseline())
        start = time.perf_counter()
        batch = G.create_batch(session, cut_off=cut, layout="generic_journal_csv", actor="bench",
                               trigger="cli")
        took = time.perf_counter() - start
        batch = session.get(GlExportBatch, batch.id)
        print(f"batch {batch.number}: {batch.line_count:,} lines -> {batch.row_count:,} rows, "
              f"control total {G.Money(batch.control_total)}, file {len(batch.content):,} bytes")
        print(f"baseline (GROUP BY + membership rows): {base:.2f} s")
        print(f"GL export, summarised:                 {took:.2f} s")
        ratio = took / base
        print(f"ratio: {ratio:.2f}x (target <= 5x) {'OK' if ratio <= 5 else 'OVER'}")
        peak = peak_mb()
        print(f"peak memory (process peak RSS): {peak:.0f} MB (before the runs {rss_before:.0f} "
              f"MB; target < 300 MB) {'OK' if peak < 300 else 'OVER'}")
        assert dt.date  # (keeps the import for readers extending the bench)


if __name__ == "__main__":
    main()
