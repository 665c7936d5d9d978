"""/api/v1/account-syncs/, /api/v1/account-holder-profiles/, /api/v1/account-holder-search/."""

from __future__ import annotations

import io

import pytest

from tests.conftest import unique


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def _profile(api, **over):
    body = {"name": unique("AP", 12), "fund_code": "SUN", "file_format": "csv",
            "encoding": "utf-8", "delimiter": ",", "has_header": True,
            "date_format": "%d/%m/%Y", "complete": False, "skip_bad_lines": False,
            "columns": '{"reference": "Ref", "name": "Name", "postcode": "PC"}', **over}
    return api("admin").post("/api/v1/account-holder-profiles/", json=body)


def _upload(api, profile, content, user="admin", **form):
    return api(user).post("/api/v1/account-syncs/", data={
        "file": (io.BytesIO(content.encode()), "a.csv"), "profile": profile, **form},
        content_type="multipart/form-data")


def test_profile_upload_dry_run_apply_changes_search(api, inline, app):
    resp = _profile(api)
    assert resp.status_code == 201, resp.json
    name = resp.json["result"]["name"]
    bad = _profile(api, columns='{"name": "Name"}')
    assert bad.status_code == 422 and "account reference" in bad.json["message"]
    assert _profile(api, columns="not json").status_code == 422
    tag = unique("Q", 7)
    up = _upload(api, name, f"Ref,Name,PC\n{tag}1,Dafydd Pritchard,CF10 1AA\n")
    assert up.status_code == 201, up.json
    r = api("admin").get(f"/api/v1/account-syncs/{up.json['id']}").json
    assert r["status"] == "checked" and r["new"] == 1
    assert api("auditor").get(f"/api/v1/account-syncs/{up.json['id']}").status_code == 200
    assert api("auditor").post(f"/api/v1/account-syncs/{up.json['id']}/apply").status_code == 403
    applied = api("admin").post(f"/api/v1/account-syncs/{up.json['id']}/apply")
    assert applied.status_code == 200 and applied.json["status"] == "applied"
    again = api("admin").post(f"/api/v1/account-syncs/{up.json['id']}/apply")
    assert again.status_code == 409
    ch = api("admin").get(f"/api/v1/account-syncs/{up.json['id']}/changes").json["result"]
    assert [c["kind"] for c in ch] == ["new"] and ch[0]["reference"] == f"{tag}1"
    found = api("clerk").get("/api/v1/account-holder-search/?q=Prytchard&by=sounds_like&fund=SUN")
    assert found.status_code == 200
    assert f"{tag}1" in [a["account_reference"] for a in found.json["result"]]
    assert api("clerk").get("/api/v1/account-holder-search/?q=&by=name").status_code == 422
    assert api("clerk").get("/api/v1/account-holder-search/?q=a&by=zzz").status_code == 422
    listing = api("admin").get("/api/v1/account-syncs/").json["result"]
    assert listing[0]["id"] == up.json["id"]
    # apply straight after the check
    up2 = _upload(api, name, f"Ref,Name,PC\n{tag}2,Elin Pugh,\n", apply="true")
    assert api("admin").get(f"/api/v1/account-syncs/{up2.json['id']}").json["status"] == "applied"


def test_bad_input(api, inline, app):
    name = _profile(api).json["result"]["name"]
    assert _upload(api, "no-such-profile", "Ref,Name,PC\nA,B,\n").status_code == 404
    assert api("admin").post("/api/v1/account-syncs/", data={"profile": name},
                             content_type="multipart/form-data").status_code == 422
    assert _upload(api, name, "").status_code == 422
    app.config["IMS_ACCOUNT_SYNC_MAX_BYTES"] = 100
    try:
        big = _upload(api, name, "Ref,Name,PC\n" + "A1,Some Body,\n" * 20)
        assert big.status_code == 422 and "larger than the limit" in big.json["message"]
    finally:
        app.config["IMS_ACCOUNT_SYNC_MAX_BYTES"] = 512 * 1024 * 1024
    refused = _upload(api, name, "Ref,Name,PC\nA1,X,\nA1,Y,\n")
    r = api("admin").get(f"/api/v1/account-syncs/{refused.json['id']}").json
    assert r["status"] == "refused" and len(r["bad_line_list"]) == 2
    assert api("admin").post(f"/api/v1/account-syncs/{refused.json['id']}/apply").status_code == 409
    assert api("admin").get("/api/v1/account-syncs/999999").status_code == 404
    assert api("clerk").post("/api/v1/account-syncs/", data={}).status_code == 403
