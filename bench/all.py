"""`make bench`: every benchmark on a throw-away PostgreSQL database, then one summary table of
the lines that carry a target or a baseline ratio (also written to bench/results.md).

    .venv/bin/python bench/all.py                 # full sizes (about an hour on 2 cores)
    .venv/bin/python bench/all.py --quick         # small sizes, to check they all run

PGHOST/PGPORT/PGUSER say where PostgreSQL is (default 127.0.0.1:5432, postgres, trust auth).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FULL = [("search", ["search.py"]), ("pages", ["pages.py"]), ("receipts", ["receipts.py"]),
        ("workflow", ["workflow.py"]), ("import", ["import.py"]), ("load", ["load.py"]),
        ("portal", ["portal.py"]), ("gl_export", ["gl_export.py"]), ("reports", ["reports.py"]),
        ("accounts", ["accounts.py"]), ("reconcile", ["reconcile.py"])]
QUICK = {"search": ["--rows", "20000", "--runs", "20"], "pages": ["--rows", "20000", "--runs", "5"],
         "receipts": ["--seconds", "5", "--receipts", "50"], "workflow": ["-n", "40", "--chunks", "2"],
         "import": ["--rows", "5000"], "load": ["--users", "10", "--seconds", "20",
                                                "--suspense", "200"],
         "portal": ["--checkouts", "50"], "gl_export": ["--lines", "20000"],
         "reports": ["--rows", "20000", "--runs", "2"], "accounts": ["--rows", "20000"],
         "reconcile": ["--lines", "2000", "--items", "10000"]}
SUMMARY = re.compile(r"\[(OK|SLOW|over|INVALID)[^\]]*\]|target|baseline|ratio|receipts/s|rows/s", re.I)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated names: " + ",".join(n for n, _ in FULL))
    args = ap.parse_args()
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    db = f"ims_bench_{os.getpid()}"
    psql = ["psql", "-h", host, "-p", port, "-U", user, "-v", "ON_ERROR_STOP=1", "-qc"]
    subprocess.run(psql + [f"CREATE DATABASE {db}"], check=True)
    url = f"postgresql://{user}@{host}:{port}/{db}"
    rows = []
    try:
        for name, script in FULL:
            if args.only and name not in args.only.split(","):
                continue
            cmd = [sys.executable, os.path.join(HERE, script[0]), *(QUICK[name] if args.quick else [])]
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, DATABASE_URL=url),
                                  capture_output=True, text=True)
            out = [ln for ln in proc.stdout.splitlines() if ln.strip()]
            for ln in out:
                print("   " + ln)
            if proc.returncode:
                print(proc.stderr[-3000:])
                rows.append((name, f"FAILED (exit {proc.returncode})"))
            rows += [(name, ln.strip()) for ln in out if SUMMARY.search(ln)]
            rows.append((name, f"(ran {time.perf_counter() - t0:.0f} s)"))
    finally:
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS {db}"])
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    table = [f"# Benchmarks, {stamp} ({'quick' if args.quick else 'full'} sizes; "
             f"load average {load:.1f} on {os.cpu_count()} CPUs)", "",
             "| bench | figure |", "|---|---|"]
    table += [f"| {n} | {f.replace('|', '/')} |" for n, f in rows]
    text = "\n".join(table) + "\n"
    with open(os.path.join(HERE, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
