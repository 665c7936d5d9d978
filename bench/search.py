"""Transaction search benchmark: 1,000,000 transactions loaded with COPY into PostgreSQL, then
filtered searches through the search service (count + first page of 50), p50/p95 per filter.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/search.py
    ... --rows 200000 --runs 100     # smaller
    ... --mode group                   # only as a user of one fund group among ten

Ten funds (the eight seeded income funds and two more), each in a fund group of its own; every
search runs as a user with all funds and (``--mode both``, the default) again as a user of one
group among the ten: the fund filter (app/services/scope.py) must not slow the search.

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

FUNDS = ["CTAX", "NNDR", "HRA", "PCN", "SUN", "LIB", "TWS", "CPK", "MKT", "CEM"]
#: funds the bench adds to the seeded ones (code, name)
EXTRA_FUNDS = [("MKT", "Markets"), ("CEM", "Cemeteries")]
#: the fund group the scoped user holds (one fund of the ten)
GROUP_FUND = "PCN"
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
        narratives = []
        with cur.copy("COPY income_transaction (id, receipt_number, fund_code, account_reference, "
                      "amount, vat_code, vat_amount, payment_method_code, transaction_date, "
                      "office_code, created_by, created_at, posting_group_id) FROM STDIN") as cp:
            for i in range(first_id, first_id + rows):
                fund = FUNDS[i % len(FUNDS)]
                ref = f"{fund[:2]}{rng.randint(0, rows // 3):08d}"
                refs[i] = (fund, ref)
                amount = rng.randint(100, 200_000)
                day = start + dt.timedelta(days=rng.randint(0, 730))
                narratives.append((i, f"{rng.choice(WORDS)} {rng.choice(SURNAMES)} "
                                      f"inv{rng.randint(0, 10_000_000):07d}", fund, day))
                cp.write_row((i, f"R{i:08d}", fund, ref, amount, "O", 0, rng.choice(METHODS), day,
                              rng.choice(["CIVIC", "LIB", "CC", "WEB"]),
                              rng.choice(["cashier", "clerk", "bench"]), now, i))
        # narratives live in their own (erasable) table, one row per transaction that has one
        with cur.copy("COPY transaction_narrative (transaction_id, narrative, fund_code, "
                      "transaction_date) FROM STDIN") as cp:
            for row in narratives:
                cp.write_row(row)
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
        # what autovacuum does after a bulk insert (PostgreSQL 13+ vacuums on inserts): statistics
        # and the visibility map, so index-only scans need not visit the table
        raw.driver_connection.autocommit = True
        try:
            raw.driver_connection.execute("VACUUM (ANALYZE)")
            # and the bulk load's dirty pages written out now, not by a checkpoint while the
            # figures are taken (a council's database is not bulk-loaded as its users search)
            raw.driver_connection.execute("CHECKPOINT")
        finally:
            raw.driver_connection.autocommit = False
    finally:
        raw.close()
    return time.perf_counter() - t0, refs


def fund_groups(session) -> int:
    """The two extra funds, a group per fund, and a user holding the GROUP_FUND group only.
    Returns the user's id."""
    from flask_appbuilder.security.sqla.models import User
    from sqlalchemy import select

    from app.models.fund_group import FundGroup, UserFundAccess, user_fund_group
    from app.models.reference import Fund

    for code, name in EXTRA_FUNDS:
        if session.scalar(select(Fund.id).where(Fund.code == code)) is None:
            session.add(Fund(code=code, name=name))
    session.flush()
    groups = {}
    for code in FUNDS:
        fund = session.scalar(select(Fund).where(Fund.code == code))
        g = FundGroup(name=f"Bench {code}", funds=[fund])
        session.add(g)
        groups[code] = g
    user = User(first_name="Bench", last_name="Group", username="bench-group",
                email="bench-group@example.invalid", active=True)
    session.add(user)
    session.flush()
    session.add(UserFundAccess(user_id=user.id, all_funds=False))
    session.execute(user_fund_group.insert().values(user_id=user.id,
                                                    group_id=groups[GROUP_FUND].id))
    session.commit()
    return user.id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--mode", choices=("all", "group", "both"), default="both",
                        help="search as a user with all funds, of one group among ten, or both")
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

        user_id = fund_groups(db.session)
        load_s, refs = load(app, args.rows)
        print(f"search bench: loaded {args.rows:,} transactions (+{args.rows:,} posting groups, "
              f"{2 * args.rows:,} ledger lines) with COPY in {load_s:.1f} s")
        session = db.session
        rng = random.Random(5)
        narratives = [r[0] for r in session.execute(text(
            "SELECT narrative FROM transaction_narrative TABLESAMPLE SYSTEM (1) LIMIT 2000"))]
        if not narratives:  # a small table: the 1% sample may hold no page
            narratives = [r[0] for r in session.execute(text(
                "SELECT narrative FROM transaction_narrative LIMIT 2000"))]
        today = dt.date.today()

        modes = ["all", "group"] if args.mode == "both" else [args.mode]
        own_ids = [i for i, (fund, _ref) in refs.items() if fund == GROUP_FUND]

        def searches(scoped: bool):
            def ref_exact():
                i = rng.choice(own_ids) if scoped else rng.randint(1, args.rows)
                return S.parse_filters({"account_reference": refs[i][1]})

            def narrative_contains():
                token = rng.choice(narratives).split()[-1][3:]  # e.g. 7-digit invoice number
                return S.parse_filters({"narrative": token})

            def fund_dates():
                d0 = today - dt.timedelta(days=rng.randint(7, 700))
                return S.parse_filters({
                    "fund": GROUP_FUND if scoped else rng.choice(FUNDS),
                    "date_from": d0.isoformat(),
                    "date_to": (d0 + dt.timedelta(days=rng.randint(1, 14))).isoformat()})

            def dates_only():
                d0 = today - dt.timedelta(days=rng.randint(7, 700))
                return S.parse_filters({"date_from": d0.isoformat(),
                                        "date_to": (d0 + dt.timedelta(days=7)).isoformat()})

            def narrative_word():
                return S.parse_filters({"narrative": rng.choice(SURNAMES).lower() + " inv"})

            return [("account reference exact", ref_exact),
                    ("narrative contains (invoice number)", narrative_contains),
                    ("fund + date range (1-14 days)", fund_dates),
                    ("date range (7 days), no fund chosen", dates_only),
                    ("narrative contains (common surname, ~6% of rows)", narrative_word),
                    ("no filter (newest first)", lambda: S.parse_filters({}))]

        def run(make):
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
            return percentile(times, 50), percentile(times, 95), sum(hits) / len(hits)

        from flask_login import login_user

        for mode in modes:
            results = {}
            with app.test_request_context():
                if mode == "group":
                    from flask_appbuilder.security.sqla.models import User

                    login_user(session.get(User, user_id))
                    from app.services.scope import allowed_fund_codes

                    assert allowed_fund_codes() == {GROUP_FUND}, allowed_fund_codes()
                for name, make in searches(mode == "group"):
                    results[name] = run(make)
            who = ("as a user with all funds" if mode == "all" else
                   f"as a user of one fund group among {len(FUNDS)} ({GROUP_FUND})")
            print(f"  {who}:")
            for name, (p50, p95, avg) in results.items():
                ok = "OK" if p95 < 100 else "SLOW"
                print(f"    {name:52s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                      f"avg hits {avg:9.1f}  [{ok} vs 100 ms]")
        t = time.perf_counter()
        plan = session.execute(text("EXPLAIN SELECT transaction_id FROM transaction_narrative "
                                    "WHERE narrative ILIKE '%1234567%'")).scalars().all()
        uses_trgm = any("trgm" in line for line in plan)
        print(f"  narrative ILIKE plan uses the trigram index: {uses_trgm}")
        tb = L.trial_balance(session)
        print(f"  trial balance over {2 * args.rows:,} ledger lines: {time.perf_counter() - t:.2f} s, "
              f"balanced={tb['balanced']}")


if __name__ == "__main__":
    main()
