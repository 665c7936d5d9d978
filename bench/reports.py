"""Finance reports benchmark: 1,000,000 transactions (receipts and imports over 400 days, with
reversals, refunds and journals posted later, and approval decisions) loaded with COPY into
PostgreSQL; then each report through app/services/reports.py against a plain SQL GROUP BY of the
same rows, timed in the same run (median of --runs after a warm-up).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_reports .venv/bin/python bench/reports.py
    ... --rows 200000 --runs 3     # smaller

The database named by DATABASE_URL is WIPED. Loading uses COPY with triggers off for the load
session only (session_replication_role = replica: needs a superuser; the generated postings
balance by construction and the trial balance is checked afterwards). Prints its figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app  # noqa: E402

FUNDS = ["CTAX", "NNDR", "HRA", "PCN", "SUN", "LIB", "TWS"]
VAT = {"CTAX": "O", "NNDR": "O", "HRA": "E", "PCN": "O", "SUN": "S", "LIB": "S", "TWS": "S"}
METHODS = ["CASH", "CHQ", "CARD", "WEB", "BACS", "DD", "PO", "PP"]
OFFICES = ["CIVIC", "LIB", "CC", "WEB"]
USERS = [f"cashier{i}" for i in range(12)]
DAYS = 400


def load(rows: int, seed: int = 7) -> dict:
    """COPY the rows in; returns counts."""
    from app.extensions import db

    rng = random.Random(seed)
    today = dt.date.today()
    first = today - dt.timedelta(days=DAYS)
    raw = db.engine.raw_connection()
    counts = {"transactions": rows}
    try:
        cur = raw.cursor()
        cur.execute("SET session_replication_role = replica")
        txns = []  # (id, fund, amount, vat, date)
        with cur.copy("COPY posting_group (id, kind, number, created_at, created_by, office_code) "
                      "FROM STDIN") as cp:
            for i in range(1, rows + 1):
                day = first + dt.timedelta(days=rng.randint(0, DAYS - 1))
                kind = "import" if i % 5 == 0 else "receipt"
                at = dt.datetime.combine(day, dt.time(9 + i % 8), tzinfo=dt.timezone.utc)
                cp.write_row((i, kind, f"R{i:08d}", at.isoformat(), "bench", "CIVIC"))
                txns.append((i, day))
        with cur.copy("COPY income_transaction (id, receipt_number, fund_code, account_reference, "
                      "amount, vat_code, vat_amount, payment_method_code, transaction_date, "
                      "office_code, created_by, created_at, posting_group_id) FROM STDIN") as cp:
            for n, (i, day) in enumerate(txns):
                fund = FUNDS[i % len(FUNDS)]
                amount = rng.randint(100, 200_000)
                vat = (amount + 3) // 6 if VAT[fund] == "S" else 0
                txns[n] = (i, fund, amount, vat, day)
                cp.write_row((i, f"R{i:08d}", fund, f"{fund[:2]}{i:08d}", amount, VAT[fund], vat,
                              rng.choice(METHODS), day, rng.choice(OFFICES), rng.choice(USERS),
                              dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)
                              .isoformat(), i))
        gid = rows
        with cur.copy("COPY ledger_line (group_id, account, fund_code, account_reference, amount, "
                      "transaction_id) FROM STDIN") as cp:
            for i, fund, amount, _, _ in txns:
                cp.write_row((i, "BANK", None, None, amount, None))
                cp.write_row((i, "FUND", fund, f"{fund[:2]}{i:08d}", -amount, i))
        # corrections posted 0-20 days after the money came in: 1% reversed, 0.5% refunded
        # (part), 0.5% journalled to another fund
        later = []
        sample = rng.sample(txns, k=rows // 50)
        reversals, refunds, journals = sample[:rows // 100], sample[rows // 100: rows // 100 + rows // 200], \
            sample[rows // 100 + rows // 200:]
        with cur.copy("COPY posting_group (id, kind, number, created_at, created_by, office_code, "
                      "reverses_id) FROM STDIN") as cp:
            for kind, chosen in (("reversal", reversals), ("refund", refunds),
                                 ("journal", journals)):
                for i, fund, amount, vat, day in chosen:
                    gid += 1
                    at = dt.datetime.combine(min(today, day + dt.timedelta(days=rng.randint(0, 20))),
                                             dt.time(15), tzinfo=dt.timezone.utc)
                    cp.write_row((gid, kind, f"{kind[0].upper()}{gid:08d}", at.isoformat(),
                                  "manager", "CIVIC", i if kind == "reversal" else None))
                    later.append((gid, kind, i, fund, amount))
        counts.update(reversals=len(reversals), refunds=len(refunds), journals=len(journals))
        with cur.copy("COPY ledger_line (group_id, account, fund_code, account_reference, amount, "
                      "transaction_id) FROM STDIN") as cp:
            for g, kind, i, fund, amount in later:
                ref = f"{fund[:2]}{i:08d}"
                if kind == "reversal":
                    cp.write_row((g, "BANK", None, None, -amount, None))
                    cp.write_row((g, "FUND", fund, ref, amount, i))
                elif kind == "refund":
                    part = max(1, amount // 3)
                    cp.write_row((g, "FUND", fund, ref, part, i))
                    cp.write_row((g, "REFUNDS_PAYABLE", fund, ref, -part, i))
                else:
                    part = max(1, amount // 2)
                    other = FUNDS[(FUNDS.index(fund) + 1) % len(FUNDS)]
                    cp.write_row((g, "FUND", fund, ref, part, i))
                    cp.write_row((g, "FUND", other, "J" + ref, -part, None))
        # approvals: one decision per refund and write-off-like request, 2% of them two-tier
        cur.execute("INSERT INTO workflow_definition (id, process_id, name, version, sha256, "
                    "bpmn_xml, spec_json, active, deployed_at, deployed_by) VALUES (1, 'bench', "
                    "'bench', 1, 'x', '', '{}', true, now(), 'bench')")
        n_inst = max(1000, rows // 40)
        with cur.copy("COPY workflow_instance (id, definition_id, process_id, subject_type, "
                      "subject_id, status, outcome, requester, started_by, started_at, "
                      "completed_at, amount_pence, state_json, serializer_version) "
                      "FROM STDIN") as cp:
            insts = []
            for k in range(1, n_inst + 1):
                day = first + dt.timedelta(days=rng.randint(0, DAYS - 1))
                at = dt.datetime.combine(day, dt.time(10), tzinfo=dt.timezone.utc)
                amount = int(rng.paretovariate(1.2) * 2000)
                subject = ("refund", "write_off", "suspense_allocation")[k % 3]
                cp.write_row((k, 1, "bench", subject, str(k), "completed", "approved", "clerk",
                              "clerk", at.isoformat(), at.isoformat(), amount, "{}", "1"))
                insts.append((k, at))
        with cur.copy("COPY workflow_task (id, instance_id, name, title, role, status, created_at, "
                      "completed_by, completed_at, decision) FROM STDIN") as cp:
            tasks = 0
            for k, at in insts:
                for _ in range(2 if k % 50 == 0 else 1):
                    tasks += 1
                    cp.write_row((str(uuid.UUID(int=rng.getrandbits(128))), k, "Approve",
                                  "Approve", "Finance Manager", "completed", at.isoformat(),
                                  rng.choice(["manager", "manager2", "head"]),
                                  (at + dt.timedelta(hours=2)).isoformat(),
                                  "approve" if rng.random() < 0.9 else "reject"))
        counts.update(approval_requests=n_inst, decisions=tasks)
        for table in ("posting_group", "income_transaction", "ledger_line", "workflow_instance"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))")
        cur.execute("SET session_replication_role = origin")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return counts


def timed(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    app = fresh_app(url)
    with app.app_context(), app.test_request_context():
        from sqlalchemy import text

        from app.extensions import db
        from app.services import ledger as L
        from app.services import reports as REP

        t0 = time.perf_counter()
        counts = load(args.rows)
        print(f"reports bench: loaded {', '.join(f'{v:,} {k}' for k, v in counts.items())} "
              f"with COPY in {time.perf_counter() - t0:.1f} s")
        s = db.session
        today = dt.date.today()
        yesterday = today - dt.timedelta(days=1)
        m_from, m_to = REP.parse_month((today.replace(day=1) - dt.timedelta(days=1))
                                       .strftime("%Y-%m"))
        y_from = yesterday - dt.timedelta(days=365)
        ly_from, ly_to = REP.last_year(m_from), REP.last_year(m_to)

        def q(sql, **params):
            return lambda: s.execute(text(sql), params).all()

        def both(*fns):
            return lambda: [f() for f in fns]

        def utc(d_from, d_to):
            return REP.utc_bounds(d_from, d_to)

        cases = [
            ("cash book, one day", lambda: REP.cash_book(s, yesterday),
             q("SELECT transaction_date, office_code, created_by, payment_method_code, count(*), "
               "sum(amount) FROM income_transaction WHERE transaction_date = :d "
               "GROUP BY 1, 2, 3, 4", d=yesterday)),
            ("VAT, one month", lambda: REP.vat_report(s, m_from, m_to),
             q("SELECT vat_code, count(*), sum(amount), sum(vat_amount) FROM income_transaction "
               "WHERE transaction_date BETWEEN :a AND :b GROUP BY vat_code", a=m_from, b=m_to)),
            ("VAT, 366 days", lambda: REP.vat_report(s, y_from, yesterday),
             q("SELECT vat_code, count(*), sum(amount), sum(vat_amount) FROM income_transaction "
               "WHERE transaction_date BETWEEN :a AND :b GROUP BY vat_code", a=y_from, b=yesterday)),
            ("income, one month vs last year", lambda: REP.income_report(s, m_from, m_to),
             both(q("SELECT fund_code, sum(amount) FROM income_transaction WHERE transaction_date "
                    "BETWEEN :a AND :b GROUP BY fund_code", a=m_from, b=m_to),
                  q("SELECT fund_code, sum(amount) FROM income_transaction WHERE transaction_date "
                    "BETWEEN :a AND :b GROUP BY fund_code", a=ly_from, b=ly_to))),
            ("income, 366 days vs the year before",
             lambda: REP.income_report(s, y_from, yesterday),
             both(q("SELECT fund_code, sum(amount) FROM income_transaction WHERE transaction_date "
                    "BETWEEN :a AND :b GROUP BY fund_code", a=y_from, b=yesterday),
                  q("SELECT fund_code, sum(amount) FROM income_transaction WHERE transaction_date "
                    "BETWEEN :a AND :b GROUP BY fund_code", a=REP.last_year(y_from),
                    b=REP.last_year(yesterday)))),
            ("approvals, one month", lambda: REP.approvals_report(s, m_from, m_to),
             q("SELECT w.completed_by, i.subject_type, count(*), sum(i.amount_pence) "
               "FROM workflow_task w JOIN workflow_instance i ON i.id = w.instance_id "
               "WHERE w.completed_at >= :a AND w.completed_at < :b GROUP BY 1, 2",
               a=utc(m_from, m_to)[0], b=utc(m_from, m_to)[1])),
        ]
        pack_baseline = both(*(c[2] for c in cases if "one month" in c[0]),
                             q("SELECT transaction_date, office_code, created_by, "
                               "payment_method_code, count(*), sum(amount) FROM income_transaction "
                               "WHERE transaction_date BETWEEN :a AND :b GROUP BY 1, 2, 3, 4",
                               a=m_from, b=m_to))
        cases.append(("month-end pack (4 reports, XLSX)",
                      lambda: REP.to_xlsx(REP.month_end(s, m_from, m_to)), pack_baseline))
        print(f"  periods: day {yesterday}, month {m_from}..{m_to}, year {y_from}..{yesterday}; "
              f"median of {args.runs} runs")
        print(f"  {'report':40s} {'report ms':>10s} {'GROUP BY ms':>12s} {'ratio':>7s}")
        for name, fn, base in cases:
            r = timed(fn, args.runs)
            b = timed(base, args.runs)
            s.rollback()
            print(f"  {name:40s} {r:10.1f} {b:12.1f} {r / b:7.2f}x")
        rep = REP.vat_report(s, y_from, yesterday)
        print(f"  VAT 366 days: {rep.tables[0].totals['lines']:,} lines received, gross "
              f"£{rep.tables[0].totals['gross'] / 100:,.2f}")
        tb = L.trial_balance(s)
        print(f"  trial balance after the load: balanced={tb['balanced']}")


if __name__ == "__main__":
    main()
