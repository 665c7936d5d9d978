"""Reference-data resources per API.md: Administrator writes, others read; bad input is a 422."""

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


# ---------------------------------------------------------------------------- issue #15 item 7
def _refused(resp, field):
    assert resp.status_code == 422, resp.json
    assert field in resp.json["errors"], resp.json
    assert resp.json["message"]


def _pk(session, model, **where):
    session.rollback()
    return session.scalar(select(model.id).filter_by(**where))


@pytest.mark.parametrize("code", ["", " ", "A\x07B", "OK\x00", "A😀", "AB\u202e", " CTAX2", "CTAX2 ",
                                  "A B", "ab", "-AB", "Ä1", "ABCDEFGHIJK", "A%B"], ids=repr)
def test_fund_codes_that_break_the_portal_are_refused(api, session, code):
    before = _count(session, Fund)
    _refused(api("admin").post("/api/v1/funds/", json={"code": code, "name": "Broken"}), "code")
    assert _count(session, Fund) == before


@pytest.mark.parametrize("name", ["", " Padded", "Tab\there", "Line\nbreak", "Nul\x00", "X" * 101],
                         ids=repr)
def test_names_are_trimmed_printable_and_bounded(api, session, name):
    before = _count(session, Office)
    _refused(api("admin").post("/api/v1/offices/", json={"code": unique("O", 6), "name": name}),
             "name")
    assert _count(session, Office) == before


def test_a_code_with_letters_digits_dash_and_underscore_is_fine(api):
    code = unique("O-", 6) + "_1"
    resp = api("admin").post("/api/v1/offices/", json={"code": code, "name": "Ty Newydd"})
    assert resp.status_code == 201, resp.json


@pytest.mark.parametrize("body,field", [
    ({"max_length": -37}, "max_length"),
    ({"max_length": 137590004}, "max_length"),
    ({"min_length": -1}, "min_length"),
    ({"min_length": 9, "max_length": 8}, "min_length"),
    ({"modulus": -125144927944, "check_digit_scheme": "weighted_sum", "weights": "1,2"}, "modulus"),
    ({"modulus": 1, "check_digit_scheme": "weighted_sum", "weights": "1,2"}, "modulus"),
    ({"modulus": 2**40}, "modulus"),
    ({"check_digit_scheme": "weighted_sum", "modulus": 11, "weights": "9,-8"}, "weights"),
    ({"check_digit_scheme": "weighted_sum", "modulus": 11, "weights": "9,1000"}, "weights"),
    ({"check_digit_scheme": "weighted_sum", "modulus": 11, "weights": "٩,٨"}, "weights"),
    ({"result_substitutions": "10:AB"}, "result_substitutions"),
    ({"result_substitutions": "10:A,10:B"}, "result_substitutions"),
    ({"source_substitution": "BJ=05,LW"}, "source_substitution"),
    ({"input_mask": "#" * 31}, "input_mask"),
    ({"input_mask": "####", "min_length": 6, "max_length": 6}, "input_mask"),
    ({"regex": "^[0-9]{8}$\x00"}, "regex"),
    ({"next_validator_id": 2**63}, "next_validator_id"),
    ({"next_validator_id": 99_999_999}, "next_validator_id"),
])
def test_validator_lengths_moduli_and_weights_are_checked(api, session, body, field):
    before = _count(session, ReferenceValidator)
    resp = api("admin").post("/api/v1/reference-validators/", json={"name": unique("V "), **body})
    _refused(resp, field)
    assert _count(session, ReferenceValidator) == before


def test_validator_cannot_chain_back_to_itself(api, session):
    a = api("admin").post("/api/v1/reference-validators/", json={"name": unique("Chain A ", 16)})
    b = api("admin").post("/api/v1/reference-validators/", json={
        "name": unique("Chain B ", 16), "next_validator_id": a.json["id"]})
    assert b.status_code == 201, b.json
    _refused(api("admin").put(f"/api/v1/reference-validators/{a.json['id']}",
                              json={"next_validator_id": b.json["id"]}), "next_validator_id")
    _refused(api("admin").put(f"/api/v1/reference-validators/{a.json['id']}",
                              json={"next_validator_id": a.json["id"]}), "next_validator_id")


def test_out_of_range_validator_update_is_422_and_changes_nothing(api, session):
    pk = _pk(session, ReferenceValidator, name="Council Tax account")
    for body, field in (({"max_length": 137590004}, "max_length"),
                        ({"modulus": -125144927944}, "modulus"), ({"max_length": -37}, "max_length")):
        _refused(api("admin").put(f"/api/v1/reference-validators/{pk}", json=body), field)
    session.rollback()
    v = session.get(ReferenceValidator, pk)
    assert (v.min_length, v.max_length, v.modulus) == (9, 9, 11)


@pytest.mark.parametrize("body,field", [
    ({"maximum_amount": "100000000000000000000"}, "maximum_amount"),
    ({"maximum_amount": "10000000000000.00"}, "maximum_amount"),
    ({"minimum_amount": "10.00", "maximum_amount": "5.00"}, "minimum_amount"),
    ({"minimum_amount": "-1.00"}, "minimum_amount"),
    ({"kind": "bitcoin"}, "kind"),
])
def test_payment_method_amounts_and_kind(api, session, body, field):
    before = _count(session, PaymentMethod)
    resp = api("admin").post("/api/v1/payment-methods/", json={
        "code": unique("M", 6), "name": "Kiosk", "kind": "card", **body})
    _refused(resp, field)
    assert _count(session, PaymentMethod) == before


def test_the_largest_amount_accepted_is_accepted(api):
    resp = api("admin").post("/api/v1/payment-methods/", json={
        "code": unique("M", 6), "name": "Big", "kind": "bank_transfer",
        "maximum_amount": "9999999999999.99"})
    assert resp.status_code == 201, resp.json


def test_codes_in_use_cannot_change(api, session):
    """An empty payment-method code on a method with 105 transactions broke the portal."""
    code = unique("M", 6)
    method = api("admin").post("/api/v1/payment-methods/", json={"code": code, "name": "Kiosk cash",
                                                                  "kind": "cash"}).json["id"]
    taken = api("cashier").post("/api/v1/receipts", json={
        "payment_method_code": code, "office_code": "CIVIC",
        "lines": [{"fund_code": "TWS", "account_reference": unique("K"), "amount": "1.05"}]})
    assert taken.status_code == 201, taken.json
    for new_code in ("", code + "2"):
        resp = api("admin").put(f"/api/v1/payment-methods/{method}", json={"code": new_code})
        _refused(resp, "code")
    assert "in use" in resp.json["errors"]["code"][0] and "transactions" in resp.json["errors"]["code"][0]
    session.rollback()
    assert session.get(PaymentMethod, method).code == code
    cash = _pk(session, PaymentMethod, code="CASH")
    _refused(api("admin").put(f"/api/v1/payment-methods/{cash}", json={"code": "CASH2"}), "code")
    for model, resource, code in ((Fund, "funds", "CTAX"), (VatCode, "vat-codes", "S"),
                                  (Office, "offices", "CIVIC")):
        pk = _pk(session, model, code=code)
        resp = api("admin").put(f"/api/v1/{resource}/{pk}", json={"code": code + "9"})
        _refused(resp, "code")
        assert "in use" in resp.json["errors"]["code"][0]
    session.rollback()
    assert session.get(PaymentMethod, cash).code == "CASH"
    assert session.scalar(select(Fund.id).where(Fund.code == "CTAX")) is not None


def test_a_code_nobody_uses_may_change_and_other_fields_of_used_ones_may_too(api, session):
    code = unique("O", 6)
    created = api("admin").post("/api/v1/offices/", json={"code": code, "name": "Spare"})
    renamed = api("admin").put(f"/api/v1/offices/{created.json['id']}", json={"code": code + "X"})
    assert renamed.status_code == 200, renamed.json
    cash = _pk(session, PaymentMethod, code="CASH")
    resp = api("admin").put(f"/api/v1/payment-methods/{cash}", json={"name": "Cash (notes and coins)"})
    assert resp.status_code == 200, resp.json
    api("admin").put(f"/api/v1/payment-methods/{cash}", json={"name": "Cash"})


@pytest.mark.parametrize("fund_code", ["NOPE", "", None, 123, "ctax", "CT\x00AX", ["CTAX"]], ids=repr)
def test_account_with_unknown_fund_is_a_clear_4xx(api, session, fund_code):
    before = _count(session, AccountHolder)
    resp = api("admin").post("/api/v1/accounts/", json={
        "fund_code": fund_code, "account_reference": unique("U", 9), "name": "Nobody"})
    assert resp.status_code == 422, resp.json
    assert "fund_code" in resp.json["errors"]
    assert _count(session, AccountHolder) == before


def test_account_update_to_unknown_fund_and_bad_reference(api, session):
    pk = session.scalar(select(AccountHolder.id).limit(1))
    _refused(api("admin").put(f"/api/v1/accounts/{pk}", json={"fund_code": "NOPE"}), "fund_code")
    _refused(api("admin").put(f"/api/v1/accounts/{pk}", json={"fund_code": ""}), "fund_code")
    for ref in ("", " X1", "x1", "A\x00", "R" * 31):
        _refused(api("admin").put(f"/api/v1/accounts/{pk}", json={"account_reference": ref}),
                 "account_reference")


@pytest.mark.parametrize("body,field", [
    ({"vat_code": ""}, "vat_code"),
    ({"vat_code": "S\x00"}, "vat_code"),
    ({"validator_id": 2**63}, "validator_id"),
    ({"validator_id": 99_999_999}, "validator_id"),
    ({"gl_code": "1001\x00"}, "gl_code"),
    ({"maximum_amount": "0.00"}, "maximum_amount"),
])
def test_fund_references_and_limits(api, session, body, field):
    before = _count(session, Fund)
    _refused(api("admin").post("/api/v1/funds/", json={"code": unique("F"), "name": "X", **body}),
             field)
    assert _count(session, Fund) == before


@pytest.mark.parametrize("rate", ["0.12345", " 0.20", "2e-1", "٠.٢٠", "1", "0.2 ", ""], ids=repr)
def test_vat_rates_are_strict_fractions(api, session, rate):
    before = _count(session, VatCode)
    _refused(api("admin").post("/api/v1/vat-codes/", json={"code": unique("V", 6), "rate": rate}),
             "rate")
    assert _count(session, VatCode) == before


def test_vat_rate_with_four_places(api):
    resp = api("admin").post("/api/v1/vat-codes/", json={"code": unique("V", 6), "rate": "0.175"})
    assert resp.status_code == 201 and resp.json["result"]["rate"] == "0.175"


def test_a_row_saved_before_the_rules_stays_editable(api, session):
    """An old lower-case code is not judged again when another field changes (nor can it be
    fixed by hand if it is in use): other fields still can be changed."""
    code = unique("f")[:1].lower() + unique("x")[1:6].lower()
    session.add(Office(code=code, name="Old office"))
    session.commit()
    pk = _pk(session, Office, code=code)
    resp = api("admin").put(f"/api/v1/offices/{pk}", json={"name": "Renamed office"})
    assert resp.status_code == 200, resp.json
    _refused(api("admin").put(f"/api/v1/offices/{pk}", json={"code": code + "z"}), "code")
