"""Pages as users wait for them: every page a role uses, through HTTP with a logged-in session,
at 100,000 and 1,000,000 transactions on PostgreSQL; p50/p95 per page against the 100 ms target.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_bench .venv/bin/python bench/pages.py
    ... --rows 100000,1000000 --runs 40

The database named by DATABASE_URL is WIPED. The demo seed (users, account holders, suspense,
refunds, write-offs, tasks) is loaded first, then the transactions with COPY (bench/search.py's
loader). The app runs in werkzeug's threaded server on 127.0.0.1 (one process: this measures the
IMS's own work per request, not gunicorn's); the client is requests with a session cookie.
Baseline: the same server's /healthz (no database, no session) — the floor of the HTTP stack.

Then the API's reads of one page of results (page_size 100, the most a settled question counts)
and of one record, each with the bearer token of the role that uses it (POST
/api/v1/security/login), against the same 100 ms target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("IMS_LOG_LEVEL", "WARNING")  # no log line per request
from _setup import fresh_app, percentile  # noqa: E402
from search import FUNDS, SURNAMES, load  # noqa: E402

TARGET_MS = 100


def _serve(app) -> tuple[str, object]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def _login(base: str, username: str):
    import requests

    s = requests.Session()
    page = s.get(f"{base}/login/").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    data = {"username": username, "password": "Passw0rd!"}
    if token:
        data["csrf_token"] = token.group(1)
    r = s.post(f"{base}/login/", data=data, allow_redirects=False)
    if r.status_code != 302:
        sys.exit(f"login as {username} failed: {r.status_code}")
    return s


def _ids(app) -> dict:
    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        q = lambda sql: db.session.execute(text(sql)).scalar()  # noqa: E731
        return {"txn": q("SELECT max(id) FROM income_transaction"),
                "suspense": q("SELECT min(id) FROM suspense_item WHERE status = 'unallocated'"),
                "task": q("SELECT min(id) FROM workflow_task WHERE status = 'ready' "
                          "AND role = 'Finance Manager'"),
                "ref": q("SELECT account_reference FROM income_transaction "
                         "ORDER BY id DESC LIMIT 1")}


def _fund_week(rng: random.Random, path: str, extra: str = ""):
    """A path-maker: ``path`` searched by a random fund and a random week of the last two years."""
    today = dt.date.today()

    def make():
        d0 = today - dt.timedelta(days=rng.randint(7, 700))
        return (f"{path}?fund={rng.choice(FUNDS)}&date_from={d0.isoformat()}"
                f"&date_to={(d0 + dt.timedelta(days=7)).isoformat()}{extra}")

    return make


def pages(ids: dict) -> list[tuple[str, str, object]]:
    """(role, name, path or path-maker) — the pages each role uses day to day."""
    rng = random.Random(3)
    fund_week = _fund_week(rng, "/transactions/")
    out = [
        ("clerk", "dashboard", "/"),
        ("clerk", "transaction search: fund + week", fund_week),
        ("clerk", "transaction search: reference", f"/transactions/?account_reference={ids['ref']}"),
        ("clerk", "transaction search: common surname",
         lambda: f"/transactions/?narrative={rng.choice(SURNAMES).lower()}"),
        ("clerk", "transaction page", f"/transactions/{ids['txn']}"),
        ("clerk", "suspense queue", "/suspense/"),
        ("clerk", "refund register", "/refunds/"),
        ("clerk", "write-off register", "/write-offs/"),
        ("clerk", "imports", "/imports/"),
        ("manager", "task inbox", "/tasks/"),
        ("auditor", "audit trail", "/auditeventview/list/"),
    ]
    if ids.get("suspense"):
        out.append(("clerk", "suspense item", f"/suspense/{ids['suspense']}"))
    if ids.get("task"):
        out.append(("manager", "task page", f"/tasks/{ids['task']}"))
    return out


def api_reads(ids: dict) -> list[tuple[str, str, object]]:
    """(role, name, path or path-maker) — the API's reads: a page of 100 results, or one record."""
    rng = random.Random(4)
    T = "/api/v1/transactions/"
    fund_week = _fund_week(rng, T, "&page_size=100")
    out = [
        ("clerk", "transactions, newest (100)", f"{T}?page_size=100"),
        ("clerk", "transactions: fund + week (100)", fund_week),
        ("clerk", "transactions: reference", f"{T}?account_reference={ids['ref']}&page_size=100"),
        ("clerk", "transactions: common surname (100)",
         lambda: f"{T}?narrative={rng.choice(SURNAMES).lower()}&page_size=100"),
        ("clerk", "transaction", f"{T}{ids['txn']}"),
        ("clerk", "suspense (100)", "/api/v1/suspense/?q=(page_size:100)"),
        ("clerk", "imports (100)", "/api/v1/imports/?page_size=100"),
        ("manager", "refunds (100)", "/api/v1/refunds/?page_size=100"),
        ("manager", "write-offs (100)", "/api/v1/write-offs/?page_size=100"),
        ("manager", "tasks", "/api/v1/tasks/"),
    ]
    if ids.get("suspense"):
        out.append(("clerk", "suspense item", f"/api/v1/suspense/{ids['suspense']}"))
    return out


def _api_session(base: str, username: str):
    import requests

    r = requests.post(f"{base}/api/v1/security/login", json={
        "username": username, "password": "Passw0rd!", "provider": "db"})
    if r.status_code != 200:
        sys.exit(f"API login as {username} failed: {r.status_code}")
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return s


def measure(base: str, ids: dict, runs: int) -> list[tuple[str, float, float, int]]:
    import requests

    sessions: dict[tuple[str, bool], requests.Session] = {}
    results = []
    floor = [0.0]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        requests.get(f"{base}/healthz")
        times.append((time.perf_counter() - t) * 1000)
    results.append(("baseline: /healthz (HTTP floor)", percentile(times, 50),
                    percentile(times, 95), 200))
    floor[0] = percentile(times, 50)
    reads = [(role, name, path, False) for role, name, path in pages(ids)] + [
        (role, f"API {name}", path, True) for role, name, path in api_reads(ids)]
    for role, name, path, api in reads:
        key = (role, api)
        s = sessions.get(key) or sessions.setdefault(
            key, (_api_session if api else _login)(base, role))
        make = path if callable(path) else (lambda p=path: p)
        for _ in range(3):
            s.get(base + make())
        times, status = [], 200
        for _ in range(runs):
            url = base + make()
            t = time.perf_counter()
            r = s.get(url)
            times.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                status = r.status_code
        results.append((f"{role}: {name}", percentile(times, 50), percentile(times, 95), status))
    return results


def _dashboard_figures(app, runs: int, summaries: bool) -> tuple[float, float]:
    """p50/p95 of the dashboard's figures alone (search.dashboard, all funds), in process."""
    from app.extensions import db
    from app.services.search import dashboard

    times = []
    with app.app_context():
        for _ in range(runs):
            t = time.perf_counter()
            dashboard(db.session, summaries=summaries)
            times.append((time.perf_counter() - t) * 1000)
            db.session.rollback()
        db.session.remove()
    return percentile(times, 50), percentile(times, 95)


def _reused(url: str, rows: int):
    """The app on ``url`` as it is, if it holds ``rows`` transactions or more (else None)."""
    from _setup import existing_app
    from sqlalchemy import create_engine, inspect, text

    from config import _normalise_db_url

    engine = create_engine(_normalise_db_url(url))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("income_transaction"):
                return None
            held = conn.execute(text("SELECT count(*) FROM income_transaction")).scalar()
    finally:
        engine.dispose()
    return existing_app(url) if held >= rows else None


def _load(app, rows: int) -> float:
    """The demo seed, then ``rows`` transactions (bench/search.py's loader); seconds taken."""
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db
        from app.services.demo_activity import seed_activity
        from app.services.seed import seed_demo
        from app.services.workflow import sync_workflows

        seed_demo(db.session, app.appbuilder)
        sync_workflows(db.session)
        seed_activity(db.session, app.instance_path)
        db.session.commit()
        first = (db.session.execute(text(
            "SELECT greatest((SELECT coalesce(max(id), 0) FROM posting_group), "
            "(SELECT coalesce(max(id), 0) FROM income_transaction))")).scalar() or 0) + 1
        db.session.remove()
    with app.app_context():
        load_s, _refs = load(app, rows, first_id=first)
    return load_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--reuse", action="store_true",
                        help="one size: keep the database if it holds that many transactions "
                             "already (a re-run on an earlier run's data; nothing is wiped)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    sizes = [int(r) for r in args.rows.split(",")]
    if len(sizes) > 1:  # one app per process (Flask-AppBuilder): each size in its own process
        import subprocess

        for rows in sizes:
            subprocess.run([sys.executable, os.path.abspath(__file__), "--rows", str(rows),
                            "--runs", str(args.runs), *(["--reuse"] if args.reuse else [])],
                           check=True)
        return
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    for rows in sizes:
        app = _reused(url, rows) if args.reuse else None
        load_s = 0.0
        if app is None:
            app = fresh_app(url)
            load_s = _load(app, rows)
        with app.app_context():
            from app.extensions import db
            from app.services.income_days import summarise

            summarise(db.session)  # what the worker's tick keeps summed (the past days' income)
            db.session.remove()
        app.config["IMS_DASHBOARD_CACHE_SECONDS"] = 0  # measure the work, not the cache
        base, server = _serve(app)
        print(f"pages bench: {rows:,} transactions " + (
              f"loaded in {load_s:.1f} s; " if load_s else "(the database as an earlier run left it); ") +
              f"{args.runs} requests per page; dashboard cache off")
        for name, p50, p95, status in measure(base, _ids(app), args.runs):
            flag = "" if name.startswith("baseline") else (
                "  [OK]" if p95 < TARGET_MS else f"  [SLOW vs {TARGET_MS} ms]")
            bad = f"  HTTP {status}" if status != 200 else ""
            print(f"  {name:48s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms{flag}{bad}")
        for label, summaries in (("with the worker's daily sums", True),
                                 ("without them (no worker)", False)):
            p50, p95 = _dashboard_figures(app, args.runs, summaries)
            print(f"  dashboard figures {label:30s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
                  "  (in process: the queries and their folding, no page)")
        server.shutdown()


if __name__ == "__main__":
    main()
