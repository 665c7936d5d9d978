"""Transaction search benchmark: 1,000,000 transactions loaded with COPY into PostgreSQL, then
filtered searches through the search service (count + first page of 50), p50/p95 per filter.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/search.py
    ... --rows 200000 --runs 100     # smaller

The database named by DATABASE_URL is WIPED. Loading uses COPY with triggers off for the load
session only (session_replication_role = replica: needs a superuser; the generated postings
balance by construction and are checked afterwards). Prints its figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app, percentile  # noqa: E402

FUNDS = ["CTAX", "NNDR", "HRA", "PCN", "SUN", "LIB", "TWS"]
METHODS = ["CASH", "CHQ", "CARD", "WEB", "BACS", "DD", "PO", "PP"]
WORDS = ["council tax", "rent", "parking", "skip hire", "library fine", "sundry invoice",
         "trade waste", "business rates", "garden waste", "pest control"]
SURNAMES = ["Jones", "Williams", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Lewis",
            "Morgan", "Griffiths", "Price", "Owen", "Jenkins", "Powell", "Smith", "Taylor"]


def load(app, rows: int, seed: int = 11, first_id: int = 1) -> tuple[float, dict]:
    """COPY ``rows`` receipts (ids from ``first_id``: rows already there keep theirs)."""
    from app.extensions import db

    rng = random.Random(seed)
    start = dt.date.today() - dt.timedelta(days=730)
    t0 = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET session_replication_role = replica")
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        with cur.copy("COPY posting_group (id, kind, number, created_at, created_by, office_code) "
                      "FROM STDIN") as cp:
            for i in range(first_id, first_id + rows):
                cp.write_row((i, "receipt", f"R{i:08d}", now, "bench", "CIVIC"))
        refs = {}
        with cur.copy("COPY income_transaction (id, receipt_number, fund_code, account_reference, "
                      "amount, vat_code, vat_amount, payment_method_code, narrative, transaction_date, "
                      "office_code, created_by, created_at, posting_group_id) FROM STDIN") as cp:
            for i in range(first_id, first_id + rows):
                fund = FUNDS[i % len(FUNDS)]
                ref = f"{fund[:2]}{rng.randint(0, rows // 3):08d}"
                refs[i] = (fund, ref)
                amount = rng.randint(100, 200_000)
                narrative = (f"{rng.choice(WORDS)} {rng.choice(SURNAMES)} "
                             f"inv{rng.randint(0, 10_000_000):07d}")
                cp.write_row((i, f"R{i:08d}", fund, ref, amount, "O", 0, rng.choice(METHODS),
                              narrative, start + dt.timedelta(days=rng.randint(0, 730)),
                              rng.choice(["CIVIC", "LIB", "CC", "WEB"]),
                              rng.choice(["cashier", "clerk", "bench"]), now, i))
        amounts = {}
        cur.execute("SELECT id, amount FROM income_transaction")
        for tid, amount in cur:
            amounts[tid] = amount
        with cur.copy("COPY ledger_line (group_id, account, fund_code, account_reference, amount, "
                      "transaction_id) FROM STDIN") as cp:
            for i in range(first_id, first_id + rows):
                fund, ref = refs[i]
                cp.write_row((i, "BANK", None, None, amounts[i], None))
                cp.write_row((i, "FUND", fund, ref, -amounts[i], i))
        for table in ("posting_group", "income_transaction", "ledger_line"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")
        cur.execute("INSERT INTO number_sequence (prefix, last_value) VALUES ('R', %s) "
                    "ON CONFLICT (prefix) DO NOTHING", (rows,))
        cur.execute("SET session_replication_role = origin")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0, refs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db
        from app.services import ledger as L
        from app.services import search as S

        load_s, refs = load(app, args.rows)
        print(f"search bench: loaded {args.rows:,} transactions (+{args.rows:,} posting groups, "
              f"{2 * args.rows:,} ledger lines) with COPY in {load_s:.1f} s")
        session = db.session
        rng = random.Random(5)
        narratives = [r[0] for r in session.execute(text(
            "SELECT narrative FROM income_transaction TABLESAMPLE SYSTEM (1) LIMIT 2000"))]
        today = dt.date.today()

        def ref_exact():
            fund, ref = refs[rng.randint(1, args.rows)]
            return S.parse_filters({"account_reference": ref})

        def narrative_contains():
            token = rng.choice(narratives).split()[-1][3:]  # e.g. 7-digit invoice number
            return S.parse_filters({"narrative": token})

        def fund_dates():
            d0 = today - dt.timedelta(days=rng.randint(7, 700))
            return S.parse_filters({"fund": rng.choice(FUNDS), "date_from": d0.isoformat(),
                                    "date_to": (d0 + dt.timedelta(days=rng.randint(1, 14))).isoformat()})

        def narrative_word():
            return S.parse_filters({"narrative": rng.choice(SURNAMES).lower() + " inv"})

        results = {}
        for name, make in [("account reference exact", ref_exact),
                           ("narrative contains (invoice number)", narrative_contains),
                           ("fund + date range (1-14 days)", fund_dates),
                           ("narrative contains (common surname, ~6% of rows)", narrative_word)]:
            for _ in range(5):  # warm up
                S.search(session, make(), 1, 50)
            times, hits = [], []
            for _ in range(args.runs):
                f = make()
                t = time.perf_counter()
                page = S.search(session, f, 1, 50)
                times.append((time.perf_counter() - t) * 1000)
                hits.append(page.total)
            session.rollback()
            results[name] = (percentile(times, 50), percentile(times, 95), sum(hits) / len(hits))
        for name, (p50, p95, avg) in results.items():
            ok = "OK" if p95 < 150 else "SLOW"
            print(f"  {name:52s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  avg hits {avg:9.1f}  [{ok} vs 150 ms]")
        t = time.perf_counter()
        plan = session.execute(text("EXPLAIN SELECT id FROM income_transaction WHERE narrative ILIKE "
                                    "'%1234567%'")).scalars().all()
        uses_trgm = any("trgm" in line for line in plan)
        print(f"  narrative ILIKE plan uses the trigram index: {uses_trgm}")
        tb = L.trial_balance(session)
        print(f"  trial balance over {2 * args.rows:,} ledger lines: {time.perf_counter() - t:.2f} s, "
              f"balanced={tb['balanced']}")


if __name__ == "__main__":
    main()
