"""Import benchmark: a generated N-line IMS CSV imported end to end (rules, fund patterns,
reference validation, postings, suspense) against baselines in the same run, each run just
before and just after the import: COPY (PostgreSQL) / executemany (SQLite) of the same rows into
copies of the ledger's tables with the same indexes (on PostgreSQL every index the database
has, the trigram GIN indexes included) and CHECK constraints; and a one-table executemany.

    .venv/bin/python bench/import.py                       # SQLite (a fresh file in instance/)
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/import.py
    .venv/bin/python bench/import.py --rows 1000000 --memory   # peak memory for a big file

The database named by DATABASE_URL is wiped (schema recreated). Prints its figures.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("IMS_ENV", "development")


def generate(path: str, rows: int, refs_ctax: list[str], seed: int = 7) -> tuple[int, int]:
    """Mix: 50% explicit fund (TWS), 25% Council Tax refs by pattern (check digit validated),
    10% rule-routed, 15% unmatched -> suspense. Returns the total in pence and the number of
    unmatched lines."""
    rng = random.Random(seed)
    total = unmatched = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("transaction_date,account_reference,amount,narrative,fund_code\n")
        for i in range(rows):
            pence = rng.randint(100, 50000)
            total += pence
            amount = f"{pence // 100}.{pence % 100:02d}"
            k = rng.random()
            if k < 0.5:
                fh.write(f"2026-01-{1 + i % 28:02d},TW{i:08d},{amount},\"Trade waste, inv {i}\",TWS\n")
            elif k < 0.75:
                fh.write(f"2026-01-{1 + i % 28:02d},{refs_ctax[i % len(refs_ctax)]},{amount},council tax,\n")
            elif k < 0.85:
                fh.write(f"2026-01-{1 + i % 28:02d},WASTE{i},{amount},BENCHRULE waste,\n")
            else:
                fh.write(f"2026-01-{1 + i % 28:02d},?{i},{amount},unknown payer,\n")
                unmatched += 1
    return total, unmatched


def setup(url: str | None):
    from _setup import fresh_app

    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models.imports import FundReferencePattern, ProcessingRule
        from app.models.reference import Fund
        from app.services.seed import make_reference

        db.session.add(FundReferencePattern(fund_code="CTAX", pattern=r"^[0-9]{8}[0-9X]$",
                                            priority=1))
        db.session.add(ProcessingRule(name="bench waste", priority=1,
                                      conditions='narrative contains "BENCHRULE"',
                                      set_fund_code="TWS", stop_processing=True))
        db.session.commit()
        v = db.session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
        rng = random.Random(3)
        refs = [make_reference(v, rng) for _ in range(2000)]
    return app, refs


def quiesce(app) -> None:
    """Start each timed phase alike: dirty buffers written out (PostgreSQL CHECKPOINT) and the
    OS's dirty pages flushed, so neither phase pays for the other's writes."""
    from app.extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as conn:
                conn.exec_driver_sql("CHECKPOINT")
    os.sync()


def raw_baseline(app, path: str) -> float:
    """Parse the CSV with the csv module and executemany the same rows into a plain table."""
    import csv

    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bench_raw")
            conn.exec_driver_sql("CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, d DATE, "
                                 "ref VARCHAR(100), amount BIGINT, narrative VARCHAR(500), "
                                 "fund VARCHAR(10))" if db.engine.dialect.name == "sqlite" else
                                 "CREATE TABLE bench_raw (id SERIAL PRIMARY KEY, d DATE, "
                                 "ref VARCHAR(100), amount BIGINT, narrative VARCHAR(500), "
                                 "fund VARCHAR(10))")
        quiesce(app)
        t0 = time.perf_counter()
        with db.engine.begin() as conn, open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            batch = []
            stmt = text("INSERT INTO bench_raw (d, ref, amount, narrative, fund) "
                        "VALUES (:d, :r, :a, :n, :f)")
            from datetime import date

            for rec in reader:
                y, m, d = rec[0].split("-")
                batch.append({"d": date(int(y), int(m), int(d)), "r": rec[1],
                              "a": int(rec[2].replace(".", "")), "n": rec[3], "f": rec[4] or None})
                if len(batch) == 5000:
                    conn.execute(stmt, batch)
                    batch = []
            if batch:
                conn.execute(stmt, batch)
        return time.perf_counter() - t0


LEDGER_TABLES = ("posting_group", "income_transaction", "transaction_narrative", "ledger_line",
                 "suspense_item")


def _copy_tables(conn):
    """Copies of the ledger's tables an import writes, with the same columns, keys, CHECK
    constraints and indexes (no foreign keys or triggers), named bench_copy_<table>. Returns
    {table: copy}.

    On PostgreSQL the indexes are copied from the database's own definitions (pg_get_indexdef),
    so the copies have every index the import's tables have — the trigram GIN indexes on
    narratives and references (created as database objects, not in the models' metadata),
    INCLUDE columns and partial indexes as they are."""
    from flask_appbuilder import Model
    from sqlalchemy import CheckConstraint, Column, Index, MetaData, Table, literal_column

    def server_default(c):
        """The column's default, as the database's own (COPY does not run Python defaults)."""
        if c.server_default is not None:
            return c.server_default.arg
        if c.default is not None and c.default.is_scalar:
            arg = c.default.arg
            return literal_column(str(int(arg)) if isinstance(arg, (bool, int)) else repr(arg))
        return None

    pg = conn.dialect.name == "postgresql"
    md = MetaData()
    copies = {}
    for name in LEDGER_TABLES:
        src = Model.metadata.tables[name]
        # (PostgreSQL: unique constraints come with the database's indexes, below)
        cols = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                       unique=c.unique and not pg, autoincrement=c.autoincrement,
                       server_default=server_default(c)) for c in src.columns]
        checks = [CheckConstraint(ck.sqltext, name=f"bench_copy_{ck.name}")
                  for ck in src.constraints if isinstance(ck, CheckConstraint)
                  and isinstance(ck.name, str)]
        copy = Table(f"bench_copy_{name}", md, *cols, *checks)
        if not pg:
            for ix in src.indexes:
                Index(f"bench_copy_{ix.name}", *[copy.c[c.name] for c in ix.columns],
                      unique=ix.unique,
                      **{k: v for k, v in ix.dialect_kwargs.items() if k.endswith("_where")})
        copies[name] = copy
    md.drop_all(conn)
    md.create_all(conn)
    if pg:
        for name in LEDGER_TABLES:
            for ix_name, ddl in conn.exec_driver_sql(
                    "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid "
                    f"WHERE x.indrelid = '{name}'::regclass AND NOT x.indisprimary").all():
                ddl, n = re.subn(rf"INDEX {ix_name} ON (\w+\.)?{name} ",
                                 f"INDEX bench_copy_{ix_name} ON bench_copy_{name} ", ddl)
                assert n == 1, ddl
                conn.exec_driver_sql(ddl)
    return copies


#: a suspense item's reason, as long as the import's usual one
REASON = "No fund matches the reference (no fund code, rule or pattern)."


def copy_baseline(app, path: str, posted: int) -> float:
    """The same rows the import writes — a posting group and two ledger lines per file line, a
    transaction for each of the first ``posted`` lines and a suspense item for the rest — parsed
    with the csv module and written into tables with the same indexes: COPY (binary) on
    PostgreSQL, the driver's executemany of tuples on SQLite (before, SQLAlchemy's executemany of
    dicts, which took four times as long as the driver's: 11 s for 100,000 lines, 2.7 s now). No rules, validation, duplicate look-ups, audit or triggers."""
    import csv
    import datetime as dt

    from app.extensions import db

    with app.app_context():
        with db.engine.begin() as conn:
            _copy_tables(conn)
        quiesce(app)
        now = dt.datetime.now(dt.timezone.utc)
        pg = db.engine.dialect.name == "postgresql"
        # SQLite keeps dates and times as text: the driver is given them as the import writes
        # them (the columns' own conversions, once per value, as the import does)
        from app.models.ledger import Transaction

        columns = Transaction.__table__.c
        as_day = (None if pg else columns.transaction_date.type._cached_bind_processor(
            db.engine.dialect)) or (lambda v: v)
        as_time = (None if pg else columns.created_at.type._cached_bind_processor(
            db.engine.dialect)) or (lambda v: v)
        groups, txns, narrs, lines, susp = [], [], [], [], []
        days: dict = {}
        t0 = time.perf_counter()
        now = as_time(now)
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            for i, rec in enumerate(reader, start=1):
                day = days.get(rec[0])
                if day is None:
                    y, m, d = rec[0].split("-")
                    day = days[rec[0]] = as_day(dt.date(int(y), int(m), int(d)))
                amount = int(rec[2].replace(".", ""))
                held = i > posted
                number = f"{'S' if held else 'I'}1-{i}"
                groups.append((i, "suspense" if held else "import", number, now, "bench",
                               "BANK", 1, day))
                lines.append((2 * i - 1, i, "BANK", None, None, amount, None))
                if held:
                    lines.append((2 * i, i, "SUSPENSE", "SUSP", None, -amount, None))
                    susp.append((i, amount, rec[1], rec[3], REASON, rec[4] or None, day, 1, i, i,
                                 "unallocated", now))
                else:
                    lines.append((2 * i, i, "FUND", rec[4] or "TWS", rec[1], -amount, i))
                    # (VAT inside the gross amount at 20%, as the import works it out)
                    txns.append((i, number, rec[4] or "TWS", rec[1], amount, "S", amount // 6,
                                 "BACS", day, "bench", now, "BANK", 1, i))
                    if rec[3]:
                        narrs.append((i, rec[3], rec[4] or "TWS", day))
        cols = {
            "posting_group": ("id", "kind", "number", "created_at", "created_by",
                              "office_code", "import_id", "accounting_date"),
            "ledger_line": ("id", "group_id", "account", "fund_code", "account_reference",
                            "amount", "transaction_id"),
            "income_transaction": ("id", "receipt_number", "fund_code", "account_reference",
                                   "amount", "vat_code", "vat_amount", "payment_method_code",
                                   "transaction_date", "created_by", "created_at",
                                   "office_code", "import_id", "posting_group_id"),
            "transaction_narrative": ("transaction_id", "narrative", "fund_code",
                                      "transaction_date"),
            "suspense_item": ("id", "amount", "reference_text", "narrative", "reason",
                              "fund_code", "transaction_date", "import_id", "line_number",
                              "posting_group_id", "status", "created_at")}
        data = {"posting_group": groups, "ledger_line": lines, "income_transaction": txns,
                "transaction_narrative": narrs, "suspense_item": susp}
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for name in LEDGER_TABLES:
                if pg:
                    # COPY's binary format, as the import's (app/services/imports/postgres.py)
                    cur.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = "
                                f"'bench_copy_{name}'::regclass AND attnum > 0")
                    oids = dict(cur.fetchall())
                    with cur.copy(f"COPY bench_copy_{name} ({', '.join(cols[name])}) "
                                  "FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types([oids[c] for c in cols[name]])
                        for row in data[name]:
                            cp.write_row(row)
                else:  # the driver's executemany of the rows as they are
                    cur.executemany(f"INSERT INTO bench_copy_{name} ({', '.join(cols[name])}) "
                                    f"VALUES ({', '.join('?' * len(cols[name]))})", data[name])
            raw.commit()
        finally:
            raw.close()
        elapsed = time.perf_counter() - t0
        with db.engine.begin() as conn:
            for name in reversed(LEDGER_TABLES):
                conn.exec_driver_sql(f"DROP TABLE bench_copy_{name}")
        return elapsed


def run_import(app, path: str) -> tuple[float, float, object]:
    from app.extensions import db
    from app.services import imports as svc
    from app.services.audit import set_actor

    quiesce(app)
    with app.app_context():
        set_actor("bench")
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            batch = svc.receive_import(db.session, stream=fh, filename=os.path.basename(path),
                                       fmt="ims_csv", actor="bench",
                                       instance_path=app.instance_path,
                                       max_bytes=10 ** 10)
        t1 = time.perf_counter()
        batch = svc.process_import(db.session, batch.id, actor="bench")
        t2 = time.perf_counter()
        result = svc.import_result(batch)
        db.session.remove()
        return t1 - t0, t2 - t1, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--memory", action="store_true", help="report peak RSS; skip the baseline")
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL")
    app, refs = setup(url)
    with app.app_context():
        from app.extensions import db

        dialect = db.engine.dialect.name
    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    try:
        total, unmatched = generate(path, args.rows, refs)
        size = os.path.getsize(path)
        # the baselines run just before and just after the import, and the ratios use their
        # means: on a shared machine the speed drifts, and bracketing the import evens it out
        before = None if args.memory else raw_baseline(app, path)
        same_before = None if args.memory else copy_baseline(app, path, args.rows - unmatched)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        check, post, result = run_import(app, path)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        end_to_end = check + post
        print(f"database: {dialect}; rows: {args.rows:,}; file: {size / 1e6:.1f} MB")
        print(f"import: check pass {check:.2f} s + posting {post:.2f} s = {end_to_end:.2f} s "
              f"({args.rows / end_to_end:,.0f} rows/s); status {result['status']}; "
              f"posted {result['rows_posted']:,}, suspense {result['rows_suspense']:,}, "
              f"total £{result['total_amount']} (expected £{total // 100}.{total % 100:02d})")
        print(f"peak RSS: {rss1:.0f} MB (before import {rss0:.0f} MB" + (")" if args.memory else
              ", the baselines run before it included; --memory for the import alone)"))
        written = 3 * args.rows + result["rows_posted"] + result["rows_suspense"]
        print(f"rows written: import {written:,} ({args.rows:,} posting groups, "
              f"{result['rows_posted']:,} transactions, {2 * args.rows:,} ledger lines, "
              f"{result['rows_suspense']:,} suspense items, in the ledger's indexed tables); "
              f"raw baseline {args.rows:,} (one table, primary key only)")
        if before is not None:
            after = raw_baseline(app, path)
            raw = (before + after) / 2
            print(f"raw executemany baseline: {before:.2f} s before the import, {after:.2f} s "
                  f"after (mean {raw:.2f} s); import / baseline = {end_to_end / raw:.2f}x")
            same_after = copy_baseline(app, path, result["rows_posted"])
            same = (same_before + same_after) / 2
            how = "COPY" if dialect == "postgresql" else "executemany"
            print(f"same-rows baseline ({how} of the rows the import writes into tables with the "
                  f"same indexes and CHECKs): {same_before:.2f} s before the import, "
                  f"{same_after:.2f} s after (mean {same:.2f} s); posting / baseline = "
                  f"{post / same:.2f}x, import / baseline = {end_to_end / same:.2f}x")
        assert result["status"] == "succeeded"
        assert result["rows_suspense"] == unmatched, "the baseline's rows differ from the import's"
    finally:
        os.remove(path)
        if not url:
            db_file = os.path.join(tempfile.gettempdir(), f"ims-bench-ledger-{os.getpid()}.db")
            for suffix in ("", "-journal", "-wal", "-shm"):
                if os.path.exists(db_file + suffix):
                    os.remove(db_file + suffix)


if __name__ == "__main__":
    main()
