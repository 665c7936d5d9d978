"""Account-holder sync: dry run, apply, stops, closing, bad input, idempotence (both databases)."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from app.models.accounts import AccountHolderProfile, AccountSyncChange, AccountSyncRow
from app.models.audit import AuditEvent
from app.models.reference import AccountHolder, Fund
from app.services.accounts import apply_sync, check_sync, receive
from app.services.accounts.reading import FileRefused
from tests.conftest import unique

HEADER = "Ref,Name,Addr1,Addr2,Postcode,Balance,AsAt,Stop,StopMsg\n"


@pytest.fixture
def fund(session):
    code = unique("AS")
    session.add(Fund(code=code, name=f"Sync test {code}", account_must_exist=True))
    session.commit()
    return code


def make_profile(session, fund, **kw):
    columns = kw.pop("columns", {"reference": "Ref", "name": "Name", "address1": "Addr1",
                                 "address2": "Addr2", "postcode": "Postcode",
                                 "balance": "Balance", "balance_date": "AsAt", "stop": "Stop",
                                 "stop_message": "StopMsg"})
    p = AccountHolderProfile(name=unique("P", 12), fund_code=fund, file_format="csv",
                             encoding=kw.pop("encoding", "utf-8"), delimiter=",",
                             has_header=kw.pop("has_header", True),
                             date_format=kw.pop("date_format", "%d/%m/%Y"),
                             columns=json.dumps(columns), complete=kw.pop("complete", True),
                             skip_bad_lines=kw.pop("skip_bad_lines", False), **kw)
    session.add(p)
    session.commit()
    return p


def run(session, app, profile, content, *, apply=True, max_bytes=10**7, filename="a.csv"):
    data = content.encode("utf-8") if isinstance(content, str) else content
    sync = receive(session, profile=profile, stream=io.BytesIO(data), filename=filename,
                   actor="admin", instance_path=app.instance_path, max_bytes=max_bytes)
    sync = check_sync(session, sync.id)
    if apply and sync.status == "checked":
        sync = apply_sync(session, sync.id, actor="admin")
    return sync


def accounts(session, fund):
    return {a.account_reference: a for a in session.scalars(
        select(AccountHolder).where(AccountHolder.fund_code == fund)).all()}


def test_first_load_then_changes_missing_and_idempotence(session, app, fund):
    profile = make_profile(session, fund)
    first = HEADER + ("A1,Mrs Siân Jones,1 High St,Newport,np20 1aa,12.50,31/03/2026,,\n"
                      "A2,John Smith,2 Low St,,NP20 2BB,0,01/04/2026,Y,BAILIFF\n"
                      "A3,Ann Evans,3 Mid St,,NP20 3CC,-5.00,,,\n")
    events_before = session.scalar(select(func.count(AuditEvent.id)))
    sync = run(session, app, profile, first)
    assert sync.status == "applied", sync.error
    assert (sync.new_count, sync.changed_count, sync.unchanged_count, sync.missing_count) == \
        (3, 0, 0, 0)
    acc = accounts(session, fund)
    assert acc["A1"].address == "1 High St, Newport" and acc["A1"].postcode == "NP20 1AA"
    assert acc["A1"].balance == 1250 and str(acc["A1"].balance_date) == "2026-03-31"
    assert acc["A1"].phonetic_key == "J520"
    assert acc["A2"].stop_message == "BAILIFF" and acc["A2"].stop_source == "file"
    assert acc["A3"].balance == -500
    # one apply event (plus receive and check), not one per account
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(
        session.scalar(select(func.count(AuditEvent.id))) - events_before)).all()
    assert sorted(e.action for e in events) == ["account_sync.apply", "account_sync.check",
                                                "account_sync.receive"]
    applied = json.loads(next(e for e in events if e.action == "account_sync.apply").after)
    assert applied["new"] == 3 and applied["change_rows"] == 3
    assert applied["change_list"] == f"account_sync_change.sync_id={sync.id}"
    assert session.scalar(select(func.count(AccountSyncChange.id)).where(
        AccountSyncChange.sync_id == sync.id)) == 3
    assert session.scalar(select(func.count(AccountSyncRow.id)).where(
        AccountSyncRow.sync_id == sync.id)) == 0

    # staff set a stop on A3; the file sets none: kept. A2's file stop is cleared by a file
    # without it. A1 changes name; A3's line is gone: closed, never deleted.
    a3 = acc["A3"]
    a3.stop_message = "Squatter"
    session.commit()
    assert a3.stop_source == "staff"
    second = HEADER + ("A1,Mrs Sian Jones-Price,1 High St,Newport,NP20 1AA,12.50,31/03/2026,,\n"
                       "A2,John Smith,2 Low St,,NP20 2BB,0,01/04/2026,N,\n"
                       "A4,Bob Price,4 New St,,NP20 4DD,1.00,,,\n")
    dry = run(session, app, profile, second, apply=False)
    assert dry.status == "checked"
    assert (dry.new_count, dry.changed_count, dry.unchanged_count, dry.missing_count) == \
        (1, 2, 0, 1)
    sample = {s["reference"]: s["changes"] for s in dry.sample_list}
    assert {"field": "name", "before": "Mrs Siân Jones", "after": "Mrs Sian Jones-Price"} \
        in sample["A1"]
    assert {"field": "stop_message", "before": "BAILIFF", "after": None} in sample["A2"]
    assert accounts(session, fund)["A1"].name == "Mrs Siân Jones"  # dry run changed nothing
    sync = apply_sync(session, dry.id, actor="admin")
    acc = accounts(session, fund)
    assert acc["A1"].name == "Mrs Sian Jones-Price"
    assert acc["A2"].stop_message is None and acc["A2"].stop_source is None
    assert acc["A3"].closed_at is not None and acc["A3"].stop_message == "Squatter"
    assert acc["A4"].closed_at is None
    kinds = sorted(c.kind for c in session.scalars(select(AccountSyncChange).where(
        AccountSyncChange.sync_id == sync.id)))
    assert kinds == ["changed", "changed", "closed", "new"]

    # the same file again changes nothing
    again = run(session, app, profile, second)
    assert again.status == "applied"
    assert (again.new_count, again.changed_count, again.missing_count) == (0, 0, 0)
    assert again.unchanged_count == 3
    assert session.scalar(select(func.count(AccountSyncChange.id)).where(
        AccountSyncChange.sync_id == again.id)) == 0

    # A3 back in a file: reopened; the staff stop is still kept
    third = second + "A3,Ann Evans,3 Mid St,,NP20 3CC,-5.00,,,\n"
    sync = run(session, app, profile, third)
    acc = accounts(session, fund)
    assert sync.changed_count == 1 and acc["A3"].closed_at is None
    assert acc["A3"].stop_message == "Squatter" and acc["A3"].stop_source == "staff"
    # a file stop replaces the staff one; later files without it clear it
    run(session, app, profile, second + "A3,Ann Evans,3 Mid St,,NP20 3CC,-5.00,,Y,COURT\n")
    assert accounts(session, fund)["A3"].stop_message == "COURT"
    run(session, app, profile, third)
    assert accounts(session, fund)["A3"].stop_message is None
    # applying a sync twice is refused
    from app.domain.errors import Conflict

    with pytest.raises(Conflict):
        apply_sync(session, sync.id, actor="admin")


def test_incomplete_file_closes_nothing(session, app, fund):
    profile = make_profile(session, fund, complete=False)
    run(session, app, profile, HEADER + "B1,Al Ant,,,,,,,\nB2,Bo Bee,,,,,,,\n")
    sync = run(session, app, profile, HEADER + "B1,Al Ant,,,,,,,\n")
    assert sync.missing_count == 0
    assert all(a.closed_at is None for a in accounts(session, fund).values())


def _refused(session, app, profile, content, **kw):
    before = dict((a.account_reference, a.name) for a in accounts(session, profile.fund_code).values())
    sync = run(session, app, profile, content, **kw)
    assert sync.status == "refused", sync.status
    after = dict((a.account_reference, a.name) for a in accounts(session, profile.fund_code).values())
    assert before == after
    assert session.scalar(select(func.count(AccountSyncRow.id)).where(
        AccountSyncRow.sync_id == sync.id)) == 0
    return sync


def test_bad_lines_refuse_the_file_listing_every_one(session, app, fund):
    profile = make_profile(session, fund)
    run(session, app, profile, HEADER + "C0,Kept Name,,,,,,,\n")
    content = HEADER + ("C0,New Name,,,,,,,\n"
                        "C1,Ok,,,,,,,\n"
                        ",No Ref,,,,,,,\n"
                        "C2,Bad Date,,,,,31/02/2026,,\n"
                        "C3,Bad Amount,,,,12.345,,,\n"
                        "C4,,,,,,,,\n"
                        "C1,Dup,,,,,,,\n"
                        "C5,Short\n")
    sync = _refused(session, app, profile, content)
    lines = [b["line"] for b in sync.bad_line_list]
    assert lines == [3, 4, 5, 6, 7, 8, 9], sync.bad_line_list
    text = " ".join(b["message"] for b in sync.bad_line_list)
    assert "does not exist" in text and "duplicate" in text and "no account reference" in text
    assert accounts(session, fund)["C0"].name == "Kept Name"


def test_skip_bad_lines_by_profile(session, app, fund):
    profile = make_profile(session, fund, skip_bad_lines=True, complete=False)
    sync = run(session, app, profile, HEADER + "D1,Ok One,,,,,,,\nD2,Bad,,,,,99/99/2026,,\n"
                                               "D3,Dup A,,,,,,,\nD3,Dup B,,,,,,,\n")
    assert sync.status == "applied"
    assert sync.bad_count == 3 and [b["line"] for b in sync.bad_line_list] == [3, 4, 5]
    assert set(accounts(session, fund)) == {"D1"}


def test_bad_input_refused(session, app, fund):
    profile = make_profile(session, fund)
    sync = _refused(session, app, profile, HEADER.replace("StopMsg", "StopMsg,Colour") +
                    "E1,X,,,,,,,,red\n")
    assert "Unknown column" in sync.error and "Colour" in sync.error
    sync = _refused(session, app, profile, "Ref,Name\nE1,X\n")
    assert "no column" in sync.error
    sync = _refused(session, app, profile, (HEADER + "E1,Siân,,,,,,,\n").encode("cp1252"))
    assert "not valid utf-8" in sync.error
    with pytest.raises(FileRefused, match="larger than the limit"):
        run(session, app, profile, HEADER + "E1,X,,,,,,,\n" * 100, max_bytes=200)
    noref = make_profile(session, fund, columns={"name": "Name"})
    sync = _refused(session, app, noref, HEADER + "E1,X,,,,,,,\n")
    assert "no column to the account reference" in sync.error
    with pytest.raises(FileRefused, match="empty"):
        run(session, app, profile, "")
    sync = _refused(session, app, profile, HEADER)
    assert "no account lines" in sync.error


def test_other_encoding_and_fixed_width(session, app, fund):
    p = AccountHolderProfile(name=unique("F", 12), fund_code=fund, file_format="fixed",
                             encoding="cp1252", delimiter=",", has_header=False,
                             date_format="%Y%m%d",
                             columns=json.dumps({"reference": "1-8", "surname": "9-20",
                                                 "forename": "21-30", "postcode": "31-38",
                                                 "balance_date": "39-46", "stop_message": "47-60"}),
                             complete=False, skip_bad_lines=False)
    session.add(p)
    session.commit()
    line = "F0000001Llewelyn    Siân      CF10 1AA20260229              \n"
    sync = _refused(session, app, p, line.encode("cp1252"))  # 2026-02-29 does not exist
    assert "does not exist" in sync.bad_line_list[0]["message"]
    line2 = "F0000001Llewelyn    Siân      CF10 1AA20240229Do not accept \n"
    sync = run(session, app, p, line2.encode("cp1252"))
    assert sync.status == "applied", sync.error
    a = accounts(session, fund)["F0000001"]
    assert a.name == "Siân Llewelyn" and a.phonetic_key == "L450"
    assert a.stop_message == "Do not accept" and str(a.balance_date) == "2024-02-29"
