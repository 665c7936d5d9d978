"""Bank reconciliation's auto-match: 20,000 statement lines against 100,000 expected credits on
PostgreSQL, against a plain SQL join of the same rows.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/reconcile.py

Loads --items expected credits (amounts spread over £10 to £5,010, expected dates over 60 days,
a quarter of them sharing an amount with another) and --lines settlement lines (each the amount
of one credit, dated up to 3 days either side of it, half carrying the credit's reference) with
generate_series, then times:

* baseline: a plain SQL join of the unmatched lines to the unmatched credits on exact amount and
  an expected date within ±3 days, every pair fetched;
* auto-match: reconciliation.propose for the account (read both sides, pick one credit per line:
  reference first, then the nearest date; several credits of one kind and day adding up to the
  line when no single one does), each proposal with its reason.

Prints the time of each (best of --repeat), their ratio (target <= 5x) and how many lines got a
proposal. The database named by DATABASE_URL is WIPED.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app  # noqa: E402

_ITEMS = """
INSERT INTO expected_bank_credit (id, kind, bank_account_id, amount, expected_date, reference,
    source_id, clearing_account, clearing_reference, fee, cleared, created_at)
SELECT g, CASE WHEN g % 3 = 0 THEN 'card_settlement' ELSE 'cash_up_bag' END, :acct,
       1000 + ((g * 7919) % (CASE WHEN g % 4 = 0 THEN 1000 ELSE 500000 END)),
       DATE '2026-09-01' + (g % 60), 'BAG' || g, g, 'CASH_IN_TRANSIT', 'CIVIC', 0, false, now()
FROM generate_series(1, :n) g"""
_STATEMENT = """
INSERT INTO bank_statement (id, bank_account_id, statement_date, opening_balance,
    closing_balance, created_by, created_at)
VALUES (1, :acct, DATE '2026-11-01', 0, 0, 'bench', now())"""
_LINES = """
INSERT INTO statement_line (statement_id, bank_account_id, line_number, kind, transaction_date,
    amount, reference)
SELECT 1, :acct, k, 'settlement', e.expected_date + ((k % 7) - 3), e.amount,
       CASE WHEN k % 2 = 0 THEN 'DEPOSIT ' || e.reference ELSE 'BGC ' || k END
FROM generate_series(1, :n) k
JOIN expected_bank_credit e ON e.id = k * :step"""
_JOIN = """
SELECT l.id, e.id
FROM statement_line l
JOIN expected_bank_credit e
  ON e.amount = l.amount
 AND e.expected_date BETWEEN l.transaction_date - 3 AND l.transaction_date + 3
WHERE l.bank_account_id = :acct AND l.match_id IS NULL AND l.kind = 'settlement'
  AND e.match_id IS NULL AND NOT e.cleared AND e.bank_account_id = :acct"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL database (it is WIPED).")
        return 2
    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db
        from app.services import reconciliation as RC

        session = db.session
        acct = RC.default_account(session)
        session.commit()
        t0 = time.perf_counter()
        session.execute(text(_ITEMS), {"acct": acct.id, "n": args.items})
        session.execute(text(_STATEMENT), {"acct": acct.id})
        session.execute(text(_LINES), {"acct": acct.id, "n": args.lines,
                                       "step": max(1, args.items // args.lines)})
        session.commit()
        session.execute(text("ANALYZE expected_bank_credit, statement_line"))
        session.commit()
        print(f"loaded {args.items:,} expected credits and {args.lines:,} statement lines "
              f"in {time.perf_counter() - t0:.1f} s")
        base_times, ours_times = [], []
        pairs = proposals = 0
        for _ in range(args.repeat):
            session.rollback()
            t = time.perf_counter()
            pairs = len(session.execute(text(_JOIN), {"acct": acct.id}).all())
            base_times.append(time.perf_counter() - t)
            session.rollback()
            t = time.perf_counter()
            found = RC.propose(session, acct)
            ours_times.append(time.perf_counter() - t)
            proposals = len(found)
        base, ours = min(base_times), min(ours_times)
        by_ref = sum(1 for p in found if "reference" in p.reason)
        print(f"baseline SQL join (amount, date ±3 days): {base * 1000:8.1f} ms "
              f"({pairs:,} candidate pairs)")
        print(f"auto-match proposals:                     {ours * 1000:8.1f} ms "
              f"({proposals:,} of {args.lines:,} lines, {by_ref:,} by reference)")
        print(f"ratio: {ours / base:.2f}x (target <= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
