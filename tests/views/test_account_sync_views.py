"""Account holder file pages: upload (JSON and plain POST), dry-run page, apply, change list,
profiles, search; roles; bad input."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from app.models.accounts import AccountHolderProfile
from app.models.reference import AccountHolder, Fund
from tests.conftest import unique

HEADER = "Ref,Name,Addr1,Postcode,Stop\n"
FETCH = {"Accept": "application/json", "X-Requested-With": "fetch"}


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


@pytest.fixture
def profile(session):
    code = unique("AV")
    session.add(Fund(code=code, name=f"View test {code}"))
    session.commit()
    p = AccountHolderProfile(name=unique("VP", 12), fund_code=code, file_format="csv",
                             encoding="utf-8", delimiter=",", has_header=True,
                             date_format="%d/%m/%Y", complete=True, skip_bad_lines=False,
                             columns=json.dumps({"reference": "Ref", "name": "Name",
                                                 "address1": "Addr1", "postcode": "Postcode",
                                                 "stop_message": "Stop"}))
    session.add(p)
    session.commit()
    return p


def _post(c, profile, content, json_=True):
    return c.post("/account-sync/upload", data={"file": (io.BytesIO(content.encode()), "acc.csv"),
                                                "profile": str(profile.id)},
                  headers=FETCH if json_ else {}, content_type="multipart/form-data")


def test_pages_and_roles(as_user, profile):
    c = as_user("admin")
    page = c.get("/account-sync/")
    assert page.status_code == 200 and b'id="account-upload-form"' in page.data
    assert b'name="csrf_token"' in page.data and profile.name.encode() in page.data
    assert as_user("auditor").get("/account-sync/").status_code == 200
    for user in ("clerk", "cashier"):
        assert as_user(user).get("/account-sync/").status_code in (302, 403)
    assert as_user("clerk").post("/account-sync/upload").status_code in (302, 403)
    assert as_user("admin").get("/accountholderprofileview/list/").status_code == 200


def test_dry_run_then_apply_in_the_browser_flow(as_user, inline, profile, session):
    c = as_user("admin")
    resp = _post(c, profile, HEADER + "R1,Gwen Morgan,1 Stow Hill,NP20 1AA,\n"
                                      "R2,Ifor Hughes,2 Stow Hill,NP20 1AB,BAILIFF\n")
    assert resp.status_code == 201, resp.data
    prog = c.get(resp.json["progress_url"]).json
    assert prog["status"] == "checked" and prog["percent"] == 100 and prog["new"] == 2
    page = c.get(resp.json["url"])
    assert page.status_code == 200 and b'id="sync-apply"' in page.data
    assert session.scalar(select(AccountHolder).where(
        AccountHolder.fund_code == profile.fund_code)) is None
    sid = resp.json["id"]
    done = c.post(f"/account-sync/{sid}/apply", follow_redirects=True)
    assert done.status_code == 200 and b'id="sync-changes"' in done.data
    changes = c.get(f"/account-sync/{sid}/changes")
    assert changes.status_code == 200 and b"R1" in changes.data and b"R2" in changes.data
    assert c.post(f"/account-sync/{sid}/apply", follow_redirects=True).status_code == 200
    f = f"&fund={profile.fund_code}"
    found = c.get("/account-search/?q=Hooghes&by=sounds_like" + f)
    assert found.status_code == 200 and b"Ifor Hughes" in found.data
    assert b"Gwen Morgan" in c.get("/account-search/?q=np201a&by=postcode" + f).data
    assert b"Gwen Morgan" in c.get("/account-search/?q=1 stow&by=address" + f).data
    assert b"Ifor Hughes" in c.get("/account-search/?q=R2&by=reference" + f).data
    bad = c.get("/account-search/?q=x&by=nonsense")
    assert bad.status_code == 200 and b"alert-danger" in bad.data


def test_bad_file_is_listed_not_applied(as_user, inline, profile, session):
    c = as_user("admin")
    resp = _post(c, profile, HEADER + "B1,,x,NP1 1AA,\nB1,Dup,x,NP1 1AA,\n")
    assert resp.status_code == 201
    page = c.get(resp.json["url"])
    assert b'id="sync-bad-lines"' in page.data and b"Line 2" in page.data
    assert b'id="sync-apply"' not in page.data
    unknown = _post(c, profile, "Ref,Name,Addr1,Postcode,Stop,Colour\nX,Y,,,,red\n")
    page = c.get(unknown.json["url"])
    assert b"Unknown column" in page.data
    nofile = c.post("/account-sync/upload", data={"profile": str(profile.id)}, headers=FETCH,
                    content_type="multipart/form-data")
    assert nofile.status_code == 422 and "file" in nofile.json["message"].lower()
    plain = _post(c, profile, HEADER + "P1,Plain Post,,,\n", json_=False)
    assert plain.status_code == 302


def test_profile_form_refuses_a_profile_without_reference(as_user, session):
    c = as_user("admin")
    name = unique("NP", 12)
    resp = c.post("/accountholderprofileview/add", data={
        "name": name, "fund_code": "CTAX", "file_format": "csv", "encoding": "utf-8",
        "delimiter": ",", "has_header": "y", "date_format": "%d/%m/%Y",
        "columns": '{"name": "Name"}'}, follow_redirects=True)
    assert resp.status_code == 200
    assert b"no column to the account reference" in resp.data
    assert session.scalar(select(AccountHolderProfile).where(
        AccountHolderProfile.name == name)) is None
