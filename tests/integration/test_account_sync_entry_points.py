"""Account-holder sync from the command line and from the drop folder read by `ims tick`;
concurrent applies of one sync (one wins)."""

from __future__ import annotations

import io
import json
import threading

from sqlalchemy import func, select

from app.models.accounts import AccountHolderProfile, AccountSync
from app.models.reference import AccountHolder, Fund
from tests.conftest import unique


def _profile(session, **kw):
    code = unique("AE")
    session.add(Fund(code=code, name=f"Entry {code}"))
    session.commit()
    p = AccountHolderProfile(name=unique("EP", 12), fund_code=code, file_format="csv",
                             encoding="utf-8", delimiter=",", has_header=True,
                             date_format="%d/%m/%Y", complete=kw.get("complete", True),
                             skip_bad_lines=False,
                             columns=json.dumps({"reference": "Ref", "name": "Name"}))
    session.add(p)
    session.commit()
    return p


def _count(session, fund):
    return session.scalar(select(func.count(AccountHolder.id)).where(
        AccountHolder.fund_code == fund))


def test_cli_dry_run_then_import_and_bad_file(app, session, tmp_path):
    p = _profile(session)
    path = tmp_path / "acc.csv"
    path.write_text("Ref,Name\nC1,Ann Jones\nC2,Bob Price\n", encoding="utf-8")
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["ims", "accounts", "import", str(path), "--profile", p.name,
                              "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "2 new" in dry.output and "dry run: nothing applied" in dry.output
    assert _count(session, p.fund_code) == 0
    done = runner.invoke(args=["ims", "accounts", "import", str(path), "--profile", p.name])
    assert done.exit_code == 0 and "applied" in done.output, done.output
    assert _count(session, p.fund_code) == 2
    path.write_text("Ref,Name\nC1,\n", encoding="utf-8")
    bad = runner.invoke(args=["ims", "accounts", "import", str(path), "--profile", p.name])
    assert bad.exit_code == 1 and "Line 2: no name" in bad.output
    missing = runner.invoke(args=["ims", "accounts", "import", str(path), "--profile", "nope"])
    assert missing.exit_code == 1 and "No account-holder profile" in missing.output


def test_drop_folder_read_by_tick(app, session, tmp_path):
    p = _profile(session)
    folder = tmp_path / "drop" / p.name
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text("Ref,Name\nD1,Ann Jones\n", encoding="utf-8")
    (folder / "bad.csv").write_text("Ref,Name\nD1,Ann\nD1,Bob\n", encoding="utf-8")
    app.config["IMS_ACCOUNT_DROP_DIR"] = str(tmp_path / "drop")
    try:
        result = app.test_cli_runner().invoke(args=["ims", "tick"])
    finally:
        app.config["IMS_ACCOUNT_DROP_DIR"] = ""
    assert result.exit_code == 0, result.output
    assert "good.csv:applied" in result.output and "bad.csv:refused" in result.output
    assert (folder / "done" / "good.csv").exists() and (folder / "failed" / "bad.csv").exists()
    assert "duplicate" in (folder / "failed" / "bad.csv.txt").read_text()
    assert not (folder / "good.csv").exists()
    assert _count(session, p.fund_code) == 1


def test_two_applies_of_one_sync_at_once_one_wins(app, session):
    from app.domain.errors import Conflict
    from app.services.accounts import apply_sync, check_sync, receive

    p = _profile(session)
    sync = receive(session, profile=p, stream=io.BytesIO(b"Ref,Name\nT1,Ann\nT2,Bob\n"),
                   filename="t.csv", actor="admin", instance_path=app.instance_path,
                   max_bytes=10**6)
    sid = check_sync(session, sync.id).id
    fund = p.fund_code
    session.remove()
    outcomes = []
    barrier = threading.Barrier(2)

    def worker():
        from app.extensions import db

        with app.app_context():
            try:
                barrier.wait()
                apply_sync(db.session, sid, actor="admin")
                outcomes.append("applied")
            except Conflict:
                outcomes.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["applied", "conflict"]
    from app.extensions import db

    assert db.session.get(AccountSync, sid).status == "applied"
    assert _count(db.session, fund) == 2


def test_tick_fails_a_stopped_check_and_frees_a_stopped_apply(app, session):
    from datetime import timedelta

    from app.models.base import utcnow
    from app.services.accounts import check_sync, receive
    from app.services.accounts.sync import run_due

    p = _profile(session)
    stuck = receive(session, profile=p, stream=io.BytesIO(b"Ref,Name\nS1,Ann\n"),
                    filename="s.csv", actor="admin", instance_path=app.instance_path,
                    max_bytes=10**6)
    stuck.heartbeat_at = utcnow() - timedelta(hours=1)
    applying = receive(session, profile=p, stream=io.BytesIO(b"Ref,Name\nS2,Bob\n"),
                       filename="a.csv", actor="admin", instance_path=app.instance_path,
                       max_bytes=10**6)
    applying = check_sync(session, applying.id)
    applying.status = "applying"
    applying.heartbeat_at = utcnow() - timedelta(hours=1)
    session.commit()
    summary = run_due()
    assert f"{stuck.id}:failed" in summary and f"{applying.id}:checked" in summary
    assert session.get(AccountSync, stuck.id).status == "failed"
    assert session.get(AccountSync, applying.id).status == "checked"
    assert _count(session, p.fund_code) == 0
