"""validate_reference: every DOMAIN.md check, all checks run, chains, accounts and stops."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.models.reference import AccountHolder, Fund, ReferenceValidator
from app.services.seed import make_reference
from app.services.validation import validate_reference
from tests.conftest import unique


def _fund(session, validator=None, **kw):
    code = unique("V")
    f = Fund(code=code, name="Test " + code, validator_id=validator.id if validator else None, **kw)
    session.add(f)
    session.flush()
    return f


def _validator(session, **kw):
    v = ReferenceValidator(name=unique("val", 12), **kw)
    session.add(v)
    session.flush()
    return v


def _ctax_ref(session):
    fund = session.scalar(select(Fund).where(Fund.code == "CTAX"))
    return make_reference(fund.validator, random.Random(5))


def test_valid_ctax_reference(session):
    res = validate_reference(session, "CTAX", _ctax_ref(session), 1000, "CASH")
    assert res.valid, res.errors
    assert res.errors == [] and res.fund.code == "CTAX"


def test_check_digit_failure_named(session):
    ref = _ctax_ref(session)
    bad = ref[:-1] + str((int(ref[-1]) + 1) % 10) if ref[-1].isdigit() else ref[:-1] + "1"
    res = validate_reference(session, "CTAX", bad, 1000)
    assert not res.valid
    assert any("Check digit" in e for e in res.errors)
    assert all("Check digit" not in e for e in res.public_errors)
    assert "account_reference" in res.field_errors


def test_all_checks_run_together(session):
    # too long, wrong characters, bad mask AND amount over the fund maximum: all reported
    res = validate_reference(session, "CTAX", "12345678A9Z", 1_000_001, "CASH")
    assert not res.valid
    text = " ".join(res.errors)
    assert "Too long" in text
    assert "Wrong characters" not in text  # alphanumeric allows letters
    assert "format" in text
    assert "fund maximum" in text


def test_character_class_and_regex(session):
    v = _validator(session, character_class="numeric_space", regex=r"^9", min_length=3, max_length=6)
    f = _fund(session, v)
    assert validate_reference(session, f.code, "9 12").valid
    res = validate_reference(session, f.code, "8A")
    assert not res.valid
    t = " ".join(res.errors)
    assert "Too short" in t and "Wrong characters" in t and "pattern" in t


def test_mask_positions(session):
    v = _validator(session, input_mask="$#?*-X")
    f = _fund(session, v)
    assert validate_reference(session, f.code, "a1b/-x").valid  # upper-cased
    assert validate_reference(session, f.code, "A1B -X").valid
    res = validate_reference(session, f.code, "11B/-Y")
    assert not res.valid and "position 1, 6" in " ".join(res.errors)


def test_at_in_mask_implies_weighted_check(session):
    v = _validator(session, input_mask="####@", modulus=11, weights="5,4,3,2,0", subtract=True,
                   result_substitutions="10:X,11:0")
    f = _fund(session, v)
    # 1*5+2*4+3*3+4*2 = 30; 30 % 11 = 8; 11-8 = 3
    assert validate_reference(session, f.code, "12343").valid
    assert not validate_reference(session, f.code, "12344").valid


def test_chained_validators_old_and_new_pcn(session):
    assert validate_reference(session, "PCN", "12345678").valid  # old 8-digit format
    pcn = session.scalar(select(Fund).where(Fund.code == "PCN"))
    new = make_reference(pcn.validator, random.Random(3))
    assert validate_reference(session, "PCN", new).valid
    res = validate_reference(session, "PCN", "1234567")
    assert not res.valid
    assert any(e.startswith("PCN (old, 8 digits):") for e in res.errors)
    assert any(e.startswith("PCN:") for e in res.errors)


def test_luhn_and_dynix_funds(session):
    nndr = session.scalar(select(Fund).where(Fund.code == "NNDR"))
    ref = make_reference(nndr.validator, random.Random(9))
    assert validate_reference(session, "NNDR", ref).valid
    assert not validate_reference(session, "NNDR", ref[:-1] + str((int(ref[-1]) + 5) % 10)).valid
    lib = session.scalar(select(Fund).where(Fund.code == "LIB"))
    ref = make_reference(lib.validator, random.Random(9))
    assert validate_reference(session, "LIB", ref).valid
    assert not validate_reference(session, "LIB", ref[:-1] + str((int(ref[-1]) + 3) % 10)).valid


def test_amount_limits_without_validator(session):
    f = _fund(session, None, maximum_amount=5000)
    assert validate_reference(session, f.code, "ANY", 5000, "CASH").valid
    res = validate_reference(session, f.code, "ANY", 5001, "CASH")
    assert not res.valid and "amount" in res.field_errors
    assert not validate_reference(session, f.code, "ANY", 0).valid
    assert not validate_reference(session, f.code, "ANY", -5).valid
    # method maximum: CASH max 10,000.00
    g = _fund(session, None)
    assert not validate_reference(session, g.code, "ANY", 1_000_001, "CASH").valid
    assert validate_reference(session, g.code, "ANY", 1_000_001, "CHQ").valid


def test_unknown_and_disabled_fund_and_method(session):
    assert "fund_code" in validate_reference(session, "NOPE", "X").field_errors
    f = _fund(session, None, disabled=True)
    assert "fund_code" in validate_reference(session, f.code, "X").field_errors
    res = validate_reference(session, "TWS", "X1", 100, "NOPE")
    assert "payment_method_code" in res.field_errors


def test_account_must_exist_and_stop(session):
    f = _fund(session, None, account_must_exist=True)
    assert "No account" in " ".join(validate_reference(session, f.code, "A1").errors)
    session.add(AccountHolder(fund_code=f.code, account_reference="A1", name="Ann"))
    session.add(AccountHolder(fund_code=f.code, account_reference="A2", name="Bob",
                              stop_message="Do not accept payment – BAILIFF"))
    session.flush()
    assert validate_reference(session, f.code, "a1").valid
    res = validate_reference(session, f.code, "A2", 100)
    assert not res.valid and res.on_stop
    assert "BAILIFF" in " ".join(res.errors) and res.stop_message.endswith("BAILIFF")
    over = validate_reference(session, f.code, "A2", 100, may_override_stop=True)
    assert over.valid and over.on_stop and over.warnings


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_property_seed_references_validate(app, seed):
    from app.extensions import db

    with app.app_context():
        session = db.session
        for code in ("CTAX", "HRA", "PCN", "NNDR", "LIB"):
            fund = session.scalar(select(Fund).where(Fund.code == code))
            ref = make_reference(fund.validator, random.Random(seed))
            res = validate_reference(session, code, ref)
            # HRA demands an existing account; the format and check digit must still pass
            assert [e for e in res.errors if not e.startswith("No account")] == [], (code, ref)
