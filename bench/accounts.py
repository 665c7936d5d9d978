"""Account-holder sync benchmark: 1,000,000 account holders synced into PostgreSQL (a first load,
then a second file with 5% of the accounts changed and 1% missing), against a plain COPY of the
same rows into a table of text columns.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_onboard .venv/bin/python bench/accounts.py
    ... --rows 100000     # smaller

The database named by DATABASE_URL is WIPED. Prints times (check = read, parse and stage the
file and work out the dry run; apply = the one transaction that changes the accounts), the
process's peak resident memory, and each sync's ratio to the COPY (target: within 5x; peak
memory under 300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _setup import fresh_app  # noqa: E402

FIRST = ["Siân", "Rhys", "Megan", "Dylan", "Ffion", "Gareth", "Carys", "Owain", "Eleri", "John",
         "Mary", "David", "Susan", "Peter", "Anne", "Huw"]
LAST = ["Jones", "Williams", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Lewis", "Morgan",
        "Griffiths", "Price", "Owen", "Jenkins", "Powell", "Smith", "Taylor", "Llewelyn"]
STREETS = ["High Street", "Commercial Road", "Station Road", "Church Lane", "Heol y Frenhines",
           "Stow Hill", "Caerleon Road", "Chepstow Road"]
TOWNS = ["Newport", "Caerleon", "Bettws", "Malpas", "Rogerstone", "Maindee"]
HEADER = "Ref,Name,Addr1,Addr2,Postcode,Balance,AsAt,Stop,StopMsg\n"


def line(i: int, rng: random.Random, changed: bool = False) -> str:
    name = f"{FIRST[i % 16]} {LAST[(i // 16) % 17]}"
    if changed:
        name += "-Price"
    balance = (i * 37) % 250000
    stop = "Y,BAILIFF" if i % 97 == 0 else ","
    return (f"CT{i:09d},{name},{(i % 180) + 1} {STREETS[i % 8]},{TOWNS[i % 6]},"
            f"NP{(i % 20) + 1} {(i % 9) + 1}AB,{balance // 100}.{balance % 100:02d},"
            f"31/03/2026,{stop}\n")


def write_files(rows: int, folder: str) -> tuple[str, str]:
    rng = random.Random(7)
    first = os.path.join(folder, "accounts-1.csv")
    second = os.path.join(folder, "accounts-2.csv")
    with open(first, "w", encoding="utf-8") as a, open(second, "w", encoding="utf-8") as b:
        a.write(HEADER)
        b.write(HEADER)
        for i in range(rows):
            a.write(line(i, rng))
            r = i % 100
            if r == 99:
                continue  # 1% missing
            b.write(line(i, rng, changed=r < 5))  # 5% changed
    return first, second


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_copy(app, path: str) -> float:
    from app.extensions import db

    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP TABLE IF EXISTS bench_plain_copy")
        cur.execute("CREATE TABLE bench_plain_copy (ref text, name text, addr1 text, addr2 text, "
                    "postcode text, balance text, asat text, stop text, stopmsg text)")
        raw.commit()
        t0 = time.perf_counter()
        with open(path, "rb") as fh, cur.copy("COPY bench_plain_copy FROM STDIN "
                                              "WITH (FORMAT csv, HEADER true)") as copy:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        raw.commit()
        elapsed = time.perf_counter() - t0
        cur.execute("DROP TABLE bench_plain_copy")
        raw.commit()
        return elapsed
    finally:
        raw.close()


def sync(app, path: str, profile: str) -> tuple[float, float, dict]:
    from app.extensions import db
    from app.services import accounts as svc

    with app.app_context():
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            s = svc.receive(db.session, profile=profile, stream=fh, filename=os.path.basename(path),
                            actor="bench", instance_path=app.instance_path, max_bytes=1 << 31)
        s = svc.check_sync(db.session, s.id)
        t1 = time.perf_counter()
        assert s.status == "checked", (s.status, s.error)
        s = svc.apply_sync(db.session, s.id, actor="bench")
        t2 = time.perf_counter()
        result = svc.counts(s)
        os.remove(s.stored_path)
        db.session.remove()
    return t1 - t0, t2 - t1, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    folder = tempfile.mkdtemp(prefix="ims-bench-accounts-")
    first, second = write_files(args.rows, folder)
    size = os.path.getsize(first) / 1024 / 1024
    app = fresh_app(url)
    with app.app_context():
        from app.extensions import db
        from app.models.accounts import AccountHolderProfile
        from app.services.audit import set_actor

        set_actor("bench")
        db.session.add(AccountHolderProfile(
            name="bench-ctax", fund_code="CTAX", file_format="csv", encoding="utf-8",
            delimiter=",", has_header=True, date_format="%d/%m/%Y", complete=True,
            skip_bad_lines=False, columns=json.dumps({
                "reference": "Ref", "name": "Name", "address1": "Addr1", "address2": "Addr2",
                "postcode": "Postcode", "balance": "Balance", "balance_date": "AsAt",
                "stop": "Stop", "stop_message": "StopMsg"})))
        db.session.commit()
        copy1 = plain_copy(app, first)
        copy2 = plain_copy(app, second)
        base_mb = peak_mb()
    print(f"account-holder sync benchmark: {args.rows:,} accounts, file {size:.0f} MB, "
          f"PostgreSQL")
    print(f"plain COPY of the same rows: first file {copy1:.1f} s, second {copy2:.1f} s")
    for label, path, copy_s in (("first load", first, copy1),
                                ("second file (5% changed, 1% missing)", second, copy2)):
        check_s, apply_s, result = sync(app, path, "bench-ctax")
        total = check_s + apply_s
        print(f"{label}: check (dry run) {check_s:.1f} s + apply {apply_s:.1f} s = {total:.1f} s"
              f" ({args.rows / total:,.0f} accounts/s); ratio to COPY {total / copy_s:.1f}x "
              f"(target <= 5x); {result}")
    print(f"peak memory (process RSS) {peak_mb():.0f} MB (app loaded: {base_mb:.0f} MB; "
          f"target < 300 MB)")
    for p in (first, second):
        os.remove(p)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
