"""Load test: bench/locustfile.py's users (cashiers, clerks, managers; 1-3 s between tasks)
against gunicorn (4 workers) on PostgreSQL for a bounded time on 127.0.0.1, then the database
checked: every receipt answered 201 is there exactly once, nothing else was posted under the
load's external references, the ledger balances and the audit chain verifies.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/load.py
    ... --users 50 --seconds 120

Targets: zero errors, no lost or duplicated receipt, p95 under 300 ms at 50 users. The database
named by DATABASE_URL is WIPED. Needs locust (bench/requirements.txt).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app  # noqa: E402
from receipts import ROOT, _start, _stop  # noqa: E402

TARGET_P95_MS = 300


def prepare(url: str, suspense_rows: int) -> tuple[object, list[str]]:
    """Demo users and workflows, Council Tax references, and an import of unmatched payments
    for the clerks to allocate."""
    app = fresh_app(url)
    with app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models.reference import Fund
        from app.services import imports as svc
        from app.services.audit import set_actor
        from app.services.seed import make_reference, seed_demo
        from app.services.workflow import sync_workflows

        seed_demo(db.session, app.appbuilder)
        sync_workflows(db.session)
        db.session.commit()
        v = db.session.scalar(select(Fund).where(Fund.code == "CTAX")).validator
        rng = random.Random(4)
        refs = [make_reference(v, rng) for _ in range(300)]
        body = "transaction_date,account_reference,amount,narrative\n" + "".join(
            f"2026-11-{1 + i % 28:02d},?{i:07d},{rng.randint(1, 300)}.00,unknown payer {i}\n"
            for i in range(suspense_rows))
        set_actor("bench")
        batch = svc.receive_import(db.session, stream=io.BytesIO(body.encode()),
                                   filename="load-suspense.csv", fmt="ims_csv", actor="bench",
                                   instance_path=app.instance_path, max_bytes=10 ** 9)
        svc.process_import(db.session, batch.id, actor="bench")
        db.session.remove()
    return app, refs


def check(app, ok_refs: list[str]) -> list[str]:
    from sqlalchemy import text

    from app.extensions import db
    from app.services import audit
    from app.services.ledger import trial_balance

    problems = []
    with app.app_context():
        s = db.session
        counts = dict(s.execute(text(
            "SELECT t.external_reference, count(DISTINCT t.posting_group_id) FROM income_transaction t "
            "JOIN posting_group g ON g.id = t.posting_group_id WHERE g.kind = 'receipt' "
            "AND t.external_reference IS NOT NULL AND g.created_by = 'cashier' "
            "GROUP BY t.external_reference")).all())
        lost = [r for r in ok_refs if r not in counts]
        twice = [r for r, n in counts.items() if n > 1]
        if lost:
            problems.append(f"{len(lost)} receipts answered 201 are not in the database")
        if twice:
            problems.append(f"{len(twice)} receipts posted more than once")
        extra = len(set(counts) - set(ok_refs))
        if extra:
            problems.append(f"{extra} receipts in the database were not answered 201 "
                            "(a client timed out?)")
        if not trial_balance(s)["balanced"]:
            problems.append("the trial balance does not balance")
        before = audit.verify_chain(s)  # what the worker left unlinked at the end of the run
        audit.chain_pending(s)
        result = audit.verify_chain(s)
        if not result.valid:
            problems.append("the audit chain does not verify")
        elif result.awaiting:
            problems.append(f"{result.awaiting} audit events could not be linked")
        print(f"  audit: {result.events} events; the worker had linked all but "
              f"{before.awaiting} when the run ended")
        s.remove()
    return problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--suspense", type=int, default=2000)
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    app, refs = prepare(url, args.suspense)
    # Every simulated user signs in from 127.0.0.1, where real staff sign in from their own
    # addresses: the per-address sign-in limit (10 per 20 s) would refuse the ramp-up's logins.
    # The server under test gets a limit that fits one address standing for every user.
    os.environ.setdefault("IMS_LOGIN_RATE_LIMIT", f"{10 * args.users} per 20 second")
    proc, base = _start("run:app", url, args.workers)
    # The worker runs beside the app, as in production: it links the audit events the requests
    # write into the chain while they are written (and runs timers and imports).
    worker = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "flask"), "--app", "run", "ims", "worker",
         "--interval", "30"], cwd=ROOT, env=dict(os.environ, DATABASE_URL=url,
                                                  IMS_ENV="development", IMS_LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp()
    receipts_file = os.path.join(tmp, "receipts.txt")
    try:
        env = dict(os.environ, IMS_LOAD_REFS=json.dumps(refs), IMS_LOAD_RECEIPTS_FILE=receipts_file)
        locust = os.path.join(os.path.dirname(sys.executable), "locust")
        subprocess.run([locust, "-f", os.path.join(ROOT, "bench", "locustfile.py"), "--headless",
                        "-u", str(args.users), "-r", str(max(1, args.users // 10)),
                        "-t", f"{args.seconds}s", "--stop-timeout", "30", "--host", base, "--csv",
                        os.path.join(tmp, "load"), "--only-summary", "--loglevel", "WARNING"],
                       cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    finally:
        _stop(proc)
        _stop(worker)
    with open(os.path.join(tmp, "load_stats.csv"), encoding="utf-8") as fh:
        stats = list(csv.DictReader(fh))
    with open(receipts_file, encoding="utf-8") as fh:
        ok_refs = [ln for ln in fh.read().splitlines() if ln]
    print(f"load test: {args.users} users, {args.seconds} s, gunicorn {args.workers} workers, "
          "PostgreSQL, 127.0.0.1")
    total = None
    for row in stats:
        line = (f"  {row['Name']:38s} {int(row['Request Count']):6d} req  "
                f"{int(row['Failure Count']):4d} errors  {float(row['Requests/s']):6.1f}/s  "
                f"p50 {row['50%']:>5s} ms  p95 {row['95%']:>5s} ms  p99 {row['99%']:>5s} ms")
        if row["Name"] == "Aggregated":
            total = row
        else:
            print(line)
    if total:
        p95 = float(total["95%"])
        errors = int(total["Failure Count"])
        print(f"  all: {int(total['Request Count'])} requests, {float(total['Requests/s']):.1f}/s, "
              f"errors {errors}, p50 {total['50%']} ms, p95 {total['95%']} ms, p99 {total['99%']} ms"
              f"  [{'OK' if p95 < TARGET_P95_MS and errors == 0 else 'SLOW or errors'} vs "
              f"{TARGET_P95_MS} ms, 0 errors]")
    failures = os.path.join(tmp, "load_failures.csv")
    if os.path.exists(failures):
        with open(failures, encoding="utf-8") as fh:
            for row in csv.DictReader(fh):  # what each error was, so it can be fixed
                print(f"  error: {row['Name']}: {row['Error'][:300]} (x{row['Occurrences']})")
    problems = check(app, ok_refs)
    print(f"  receipts answered 201: {len(ok_refs)}; database check: "
          + ("OK (none lost, none twice, ledger balances, audit chain verifies)"
             if not problems else "; ".join(problems)))


if __name__ == "__main__":
    main()
