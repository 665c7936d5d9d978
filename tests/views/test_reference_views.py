"""Reference data pages: list/search/add/edit with clear form errors and nothing half-saved."""

from sqlalchemy import func, select

from app.models.reference import Fund, VatCode
from tests.conftest import unique


def test_fund_list_search_and_add(as_user, session):
    client = as_user("admin")
    assert b"Council Tax" in client.get("/fundview/list/").data
    code = unique("F")
    resp = client.post("/fundview/add", data={
        "code": code, "name": "Pest Control", "gl_code": "7001", "maximum_amount": "1,500.00",
        "disabled": ""}, follow_redirects=True)
    assert resp.status_code == 200
    fund = session.scalar(select(Fund).where(Fund.code == code))
    assert fund is not None and fund.maximum_amount == 150000
    found = client.get(f"/fundview/list/?_flt_0_code={code}")
    assert code.encode() in found.data


def test_duplicate_fund_code_shows_form_error(as_user, session):
    client = as_user("admin")
    before = session.scalar(select(func.count()).select_from(Fund))
    resp = client.post("/fundview/add", data={"code": "CTAX", "name": "Again"})
    assert resp.status_code == 200
    assert b"Already exists" in resp.data or b"already exists" in resp.data
    assert session.scalar(select(func.count()).select_from(Fund)) == before


def test_fund_money_field_refuses_three_decimals(as_user, session):
    client = as_user("admin")
    code = unique("F")
    resp = client.post("/fundview/add", data={"code": code, "name": "X", "maximum_amount": "1.234"})
    assert b"two decimal places" in resp.data
    assert session.scalar(select(Fund).where(Fund.code == code)) is None


def test_over_long_and_empty_codes(as_user, session):
    client = as_user("admin")
    resp = client.post("/officeview/add", data={"code": "X" * 11, "name": "Too long"})
    assert b"Field cannot be longer than 10 characters" in resp.data
    resp = client.post("/officeview/add", data={"code": "", "name": "Empty"})
    assert b"This field is required" in resp.data


def test_vat_rate_abc_and_one_point_five(as_user, session):
    client = as_user("admin")
    for rate, message in (("abc", b"Not a valid decimal value"), ("1.5", b"between 0 and 1")):
        code = unique("V", 6)
        resp = client.post("/vatcodeview/add", data={"code": code, "name": "X", "rate": rate})
        assert message in resp.data, resp.data[-3000:]
        assert session.scalar(select(VatCode).where(VatCode.code == code)) is None


def test_clerk_cannot_add_funds(as_user):
    client = as_user("clerk")
    assert client.get("/fundview/list/").status_code == 200
    assert client.get("/fundview/add").status_code == 403


def test_money_formatted_for_locale(as_user):
    client = as_user("admin")
    page = client.get("/fundview/list/").data.decode()
    assert "£10,000.00" in page
