"""/api/v1/imports/ and /api/v1/suspense/: upload, 201/409/422, result shape, roles, reversal."""

from __future__ import annotations

import io
import os
import time

import pytest

from tests.conftest import unique

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "imports")


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def upload(client_api, content: bytes, fmt="ims_csv", name="f.csv", **form):
    return client_api.post("/api/v1/imports/", data={
        "file": (io.BytesIO(content), name), "format": fmt, **form},
        content_type="multipart/form-data")


def _csv(tag, *lines):
    return ("transaction_date,account_reference,amount,narrative,fund_code\n"
            + "".join(line + "\n" for line in lines)).encode()


def test_upload_and_result(api, inline):
    tag = unique("A", 7)
    resp = upload(api("clerk"), _csv(tag, f"2026-01-05,{tag}1,12.34,x,TWS",
                                     f"2026-01-05,{tag}NOPE,1.00,unknown,"))
    assert resp.status_code == 201, resp.json
    assert set(resp.json) == {"id", "status"}
    r = api("clerk").get(f"/api/v1/imports/{resp.json['id']}")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "succeeded"
    assert (body["rows_total"], body["rows_posted"], body["rows_suspense"]) == (2, 1, 1)
    assert body["total_amount"] == "13.34" and body["errors"] == []
    assert (body["first_date"], body["last_date"]) == ("2026-01-05", "2026-01-05")
    s = api("clerk").get(f"/api/v1/suspense/?q=(filters:!((col:import_id,opr:eq,value:{body['id']})))")
    assert s.status_code == 200, s.json
    [item] = s.json["result"]
    assert item["amount"] == "1.00" and item["remaining_amount"] == "1.00"
    assert item["reference_text"] == f"{tag}NOPE" and item["status"] == "unallocated"
    assert item["import_id"] == body["id"] and item["transaction_date"] == "2026-01-05"


def test_duplicate_file_409(api, inline):
    content = _csv("x", f"2026-01-05,{unique('D', 8)},1.00,x,TWS")
    assert upload(api("clerk"), content).status_code == 201
    resp = upload(api("clerk"), content)
    assert resp.status_code == 409 and "already imported" in resp.json["message"]


def test_malformed_422_names_lines(api, inline):
    resp = upload(api("clerk"), _csv("x", "2026-01-05,A,1.234,x,TWS", "2026-13-01,B,1.00,x,TWS"))
    assert resp.status_code == 422
    assert [e["line"] for e in resp.json["lines"]] == [2, 3]
    assert "nothing was posted" in resp.json["message"]
    assert resp.json["errors"]["file"][0].startswith("Line 2")
    failed = api("clerk").get(f"/api/v1/imports/{resp.json['id']}").json
    assert failed["status"] == "failed" and failed["rows_posted"] == 0
    assert [e["line"] for e in failed["errors"]] == [2, 3]


@pytest.mark.parametrize("name,fmt,needle", [
    ("binary.bin", "ims_csv", "binary"),
    ("billion_laughs.xml", "camt053", "DTD"),
    ("xxe.xml", "camt053", "DTD"),
    ("ims_latin1.csv", "ims_csv", "UTF-8"),
])
def test_hostile_and_bad_files_422(api, inline, name, fmt, needle):
    with open(os.path.join(FIX, name), "rb") as fh:
        content = fh.read() + unique("\n#").encode() * (fmt == "camt053")
    resp = upload(api("clerk"), content, fmt=fmt, name=name)
    assert resp.status_code == 422 and needle in str(resp.json), resp.json


def test_bad_format_and_missing_file_and_profile(api, inline):
    assert upload(api("clerk"), b"x", fmt="pdf").status_code == 422
    resp = api("clerk").post("/api/v1/imports/", data={"format": "ims_csv"},
                             content_type="multipart/form-data")
    assert resp.status_code == 422 and "file" in resp.json["errors"]
    resp = upload(api("clerk"), b"a,b\n", fmt="bank_csv")
    assert resp.status_code == 422 and "profile" in resp.json["errors"]


def test_file_over_limit_422(api, inline, app):
    old = app.config["IMS_IMPORT_MAX_BYTES"]
    app.config["IMS_IMPORT_MAX_BYTES"] = 200
    try:
        resp = upload(api("clerk"), _csv("x", *[f"2026-01-05,L{i},1.00,x,TWS" for i in range(20)]))
    finally:
        app.config["IMS_IMPORT_MAX_BYTES"] = old
    assert resp.status_code == 422 and "larger than the limit" in resp.json["message"]


def test_roles(api, inline):
    content = _csv("x", f"2026-01-05,{unique('R', 8)},1.00,x,TWS")
    assert upload(api("cashier"), content).status_code == 403
    assert upload(api("auditor"), content).status_code == 403
    resp = upload(api("manager"), content)
    assert resp.status_code == 201
    assert api("auditor").get(f"/api/v1/imports/{resp.json['id']}").status_code == 200
    assert api("cashier").get(f"/api/v1/imports/{resp.json['id']}").status_code == 403
    # only a Finance Manager reverses
    url = f"/api/v1/imports/{resp.json['id']}/reverse"
    assert api("clerk").post(url, json={"reason": "x"}).status_code == 403
    assert api("manager").post(url, json={}).status_code == 422
    r = api("manager").post(url, json={"reason": "Bank sent the wrong file"})
    assert r.status_code == 200 and r.json["status"] == "reversed"
    assert api("manager").post(url, json={"reason": "again"}).status_code == 409


def test_not_found(api):
    assert api("clerk").get("/api/v1/imports/999999").status_code == 404


def test_background_processing_and_progress(api, app):
    tag = unique("B", 7)
    resp = upload(api("clerk"), _csv(tag, *[f"2026-01-05,{tag}{i},1.00,x,TWS" for i in range(30)]))
    assert resp.status_code == 201
    deadline = time.time() + 30
    while time.time() < deadline:
        body = api("clerk").get(f"/api/v1/imports/{resp.json['id']}").json
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert body["status"] == "succeeded" and body["rows_posted"] == 30


def test_rule_tester_api(api):
    resp = api("clerk").post("/api/v1/imports/rules/test",
                             json={"reference": "nothing-matches-this", "amount": "5.00"})
    assert resp.status_code == 200
    assert resp.json["destination"] == "suspense" and resp.json["fund_code"] is None
    resp = api("clerk").post("/api/v1/imports/rules/test",
                             json={"reference": "ABC", "amount": "5.00", "fund_code": "TWS"})
    assert resp.json["destination"] == "fund" and resp.json["fund_code"] == "TWS"
    assert api("clerk").post("/api/v1/imports/rules/test",
                             json={"reference": "A", "amount": 5.5}).status_code == 422


def _variant(name: str, tag: str) -> bytes:
    """The sample file with its references made unique (the same file twice is a 409)."""
    with open(os.path.join(FIX, name), "rb") as fh:
        data = fh.read()
    if name.endswith(".txt"):  # fixed width: keep the widths
        return data.replace(b"TW5", tag[:3].encode())
    return data.replace(b"TW", tag.encode())


@pytest.mark.parametrize("name,fmt,rows,total", [
    ("camt053_sample.xml", "camt053", 2, "215.50"),
    ("mt940_sample.sta", "mt940", 2, "215.50"),
    ("allpay_sample.txt", "allpay", 3, "49.75"),
])
def test_each_format_imports_through_the_api(api, inline, session, name, fmt, rows, total):
    from app.models.imports import FundReferencePattern

    tag = unique("Q", 5)
    pat = FundReferencePattern(fund_code="TWS", pattern=(f"^{tag[:3]}[0-9]{{5}}$" if fmt == "allpay"
                                        else f"^{tag}[0-9]{{6}}"),
                               priority=50)
    session.add(pat)
    session.commit()
    try:
        resp = upload(api("clerk"), _variant(name, tag), fmt=fmt, name=name)
        assert resp.status_code == 201, resp.json
        body = api("clerk").get(f"/api/v1/imports/{resp.json['id']}").json
    finally:
        pat.enabled = False
        session.commit()
    assert body["status"] == "succeeded" and body["rows_total"] == rows
    assert body["total_amount"] == total and body["control_total"]
    assert body["rows_posted"] >= 1 and body["rows_posted"] + body["rows_suspense"] == rows


def test_bank_csv_with_profile_through_the_api(api, inline, session):
    from app.models.imports import BankProfile

    name = unique("Barclays")
    session.add(BankProfile(name=name, skip_rows=2, date_column="Date", date_format="%d/%m/%Y",
                            sign_convention="signed", amount_column="Amount",
                            reference_column="Memo", narrative_column="Subcategory"))
    session.commit()
    tag = unique("K", 5)
    resp = upload(api("clerk"), _variant("bank_barclays.csv", tag), fmt="bank_csv", profile=name)
    assert resp.status_code == 201, resp.json
    body = api("clerk").get(f"/api/v1/imports/{resp.json['id']}").json
    assert body["status"] == "succeeded" and body["rows_total"] == 2
    assert body["total_amount"] == "1375.00" and body["rows_suspense"] == 2
