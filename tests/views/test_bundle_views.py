"""Configuration bundle page and API: export, diff, import; roles; bad input."""

from __future__ import annotations

import io

import yaml
from sqlalchemy import select

from app.models.reference import Office
from tests.conftest import unique


def test_page_export_diff_import(as_user, session):
    c = as_user("admin")
    page = c.get("/configuration-bundle/")
    assert page.status_code == 200 and b'id="bundle-export"' in page.data
    exported = c.get("/configuration-bundle/export")
    assert exported.status_code == 200 and b"ims-configuration-bundle" in exported.data
    bundle = yaml.safe_load(exported.data)
    code = unique("O", 6)
    bundle["offices"].append({"code": code, "name": "Bundled office"})
    text = yaml.safe_dump(bundle, allow_unicode=True)
    diff = c.post("/configuration-bundle/diff", data={
        "file": (io.BytesIO(text.encode()), "b.yaml")}, content_type="multipart/form-data")
    assert diff.status_code == 200 and f"+ offices {code}".encode() in diff.data
    assert session.scalar(select(Office).where(Office.code == code)) is None
    done = c.post("/configuration-bundle/import", data={"bundle": text}, follow_redirects=True)
    assert done.status_code == 200
    assert session.scalar(select(Office).where(Office.code == code)) is not None
    bad = c.post("/configuration-bundle/diff", data={
        "file": (io.BytesIO(b"not: [yaml"), "b.yaml")}, content_type="multipart/form-data",
        follow_redirects=True)
    assert bad.status_code == 200 and b"alert-danger" in bad.data
    assert as_user("clerk").get("/configuration-bundle/").status_code in (302, 403)


def test_api(api, session):
    r = api("admin").get("/api/v1/configuration-bundle/?format=json")
    assert r.status_code == 200
    bundle = r.json
    code = unique("P", 6)
    bundle["offices"].append({"code": code, "name": "API office"})
    body = yaml.safe_dump(bundle).encode()
    d = api("admin").post("/api/v1/configuration-bundle/diff",
                          data={"file": (io.BytesIO(body), "b.yaml")},
                          content_type="multipart/form-data")
    assert d.status_code == 200 and code in d.json["added"]["offices"]
    assert api("auditor").post("/api/v1/configuration-bundle/import",
                               data={"file": (io.BytesIO(body), "b.yaml")},
                               content_type="multipart/form-data").status_code == 403
    i = api("admin").post("/api/v1/configuration-bundle/import",
                          data={"file": (io.BytesIO(body), "b.yaml")},
                          content_type="multipart/form-data")
    assert i.status_code == 200, i.json
    assert session.scalar(select(Office).where(Office.code == code)) is not None
    assert api("admin").post("/api/v1/configuration-bundle/import",
                             data={"file": (io.BytesIO(b"format: nope"), "b.yaml")},
                             content_type="multipart/form-data").status_code == 422
    assert api("admin").get("/api/v1/configuration-bundle/?format=xml").status_code == 422
