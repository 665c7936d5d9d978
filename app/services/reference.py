"""Reference data rules: validator field checks and designated funds (suspense, write-off)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.models.reference import CHECK_DIGIT_SCHEMES, Fund, ReferenceValidator, Setting

SUSPENSE_FUND = "suspense_fund_code"
WRITE_OFF_FUND = "write_off_fund_code"
FUND_SETTINGS = (SUSPENSE_FUND, WRITE_OFF_FUND)


def check_validator_fields(v: ReferenceValidator) -> None:
    """Reject a validator whose fields cannot work. Raises ValidationError naming the field."""
    errors: dict[str, list[str]] = {}
    if v.min_length is not None and v.max_length is not None and v.min_length > v.max_length:
        errors["min_length"] = ["Minimum length is more than maximum length."]
    if v.regex:
        try:
            re.compile(v.regex)
        except re.error as exc:
            errors["regex"] = [f"Not a valid regular expression: {exc}."]
    if v.check_digit_scheme and v.check_digit_scheme not in CHECK_DIGIT_SCHEMES:
        errors["check_digit_scheme"] = ["Unknown scheme."]
    if v.check_digit_scheme in ("weighted_sum", "dynix") or (v.input_mask and "@" in v.input_mask
                                                             and v.check_digit_scheme != "luhn"):
        if not v.modulus or v.modulus < 2:
            errors["modulus"] = ["A check-digit scheme needs a modulus of 2 or more."]
        if not v.weights:
            errors["weights"] = ["A check-digit scheme needs weights."]
    if v.weights:
        parts = [p.strip() for p in v.weights.split(",")]
        if not all(p.isdigit() for p in parts):
            errors["weights"] = ["Weights are whole numbers separated by commas."]
    if v.result_substitutions:
        for pair in v.result_substitutions.split(","):
            key, sep, val = pair.partition(":")
            if not sep or not key.strip().isdigit() or len(val.strip()) != 1:
                errors["result_substitutions"] = ["Use remainder:character pairs, e.g. 10:A,11:0."]
                break
    if v.source_substitution:
        src, sep, dst = v.source_substitution.partition("=")
        if not sep or not src.strip() or not dst.strip():
            errors["source_substitution"] = ["Use LETTERS=DIGITS, e.g. BJ=05."]
    if errors:
        raise ValidationError("The validator's fields are not consistent: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)


def check_setting(item: Setting) -> None:
    if item.key in FUND_SETTINGS:
        # Enforced by key: one suspense fund and one write-off fund, and it must exist.
        from app.extensions import db

        if db.session.scalar(select(Fund.id).where(Fund.code == item.value)) is None:
            raise ValidationError(f"{item.value} is not a fund code.", {"value": ["Unknown fund."]})


def get_setting(session: Session, key: str, default: str | None = None) -> str | None:
    return session.scalar(select(Setting.value).where(Setting.key == key)) or default


def designated_fund(session: Session, key: str) -> Fund:
    code = get_setting(session, key)
    fund = session.scalar(select(Fund).where(Fund.code == code)) if code else None
    if fund is None:
        raise ValidationError(f"No fund is designated by the setting {key}.")
    return fund
