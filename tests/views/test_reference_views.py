"""Reference data pages: list/search/add/edit with clear form errors and nothing half-saved."""

import pytest
from sqlalchemy import func, select

from app.models.reference import (
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    VatCode,
)
from tests.conftest import unique


def test_fund_list_search_and_add(as_user, session):
    client = as_user("admin")
    assert b"Council Tax" in client.get("/fundview/list/?_flt_0_code=CTAX").data
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
    for rate, message in (("abc", b"Not a valid rate"), ("1.5", b"up to (not including) 1")):
        code = unique("V", 6)
        resp = client.post("/vatcodeview/add", data={"code": code, "name": "X", "rate": rate})
        assert message in resp.data, resp.data[-3000:]
        assert session.scalar(select(VatCode).where(VatCode.code == code)) is None


def test_clerk_cannot_add_funds(as_user):
    client = as_user("clerk")
    assert client.get("/fundview/list/").status_code == 200
    assert client.get("/fundview/add").status_code == 403


def test_money_formatted_for_locale(as_user, session):
    # A fund of its own, found by its code: the list is paged by code, and other tests add funds
    # whose codes sort before the seeded ones (a seeded fund's limit fell onto page two).
    code = unique("F")
    session.add(Fund(code=code, name="Locale limit", maximum_amount=123456789))
    session.commit()
    client = as_user("admin")
    page = client.get(f"/fundview/list/?_flt_0_code={code}").data.decode()
    assert code in page
    assert "£1,234,567.89" in page


# ---------------------------------------------------------------------------- issue #15 item 7
def _error_on_field(html: str, field: str, message: str) -> bool:
    """The message is shown next to the field (FAB renders the field, then its errors)."""
    at = html.find(f'name="{field}"')
    return at != -1 and message in html[at:at + 3000]


@pytest.mark.parametrize("code,message", [
    ("A😀", "capital letters"), ("A\x07B", "capital letters"), ("ab", "capital letters"),
    ("A B", "capital letters"), ("OK\x00", None)], ids=repr)
def test_fund_form_refuses_codes_that_break_the_portal(as_user, session, code, message):
    before = session.scalar(select(func.count()).select_from(Fund))
    resp = as_user("admin").post("/fundview/add", data={"code": code, "name": "Broken"})
    if message is None:  # a NUL anywhere: the request guard refuses the whole request
        assert resp.status_code == 400
    else:
        assert resp.status_code == 200
        assert _error_on_field(resp.get_data(as_text=True), "code", message), resp.data[-3000:]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Fund)) == before


@pytest.mark.parametrize("data,field,message", [
    ({"max_length": "-37"}, "max_length", "from 1 to 30"),
    ({"max_length": "137590004"}, "max_length", "from 1 to 30"),
    ({"min_length": "9", "max_length": "8"}, "min_length", "more than maximum"),
    ({"modulus": "-125144927944", "check_digit_scheme": "weighted_sum", "weights": "1,2"},
     "modulus", "from 2 to 1000"),
    ({"check_digit_scheme": "weighted_sum", "modulus": "11", "weights": "9,x"}, "weights",
     "whole numbers"),
])
def test_validator_form_refuses_out_of_range_values(as_user, session, data, field, message):
    name = unique("Form V ", 16)
    resp = as_user("admin").post("/referencevalidatorview/add", data={
        "name": name, "character_class": "any", **data})
    assert resp.status_code == 200
    assert _error_on_field(resp.get_data(as_text=True), field, message), resp.data[-3000:]
    session.rollback()
    assert session.scalar(select(ReferenceValidator).where(ReferenceValidator.name == name)) is None


def test_validator_edit_form_refuses_and_keeps_the_row(as_user, session):
    pk = session.scalar(select(ReferenceValidator.id).where(
        ReferenceValidator.name == "Council Tax account"))
    resp = as_user("admin").post(f"/referencevalidatorview/edit/{pk}", data={
        "name": "Council Tax account", "min_length": "9", "max_length": "-37",
        "character_class": "alphanumeric", "input_mask": "########@",
        "check_digit_scheme": "weighted_sum", "modulus": "11", "weights": "9,8,7,6,5,4,3,2,0",
        "subtract": "y", "result_substitutions": "10:X,11:0"})
    assert resp.status_code == 200
    assert _error_on_field(resp.get_data(as_text=True), "max_length", "from 1 to 30")
    session.rollback()
    assert session.get(ReferenceValidator, pk).max_length == 9


def test_payment_method_form_amounts(as_user, session):
    c = as_user("admin")
    code = unique("M", 6)
    resp = c.post("/paymentmethodview/add", data={"code": code, "name": "Kiosk", "kind": "card",
                                                  "maximum_amount": "100000000000000000000"})
    assert _error_on_field(resp.get_data(as_text=True), "maximum_amount", "too large")
    resp = c.post("/paymentmethodview/add", data={"code": code, "name": "Kiosk", "kind": "card",
                                                  "minimum_amount": "10.00", "maximum_amount": "5.00"})
    assert _error_on_field(resp.get_data(as_text=True), "minimum_amount", "more than the maximum")
    session.rollback()
    assert session.scalar(select(PaymentMethod).where(PaymentMethod.code == code)) is None


def test_payment_method_edit_form_never_changes_the_code(as_user, session):
    """The empty code on a method with 105 transactions: the edit form has no code to change."""
    pk = session.scalar(select(PaymentMethod.id).where(PaymentMethod.code == "CHQ"))
    resp = as_user("admin").post(f"/paymentmethodview/edit/{pk}", data={
        "code": "", "name": "Cheque", "kind": "cheque", "minimum_amount": "0.01"},
        follow_redirects=True)
    assert resp.status_code == 200
    session.rollback()
    assert session.get(PaymentMethod, pk).code == "CHQ"


def test_office_names_are_trimmed_and_control_characters_refused(as_user, session):
    c = as_user("admin")
    code = unique("O", 6)
    resp = c.post("/officeview/add", data={"code": code, "name": "Bad\x07name"})
    assert _error_on_field(resp.get_data(as_text=True), "name", "control characters")
    assert c.post("/officeview/add", data={"code": code, "name": "Bad\x00name"}).status_code == 400
    session.rollback()
    assert session.scalar(select(Office).where(Office.code == code)) is None
    c.post("/officeview/add", data={"code": f"  {code} ", "name": "  Ty Hywel  "})
    session.rollback()
    assert session.scalar(select(Office.name).where(Office.code == code)) == "Ty Hywel"


@pytest.mark.parametrize("rate,message", [("0.12345", "four decimal places"),
                                          ("٠.٢٠", "Not a valid rate"), ("2e-1", "Not a valid rate")])
def test_vat_rate_form_is_strict(as_user, session, rate, message):
    code = unique("V", 6)
    resp = as_user("admin").post("/vatcodeview/add", data={"code": code, "name": "X", "rate": rate})
    assert message in resp.get_data(as_text=True)
    session.rollback()
    assert session.scalar(select(VatCode).where(VatCode.code == code)) is None


def test_account_holder_form_reference_and_name(as_user, session):
    fund_id = session.scalar(select(Fund.id).where(Fund.code == "SUN"))
    ref = unique("AH", 9)
    resp = as_user("admin").post("/accountholderview/add", data={
        "fund": str(fund_id), "account_reference": ref.lower(), "name": "A Payer"})
    assert _error_on_field(resp.get_data(as_text=True), "account_reference", "capitals")
    resp = as_user("admin").post("/accountholderview/add", data={
        "fund": "", "account_reference": ref, "name": "A Payer"})
    assert resp.status_code == 200
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AccountHolder).where(
        AccountHolder.account_reference.in_([ref, ref.lower()]))) == 0
