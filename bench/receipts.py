"""Receipts per second through the receipts service (validation, posting, audit, commit).

    .venv/bin/python bench/receipts.py                     # SQLite (temp file)
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/receipts.py

Each receipt has two lines (Council Tax with a check-digit reference, Trade Waste with VAT).
The database named by DATABASE_URL is WIPED. Prints its figures.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app, percentile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receipts", type=int, default=1000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models.reference import Fund
        from app.services.ledger import trial_balance
        from app.services.receipts import take_receipt
        from app.services.seed import make_reference

        session = db.session
        v = session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
        rng = random.Random(1)
        refs = [make_reference(v, rng) for _ in range(500)]
        dialect = db.engine.dialect.name
        times = []
        t0 = time.perf_counter()
        for i in range(args.receipts):
            s = time.perf_counter()
            take_receipt(session, payment_method_code="CARD", actor="bench", office_code="CIVIC",
                         lines=[{"fund_code": "CTAX", "account_reference": refs[i % len(refs)],
                                 "amount": f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}"},
                                {"fund_code": "TWS", "account_reference": f"TW{i}",
                                 "amount": "24.00", "narrative": "sacks"}])
            times.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
        tb = trial_balance(session)
        print(f"receipts bench on {dialect}: {args.receipts} receipts (2 lines each) in {elapsed:.2f} s")
        print(f"  {args.receipts / elapsed:.1f} receipts/s; latency p50 {percentile(times, 50) * 1000:.1f} ms, "
              f"p95 {percentile(times, 95) * 1000:.1f} ms")
        print(f"  trial balance balanced: {tb['balanced']}")


if __name__ == "__main__":
    main()
