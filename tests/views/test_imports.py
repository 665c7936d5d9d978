"""Imports pages: upload form (JSON and plain POST), result page, progress JSON, reversal,
processing rules, rule tester, bank profiles, reference patterns, suspense list; roles."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from app.models.imports import BankProfile, FundReferencePattern, ImportBatch, ProcessingRule
from tests.conftest import unique


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def _file(tag, n=2):
    rows = "".join(f"2026-01-05,{tag}{i},2.00,row {i},TWS\n" for i in range(n))
    return (io.BytesIO(("transaction_date,account_reference,amount,narrative,fund_code\n"
                        + rows + f"2026-01-05,{tag}X,1.50,nobody,\n").encode()), "bank.csv")


def test_imports_page_renders_for_readers_not_cashier(as_user):
    c = as_user("clerk")
    page = c.get("/imports/")
    assert page.status_code == 200 and b'id="drop-zone"' in page.data
    assert b'name="csrf_token"' in page.data and b"import-progress" in page.data
    assert as_user("auditor").get("/imports/").status_code == 200
    assert as_user("cashier").get("/imports/").status_code in (302, 403)


def test_upload_json_then_detail_and_progress(as_user, inline, session):
    c = as_user("clerk")
    tag = unique("W", 7)
    resp = c.post("/imports/upload", data={"file": _file(tag), "format": "ims_csv"},
                  headers={"Accept": "application/json", "X-Requested-With": "fetch"},
                  content_type="multipart/form-data")
    assert resp.status_code == 201, resp.data
    pid = resp.json["id"]
    prog = c.get(resp.json["progress_url"]).json
    assert prog["status"] == "succeeded" and prog["percent"] == 100
    assert (prog["rows_posted"], prog["rows_suspense"]) == (2, 1)
    page = c.get(f"/imports/{pid}")
    assert page.status_code == 200 and b"received" in page.data and b"succeeded" in page.data
    tx = c.get(f"/imports/{pid}/transactions")
    assert tx.status_code == 200 and f"{tag}0".encode() in tx.data
    from app.services import search as S  # the transaction search, narrowed to this import

    found = S.search(session, S.parse_filters({"import_id": str(pid)}))
    assert found.total == 2 and {t.import_id for t in found.rows} == {pid}
    susp = c.get(f"/suspense-items/?import_id={pid}")  # the old address: the work queue
    assert susp.status_code == 302 and f"/suspense/?import_id={pid}" in susp.headers["Location"]
    susp = c.get(f"/suspense/?import_id={pid}&status=all")
    assert susp.status_code == 200 and f"{tag}X".encode() in susp.data
    listing = c.get("/imports/")
    assert "received → processing → succeeded".encode() in listing.data


def test_plain_post_upload_bad_file_redirects_with_errors(as_user, inline):
    c = as_user("clerk")
    data = {"file": (io.BytesIO(b"transaction_date,account_reference,amount\n2026-01-05,A,1.001\n"),
                     "bad.csv"), "format": "ims_csv"}
    resp = c.post("/imports/upload", data=data, content_type="multipart/form-data")
    assert resp.status_code == 302, resp.data[:300]
    page = c.get(resp.headers["Location"])
    assert page.status_code == 200, page.headers
    assert b"nothing was posted" in page.data and b"failed" in page.data


def test_reverse_from_page_manager_only(as_user, inline, session):
    c = as_user("clerk")
    resp = c.post("/imports/upload", data={"file": _file(unique("V", 7)), "format": "ims_csv"},
                  headers={"Accept": "application/json"}, content_type="multipart/form-data")
    pid = resp.json["id"]
    r = c.post(f"/imports/{pid}/reverse", data={"reason": "x"})
    assert r.status_code in (302, 403)
    session.expire_all()
    assert session.get(ImportBatch, pid).status == "succeeded"
    m = as_user("manager")
    r = m.post(f"/imports/{pid}/reverse", data={"reason": "Duplicate statement"},
               follow_redirects=True)
    assert r.status_code == 200 and b"reversed" in r.data
    session.expire_all()
    assert session.get(ImportBatch, pid).status == "reversed"


def test_processing_rule_crud_validates_conditions(as_user, session):
    c = as_user("clerk")
    name = unique("Rule")
    bad = c.post("/processingruleview/add", data={
        "name": name, "priority": "5", "conditions": "amount contains 5",
        "set_fund_code": "TWS", "enabled": "y"}, follow_redirects=True)
    assert b"amounts are compared" in bad.data
    assert session.scalar(select(ProcessingRule).where(ProcessingRule.name == name)) is None
    ok = c.post("/processingruleview/add", data={
        "name": name, "priority": "5", "import_type": "allpay",
        "conditions": f'reference starts_with "{name}"', "set_fund_code": "tws"},
        follow_redirects=True)
    assert ok.status_code == 200
    rule = session.scalar(select(ProcessingRule).where(ProcessingRule.name == name))
    assert rule is not None and rule.set_fund_code == "TWS" and rule.import_type == "allpay"
    assert as_user("auditor").post("/processingruleview/add", data={"name": unique("R")}
                                   ).status_code in (302, 403)


def test_rule_tester_page(as_user, session):
    name = unique("T")
    session.add(ProcessingRule(name=name, priority=1, conditions=f'narrative contains "{name}"',
                               set_fund_code="TWS", import_type="mt940"))
    session.commit()
    c = as_user("clerk")
    page = c.post("/processing-rules/tester/", data={
        "reference": "ANY1", "amount": "10.00", "narrative": f"pay {name}", "import_type": "mt940"})
    assert page.status_code == 200
    assert name.encode() in page.data and b"TWS" in page.data
    page = c.post("/processing-rules/tester/", data={
        "reference": "ANY1", "amount": "10.00", "narrative": f"pay {name}", "import_type": "allpay"})
    assert b'id="fired">none</dd>' in page.data
    page = c.post("/processing-rules/tester/", data={"reference": "A", "amount": "1.001"})
    assert b"decimal places" in page.data


def test_bank_profile_and_pattern_pages(as_user, session):
    c = as_user("clerk")
    name = unique("Bank")
    c.post("/bankprofileview/add", data={
        "name": name, "delimiter": ",", "has_header": "y", "skip_rows": "0",
        "date_column": "Date", "date_format": "%d/%m/%Y", "sign_convention": "signed",
        "amount_column": "Amount", "reference_column": "Memo", "payment_method_code": "BACS"})
    assert session.scalar(select(BankProfile).where(BankProfile.name == name)) is not None
    bad = c.post("/bankprofileview/add", data={
        "name": unique("Bank"), "delimiter": ",", "skip_rows": "0", "date_column": "Date",
        "date_format": "%d/%m/%Y", "sign_convention": "split", "reference_column": "Memo",
        "payment_method_code": "BACS"}, follow_redirects=True)
    assert b"credit column" in bad.data
    fund_id = session.execute(select(FundReferencePattern.id)).first()  # noqa: F841
    from app.models.reference import Fund

    tws = session.scalar(select(Fund).where(Fund.code == "TWS"))
    bad = c.post("/fundreferencepatternview/add", data={
        "fund": str(tws.id), "pattern": "([", "priority": "100", "enabled": "y"},
        follow_redirects=True)
    assert b"Not a valid regular expression" in bad.data
    assert as_user("cashier").get("/fundreferencepatternview/list/").status_code == 200
