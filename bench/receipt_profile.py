"""Where one POST /api/v1/receipts spends its time, without gunicorn: the SQL statements it runs
(counted, grouped by their text) and a cProfile of the request through Flask's test client with
the cashier's JWT (Flask, FAB's @protect, the JWT, our hooks and the receipts service).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/receipt_profile.py
    ... --receipts 300 --top 40 --sql          # also list every statement of one receipt
    .venv/bin/python bench/receipt_profile.py  # SQLite (temp file)

The database named by DATABASE_URL is WIPED. Two lines per receipt, as bench/receipts.py posts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app, percentile  # noqa: E402


def _shape(sql: str) -> str:
    """A statement's text with its literals and parameter lists folded, for grouping."""
    s = " ".join(sql.split())
    s = re.sub(r"%\(\w+\)s|\?|\$\d+|:\w+", "?", s)
    s = re.sub(r"(\?, )+\?", "?...", s)
    return s[:150]


def _backends(app) -> list[int]:
    """The database's backends serving this database (PostgreSQL), but the one asking."""
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        if db.engine.dialect.name != "postgresql":
            return []
        with db.engine.connect() as conn:
            return list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")).scalars())


def _cpu(pids: list[int]) -> dict[int, float]:
    import psutil

    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receipts", type=int, default=300)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--sql", action="store_true", help="print one receipt's statements")
    args = parser.parse_args()
    app = fresh_app(os.environ.get("DATABASE_URL"))
    with app.app_context():
        from sqlalchemy import event, select

        from app.extensions import db
        from app.models.reference import Fund
        from app.services.seed import make_reference, seed_demo

        seed_demo(db.session, app.appbuilder)
        db.session.commit()
        v = db.session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
        rng = random.Random(1)
        refs = [make_reference(v, rng) for _ in range(500)]
        engine = db.engine
        db.session.remove()
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={
        "username": "cashier", "password": "Passw0rd!", "provider": "db"}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(2)
    counter = {"i": 0}

    def post():
        i = counter["i"] = counter["i"] + 1
        body = {"payment_method_code": "CARD", "office_code": "CIVIC", "lines": [
            {"fund_code": "CTAX", "account_reference": refs[i % len(refs)],
             "amount": f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}"},
            {"fund_code": "TWS", "account_reference": f"TW-{i}", "amount": "24.00",
             "narrative": "sacks"}]}
        r = client.post("/api/v1/receipts", json=body, headers=headers)
        if r.status_code != 201:
            sys.exit(f"{r.status_code}: {r.get_data(as_text=True)[:500]}")
        return r

    for _ in range(30):  # warm up: compiled statements, sequences, caches
        post()
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    post()
    event.remove(engine, "before_cursor_execute", count)
    print(f"{engine.dialect.name}: {len(statements)} SQL statements for one receipt (2 lines)")
    for shape, n in Counter(_shape(s) for s in statements).most_common():
        print(f"  {n:2d}x {shape}")
    if args.sql:
        for s in statements:
            print("   ", " ".join(s.split())[:400])

    times = []
    t0 = time.perf_counter()
    for _ in range(args.receipts):
        s = time.perf_counter()
        post()
        times.append(time.perf_counter() - s)
    plain = time.perf_counter() - t0
    print(f"test client, one at a time: {args.receipts / plain:.1f} receipts/s; p50 "
          f"{percentile(times, 50) * 1000:.2f} ms, p95 {percentile(times, 95) * 1000:.2f} ms; "
          f"process CPU per receipt (this process only) measured below")
    cpu0, db0 = time.process_time(), _cpu(_backends(app))
    for _ in range(args.receipts):
        post()
    print(f"  CPU of this process per receipt: "
          f"{(time.process_time() - cpu0) / args.receipts * 1000:.2f} ms; of the database's "
          f"backends: {_delta(db0, _cpu(_backends(app))) / args.receipts * 1000:.2f} ms")

    prof = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
    prof.enable()
    for _ in range(args.receipts):
        post()
    prof.disable()
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    by_package: Counter = Counter()
    calls: Counter = Counter()
    for (filename, _, _), (_, ncalls, tottime, _, _) in st.stats.items():
        key = filename.split("site-packages/")[-1].split("/")[0] if "site-packages" in filename \
            else ("app." + filename.split("/app/")[-1].split("/")[0]
                  if "/app/" in filename else os.path.basename(filename))
        by_package[key] += tottime
        calls[key] += ncalls
    total = sum(by_package.values())
    print("CPU (profiled, so inflated by calls) by package, per receipt:")
    for key, t in by_package.most_common(20):
        print(f"  {key:28s} {t / args.receipts * 1000:7.2f} ms  {t / total:5.1%}  "
              f"{calls[key] / args.receipts:7.0f} calls")
    st.sort_stats("cumulative").print_stats(args.top)
    st.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
