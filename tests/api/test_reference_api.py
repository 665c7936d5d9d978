"""Reference-data resources per API.md: Administrator writes, others read; bad input is a 422."""

import pytest
from sqlalchemy import func, select

from app.models.reference import Fund, VatCode
from tests.conftest import unique


def test_admin_creates_fund_with_money_as_string(api, session):
    code = unique("F")
    resp = api("admin").post("/api/v1/funds/", json={
        "code": code, "name": "Allotments", "gl_code": "6001", "vat_code": "S",
        "vat_override": False, "maximum_amount": "250.00", "account_must_exist": False,
        "validator_id": None, "disabled": False})
    assert resp.status_code == 201, resp.json
    fund = session.scalar(select(Fund).where(Fund.code == code))
    assert fund.maximum_amount == 25000
    got = api("clerk").get(f"/api/v1/funds/{fund.id}")
    assert got.status_code == 200
    assert got.json["result"]["maximum_amount"] == "250.00"
    assert got.json["result"]["vat_code"] == "S"


def test_list_with_rison_filter(api):
    resp = api("cashier").get("/api/v1/funds/?q=(filters:!((col:code,opr:eq,value:CTAX)))")
    assert resp.status_code == 200
    assert [r["code"] for r in resp.json["result"]] == ["CTAX"]


@pytest.mark.parametrize("username", ["clerk", "cashier", "manager", "auditor", "wfadmin"])
def test_only_admin_writes(api, username):
    resp = api(username).post("/api/v1/funds/", json={"code": unique("F"), "name": "Nope"})
    assert resp.status_code == 403


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("body,field", [
    ({"code": "CTAX", "name": "Duplicate"}, "code"),
    ({"code": "", "name": "Empty code"}, "code"),
    ({"code": "ABCDEFGHIJK", "name": "Eleven chars"}, "code"),
    ({"code": "OKCODE", "name": "Float", "maximum_amount": 12.5}, "maximum_amount"),
    ({"code": "OKCODE", "name": "3dp", "maximum_amount": "12.345"}, "maximum_amount"),
    ({"code": "OKCODE", "name": "Neg", "maximum_amount": "-1"}, "maximum_amount"),
    ({"code": "OKCODE", "name": "Bad VAT", "vat_code": "NOPE"}, "vat_code"),
])
def test_fund_bad_input_is_422_and_saves_nothing(api, session, body, field):
    before = _count(session, Fund)
    resp = api("admin").post("/api/v1/funds/", json=body)
    assert resp.status_code == 422, resp.json
    assert field in resp.json["errors"], resp.json
    assert resp.json["message"]
    assert _count(session, Fund) == before


@pytest.mark.parametrize("rate", ["abc", "1.5", "-0.1", 0.2, "NaN"])
def test_vat_rate_bad_input(api, session, rate):
    before = _count(session, VatCode)
    resp = api("admin").post("/api/v1/vat-codes/", json={"code": unique("V", 6), "rate": rate})
    assert resp.status_code == 422
    assert "rate" in resp.json["errors"]
    assert _count(session, VatCode) == before


def test_vat_rate_as_decimal_string(api):
    code = unique("V", 6)
    resp = api("admin").post("/api/v1/vat-codes/", json={"code": code, "name": "Test", "rate": "0.20"})
    assert resp.status_code == 201
    assert resp.json["result"]["rate"] == "0.20"


def test_account_holder_with_stop_message(api):
    ref = unique("A", 9)
    resp = api("admin").post("/api/v1/accounts/", json={
        "fund_code": "SUN", "account_reference": ref, "name": "Stop Test Ltd",
        "postcode": "NP18 1AA", "stop_message": "Do not accept payment – BAILIFF"})
    assert resp.status_code == 201, resp.json
    dup = api("admin").post("/api/v1/accounts/", json={
        "fund_code": "SUN", "account_reference": ref, "name": "Again"})
    assert dup.status_code == 422
    assert "account_reference" in dup.json["errors"]
    unknown = api("admin").post("/api/v1/accounts/", json={
        "fund_code": "NOPE", "account_reference": "1", "name": "X"})
    assert unknown.status_code == 422


def test_validator_fields_not_code(api):
    ok = api("admin").post("/api/v1/reference-validators/", json={
        "name": unique("Val "), "min_length": 9, "max_length": 9, "character_class": "alphanumeric",
        "input_mask": "########@", "check_digit_scheme": "weighted_sum", "modulus": 11,
        "weights": "9,8,7,6,5,4,3,2,0", "subtract": True, "result_substitutions": "10:X,11:0"})
    assert ok.status_code == 201, ok.json
    bad = api("admin").post("/api/v1/reference-validators/", json={
        "name": unique("Val "), "check_digit_scheme": "weighted_sum", "weights": "a,b",
        "regex": "([unclosed"})
    assert bad.status_code == 422
    assert set(bad.json["errors"]) >= {"weights", "regex", "modulus"}
    scheme = api("admin").post("/api/v1/reference-validators/", json={
        "name": unique("Val "), "check_digit_scheme": "python_code"})
    assert scheme.status_code == 422


def test_update_via_api_is_audited(api, session):
    from app.services.audit import history_for

    code = unique("O", 6)
    created = api("admin").post("/api/v1/offices/", json={"code": code, "name": "Old"})
    pk = created.json["id"]
    resp = api("admin").put(f"/api/v1/offices/{pk}", json={"name": "New"})
    assert resp.status_code == 200
    events = history_for(session, "Office", pk)
    assert events[0].action == "update" and events[0].actor == "admin"
