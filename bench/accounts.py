"""Account-holder sync benchmark: 1,000,000 account holders synced into PostgreSQL (a first load,
then a second file with 5% of the accounts changed and 1% missing), against a COPY of the same
rows in the same run.

The baseline is equal in the work it leaves the database: the rows each file makes — the
values the sync stores (fund, reference, name, joined address, postcode, balance in pence,
date, stop and its source, Soundex key, sync id) — prepared beforehand (not timed) as a CSV and
COPYed into ``bench_copy_account_holder``, a table with account_holder's columns, primary key,
unique constraint, indexes and foreign key to fund (the check for each row that storing a row
in account_holder costs, however it is stored), empty before each COPY. Only the COPY is timed:
no reading, validation, comparison, change list or audit. Printed too: the same COPY without
the foreign key, and the plain COPY of the file itself into a table of text columns (no index),
the floor.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ims_onboard .venv/bin/python bench/accounts.py
    ... --rows 100000     # smaller

The database named by DATABASE_URL is WIPED. Prints times (check = read, parse and stage the
file and work out the dry run; apply = the one transaction that changes the accounts), the
process's peak resident memory, and each sync's ratio to the same-rows COPY (target: within
5x; peak memory under 300 MB).
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
PROFILE = False
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


_KEYS: dict[str, str | None] = {}


def stored(i: int, changed: bool = False) -> tuple:
    """The account_holder row ``line(i, changed)`` makes (the baseline's COPY input)."""
    from app.domain.phonetic import name_key

    name = f"{FIRST[i % 16]} {LAST[(i // 16) % 17]}" + ("-Price" if changed else "")
    if name not in _KEYS:
        _KEYS[name] = name_key(name)
    balance = (i * 37) % 250000
    stop = "BAILIFF" if i % 97 == 0 else None
    return ("CTAX", f"CT{i:09d}", name, f"{(i % 180) + 1} {STREETS[i % 8]}, {TOWNS[i % 6]}",
            f"NP{(i % 20) + 1} {(i % 9) + 1}AB", balance, "2026-03-31", stop,
            "file" if stop else None, _KEYS[name], 1)


STORED_COLUMNS = ("fund_code", "account_reference", "name", "address", "postcode", "balance",
                  "balance_date", "stop_message", "stop_source", "phonetic_key", "last_sync_id")


def write_files(rows: int, folder: str) -> tuple[str, str, str, str]:
    """The two account files and, for the baseline, the account_holder rows each makes."""
    import csv

    rng = random.Random(7)
    first = os.path.join(folder, "accounts-1.csv")
    second = os.path.join(folder, "accounts-2.csv")
    rows1 = os.path.join(folder, "rows-1.csv")
    rows2 = os.path.join(folder, "rows-2.csv")
    with open(first, "w", encoding="utf-8") as a, open(second, "w", encoding="utf-8") as b, \
            open(rows1, "w", encoding="utf-8", newline="") as ra, \
            open(rows2, "w", encoding="utf-8", newline="") as rb:
        wa, wb = csv.writer(ra), csv.writer(rb)
        a.write(HEADER)
        b.write(HEADER)
        for i in range(rows):
            a.write(line(i, rng))
            wa.writerow(stored(i))
            r = i % 100
            if r == 99:
                continue  # 1% missing
            b.write(line(i, rng, changed=r < 5))  # 5% changed
            wb.writerow(stored(i, changed=r < 5))
    return first, second, rows1, rows2


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


def same_rows_copy(app, path: str, foreign_key: bool = True) -> float:
    """COPY of the account_holder rows in ``path`` (prepared, not timed) into an empty table
    with account_holder's columns, keys and indexes (and, with ``foreign_key``, its foreign key
    to fund: a check per row that any way of storing these rows in account_holder pays)."""
    from flask_appbuilder import Model
    from sqlalchemy import Column, Index, MetaData, Table, UniqueConstraint

    from app.extensions import db

    src = Model.metadata.tables["account_holder"]
    md = MetaData()
    copy = Table("bench_copy_account_holder", md, *[
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, unique=c.unique,
               autoincrement=c.autoincrement) for c in src.columns])
    for uc in src.constraints:
        if isinstance(uc, UniqueConstraint):
            copy.append_constraint(UniqueConstraint(*[c.name for c in uc.columns],
                                                    name=f"bench_copy_{uc.name}"))
    for ix in src.indexes:
        Index(f"bench_copy_{ix.name}", *[copy.c[c.name] for c in ix.columns], unique=ix.unique)
    with app.app_context():
        with db.engine.begin() as conn:
            md.drop_all(conn)
            md.create_all(conn)
            if foreign_key:
                conn.exec_driver_sql("ALTER TABLE bench_copy_account_holder ADD CONSTRAINT "
                                     "bench_copy_fund_fkey FOREIGN KEY (fund_code) "
                                     "REFERENCES fund (code)")
            conn.exec_driver_sql("CHECKPOINT")
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            with open(path, "rb") as fh, cur.copy(
                    f"COPY bench_copy_account_holder ({', '.join(STORED_COLUMNS)}) FROM STDIN "
                    f"WITH (FORMAT csv)") as cp:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            raw.commit()
            elapsed = time.perf_counter() - t0
        finally:
            raw.close()
        with db.engine.begin() as conn:
            md.drop_all(conn)
            conn.exec_driver_sql("CHECKPOINT")
    return elapsed


def sync(app, path: str, profile: str) -> tuple[float, float, dict]:
    from app.extensions import db
    from app.services import accounts as svc

    with app.app_context():
        with db.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")  # each phase starts with no dirty buffers
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            s = svc.receive(db.session, profile=profile, stream=fh, filename=os.path.basename(path),
                            actor="bench", instance_path=app.instance_path, max_bytes=1 << 31)
        if PROFILE:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            s = prof.runcall(svc.check_sync, db.session, s.id)
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        else:
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
    ap.add_argument("--cprofile", action="store_true", help="profile the checks (cProfile)")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.cprofile
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is wiped).")
    folder = tempfile.mkdtemp(prefix="ims-bench-accounts-")
    first, second, rows1, rows2 = write_files(args.rows, folder)
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
        plain1 = plain_copy(app, first)
        plain2 = plain_copy(app, second)
        base_mb = peak_mb()
    # the baselines run before the syncs and again after them, and the ratios use the means:
    # on a shared machine the speed drifts, and bracketing the syncs evens it out
    same1 = [same_rows_copy(app, rows1)]
    same2 = [same_rows_copy(app, rows2)]
    nofk1 = [same_rows_copy(app, rows1, foreign_key=False)]
    nofk2 = [same_rows_copy(app, rows2, foreign_key=False)]
    results = [sync(app, path, "bench-ctax") for path in (first, second)]
    same1.append(same_rows_copy(app, rows1))
    same2.append(same_rows_copy(app, rows2))
    nofk1.append(same_rows_copy(app, rows1, foreign_key=False))
    nofk2.append(same_rows_copy(app, rows2, foreign_key=False))
    spread1 = f"{min(same1):.1f}-{max(same1):.1f}"
    spread2 = f"{min(same2):.1f}-{max(same2):.1f}"
    nofk_spread = f"first {min(nofk1):.1f}-{max(nofk1):.1f} s, second {min(nofk2):.1f}-{max(nofk2):.1f} s"
    same1, same2 = sum(same1) / 2, sum(same2) / 2
    nofk1, nofk2 = sum(nofk1) / 2, sum(nofk2) / 2
    print(f"account-holder sync benchmark: {args.rows:,} accounts, file {size:.0f} MB, "
          f"PostgreSQL")
    print(f"baseline, COPY of the same account rows into a copy of account_holder (its columns, "
          f"keys, indexes and foreign key to fund), before and after the syncs: first file "
          f"{spread1} s (mean {same1:.1f} s), second {spread2} s (mean {same2:.1f} s)")
    print(f"  the same without the foreign key, before and after: {nofk_spread} (means "
          f"{nofk1:.1f} s, {nofk2:.1f} s)")
    print(f"  plain COPY of the file into text columns (no index): first {plain1:.1f} s, "
          f"second {plain2:.1f} s")
    for label, (check_s, apply_s, result), copy_s, nofk_s, plain_s in (
            ("first load", results[0], same1, nofk1, plain1),
            ("second file (5% changed, 1% missing)", results[1], same2, nofk2, plain2)):
        total = check_s + apply_s
        print(f"{label}: check (dry run) {check_s:.1f} s + apply {apply_s:.1f} s = {total:.1f} s"
              f" ({args.rows / total:,.0f} accounts/s); ratio to the same-rows COPY "
              f"{total / copy_s:.1f}x (target <= 5x; without its foreign key "
              f"{total / nofk_s:.1f}x; to the plain COPY {total / plain_s:.1f}x); {result}")
    print(f"peak memory (process RSS) {peak_mb():.0f} MB (app loaded: {base_mb:.0f} MB; "
          f"target < 300 MB)")
    for p in (first, second, rows1, rows2):
        os.remove(p)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
