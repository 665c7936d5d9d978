"""Reference data rules: what funds, payment methods, VAT codes, offices, reference validators and
account holders may hold, codes in use never change, and the designated funds (suspense, write-off).

One set of rules for every way in: ``reference_errors`` checks values (the admin forms call it as
they validate, so each problem shows on its field), ``check_reference_row`` checks a row about to
be saved (the API's pre_add/pre_update; a 422 naming the fields).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from sqlalchemy import exists, inspect, select, text
from sqlalchemy.orm import Session

from app.domain.errors import ValidationError
from app.domain.money import MAX_PENCE
from app.models.imports import BankProfile, FundReferencePattern, ImportBatch, ProcessingRule
from app.models.ledger import NOT_BANK, LedgerLine, PostingGroup, Transaction
from app.models.reference import (
    CHARACTER_CLASSES,
    CHECK_DIGIT_SCHEMES,
    METHOD_KINDS,
    AccountHolder,
    Fund,
    Office,
    PaymentMethod,
    ReferenceValidator,
    Setting,
    VatCode,
)
from app.models.refund import Refund
from app.models.suspense import SuspenseItem
from app.models.suspense_work import SuspenseAllocation, SuspenseAllocationLine, WriteOff
from app.services.validation import MAX_CHAIN

SUSPENSE_FUND = "suspense_fund_code"
WRITE_OFF_FUND = "write_off_fund_code"
FUND_SETTINGS = (SUSPENSE_FUND, WRITE_OFF_FUND)

#: Codes are matched in capitals everywhere (receipts, imports, the API): letters, digits, - and _.
CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]*")
#: An account reference is matched trimmed and in capitals: printable ASCII without lower case.
ACCOUNT_REFERENCE = re.compile(r"[!-`{-~]([ -`{-~]*[!-`{-~])?")
#: The longest account reference (the column), and so the longest a validator can ask for.
MAX_REFERENCE_LENGTH = AccountHolder.__table__.c.account_reference.type.length
MAX_MODULUS = 1000
MAX_WEIGHT = 999
MAX_ADDRESS = 1000
_RATE_PLACES = 4  # vat_code.rate is NUMERIC(6, 4)

CONTROL_CHARACTERS = ("No control characters (such as NUL, tabs or line breaks) or invisible "
                      "formatting characters.")

Errors = dict[str, list[str]]


# --------------------------------------------------------------------------- field rules
def _bad_characters(value: str, multiline: bool = False) -> bool:
    """Control characters (NUL, escape, tabs and line breaks in one-line text), invisible format
    characters (bidirectional overrides, zero-width spaces), surrogates and unassigned code points."""
    allowed = "\n\r\t" if multiline else ""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
               and c not in allowed for c in value)


def _length(model, column: str) -> int:
    return model.__table__.c[column].type.length


def text_problems(value, max_len: int, *, required: bool = False, multiline: bool = False) -> list[str]:
    """Names and other free text: trimmed, within the column, no control characters."""
    if value is None or value == "":
        return ["Required."] if required else []
    if not isinstance(value, str):
        return ["Give text."]
    if value != value.strip():
        return ["No spaces at the start or end."]
    problems = []
    if len(value) > max_len:
        problems.append(f"At most {max_len} characters.")
    if _bad_characters(value, multiline):
        problems.append(CONTROL_CHARACTERS)
    return problems


def code_problems(value, max_len: int) -> list[str]:
    """A code: 1 to max_len capital letters, digits, '-' and '_', starting with a letter or digit."""
    if value is None or value == "":
        return ["Enter a code."]
    if not isinstance(value, str):
        return ["Give the code as text."]
    problems = []
    if len(value) > max_len:
        problems.append(f"At most {max_len} characters.")
    if not CODE.fullmatch(value):
        problems.append("Use capital letters A-Z, digits, '-' and '_' only (no spaces), "
                        "starting with a letter or digit.")
    return problems


def _whole(value, lo: int, hi: int, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return ["Give a whole number."]
    if not lo <= value <= hi:
        return [f"{what} from {lo} to {hi}."]
    return []


def _pence(value, lo: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return ["Give an amount in pounds and pence."]
    if value < lo:
        return ["Must be more than zero." if lo else "Must not be negative."]
    if value > MAX_PENCE:
        return ["The amount is too large."]
    return []


def _flag(value) -> list[str]:
    return [] if value is None or isinstance(value, bool) else ["Give true or false."]


def rate_problems(rate) -> list[str]:
    """A VAT rate: a decimal fraction from 0 up to (not including) 1, at most four places."""
    if rate is None:
        return ["Enter the rate, e.g. 0.20."]
    if not isinstance(rate, Decimal) or not rate.is_finite():
        return ["Give the rate as a decimal fraction, e.g. 0.20."]
    problems = []
    if not 0 <= rate < 1:
        problems.append("The rate is a fraction from 0 up to (not including) 1, e.g. 0.20.")
    if rate.as_tuple().exponent < -_RATE_PLACES:
        problems.append("At most four decimal places.")
    return problems


# --------------------------------------------------------------------------- codes in use
#: Where each kind of code is referred to: label -> the condition that finds a use of a code.
_USES = {
    Fund: {
        "transactions": lambda c: Transaction.fund_code == c,
        # the ledger's partial index holds the lines that are not BANK (BANK lines have no fund)
        "ledger lines": lambda c: (LedgerLine.fund_code == c) & text(NOT_BANK),
        "account holders": lambda c: AccountHolder.fund_code == c,
        "suspense items": lambda c: SuspenseItem.fund_code == c,
        "suspense allocations": lambda c: SuspenseAllocationLine.fund_code == c,
        "write-offs": lambda c: WriteOff.fund_code == c,
        "reference patterns": lambda c: FundReferencePattern.fund_code == c,
        "processing rules": lambda c: ProcessingRule.set_fund_code == c,
        "system settings": lambda c: Setting.key.in_(FUND_SETTINGS) & (Setting.value == c),
    },
    PaymentMethod: {
        "transactions": lambda c: Transaction.payment_method_code == c,
        "bank file profiles": lambda c: BankProfile.payment_method_code == c,
    },
    VatCode: {
        "funds": lambda c: Fund.vat_code == c,
        "transactions": lambda c: Transaction.vat_code == c,
    },
    Office: {
        "postings": lambda c: PostingGroup.office_code == c,
        "transactions": lambda c: Transaction.office_code == c,
        "imports": lambda c: ImportBatch.office_code == c,
        "refunds": lambda c: Refund.office_code == c,
        "suspense allocations": lambda c: SuspenseAllocation.office_code == c,
    },
}


def code_in_use(session: Session, model, code: str) -> list[str]:
    """What refers to ``code`` of ``model`` (labels such as "transactions"); empty: unused."""
    found = [label for label, where in _USES.get(model, {}).items()
             if session.scalar(select(exists().where(where(code))))]
    if model is PaymentMethod and code in _methods_imports_post_with(session):
        found.append("imports (the payment method an import format posts with)")
    return found


def _methods_imports_post_with(session: Session) -> set[str]:
    from app.services.imports.rows import DEFAULT_METHOD, allpay_methods

    return set(DEFAULT_METHOD.values()) | set(allpay_methods(session).values())


# --------------------------------------------------------------------------- per model
def _stored(session: Session, model, current_id) -> dict | None:
    """The row as the database holds it (not as changed in this session), or None."""
    if current_id is None:
        return None
    try:
        pk = int(current_id)
    except (TypeError, ValueError):
        return None
    row = session.execute(select(model.__table__).where(model.__table__.c.id == pk)).mappings().first()
    return dict(row) if row is not None else None


def _existing_code(session: Session, model, code) -> int | None:
    """The id of the row with this code; None when there is none or ``code`` could not be one
    (never sent to the database then: PostgreSQL refuses NUL bytes in text with an error)."""
    if not isinstance(code, str) or code_problems(code, _length(model, "code")):
        return None
    return session.scalar(select(model.id).where(model.code == code))


def _unique(session: Session, model, errors: Errors, field: str, value, current_id, message: str,
            **also) -> None:
    if value in (None, "") or errors.get(field):
        return
    q = select(model.id).where(getattr(model, field) == value,
                               *(getattr(model, k) == v for k, v in also.items()))
    found = session.scalar(q)
    if found is not None and (current_id is None or int(current_id) != found):
        errors.setdefault(field, []).append(message)


def _code_rules(session: Session, model, errors: Errors, values: dict, stored: dict | None,
                noun: str) -> None:
    code = values.get("code")
    if stored is not None and stored["code"] == code:
        return  # an unchanged code is not judged again (rows saved before these rules stay editable)
    if problems := code_problems(code, _length(model, "code")):
        errors["code"] = problems
        return
    _unique(session, model, errors, "code", code, stored and stored["id"],
            f"A {noun} with this code already exists.")
    if stored is not None:
        used_by = code_in_use(session, model, stored["code"])
        if used_by:
            errors.setdefault("code", []).append(
                f"The code {stored['code']} is in use ({', '.join(used_by)}) and cannot be changed; "
                f"add a new {noun} and disable this one instead.")


def _text_rule(errors: Errors, values: dict, field: str, max_len: int, **kw) -> None:
    if problems := text_problems(values.get(field), max_len, **kw):
        errors[field] = problems


def _fund(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    _code_rules(session, Fund, errors, values, stored, "fund")
    _text_rule(errors, values, "name", _length(Fund, "name"), required=True)
    _text_rule(errors, values, "gl_code", _length(Fund, "gl_code"))
    vat = values.get("vat_code")
    if vat is not None and _existing_code(session, VatCode, vat) is None:
        errors["vat_code"] = ["Unknown VAT code."]
    validator = values.get("validator_id")
    if validator is not None and (isinstance(validator, bool) or not isinstance(validator, int)
                                  or not -2**31 <= validator < 2**31
                                  or session.get(ReferenceValidator, validator) is None):
        errors["validator_id"] = ["Unknown validator."]
    if problems := _pence(values.get("maximum_amount"), 1):
        errors["maximum_amount"] = problems
    for flag in ("vat_override", "account_must_exist", "credit_notes_allowed", "disabled",
                 "offered_online", "ask_payer_name", "ask_payer_email", "ask_payer_address"):
        if problems := _flag(values.get(flag)):
            errors[flag] = problems
    for public in ("public_name", "public_name_cy", "reference_label", "reference_label_cy",
                   "reference_help", "reference_help_cy", "public_stop_message",
                   "public_stop_message_cy"):
        _text_rule(errors, values, public, _length(Fund, public))


def _payment_method(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    _code_rules(session, PaymentMethod, errors, values, stored, "payment method")
    _text_rule(errors, values, "name", _length(PaymentMethod, "name"), required=True)
    if values.get("kind") not in METHOD_KINDS:
        errors["kind"] = [f"Choose one of: {', '.join(METHOD_KINDS)}."]
    lo, hi = values.get("minimum_amount"), values.get("maximum_amount")
    if problems := _pence(lo, 0):
        errors["minimum_amount"] = problems
    if problems := _pence(hi, 1):
        errors["maximum_amount"] = problems
    if not errors.get("minimum_amount") and not errors.get("maximum_amount") \
            and lo is not None and hi is not None and lo > hi:
        errors["minimum_amount"] = ["The minimum is more than the maximum."]
    for flag in ("refundable", "disabled"):
        if problems := _flag(values.get(flag)):
            errors[flag] = problems


def _vat_code(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    _code_rules(session, VatCode, errors, values, stored, "VAT code")
    _text_rule(errors, values, "name", _length(VatCode, "name"))
    if problems := rate_problems(values.get("rate")):
        errors["rate"] = problems


def _office(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    _code_rules(session, Office, errors, values, stored, "office")
    _text_rule(errors, values, "name", _length(Office, "name"), required=True)


def _account_holder(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    fund = values.get("fund_code")
    if fund in (None, ""):
        errors["fund_code"] = ["Choose a fund."]
    elif (stored is None or stored["fund_code"] != fund) and _existing_code(session, Fund, fund) is None:
        errors["fund_code"] = ["Unknown fund."]
    ref = values.get("account_reference")
    if ref in (None, ""):
        errors["account_reference"] = ["Enter the account reference."]
    elif not isinstance(ref, str):
        errors["account_reference"] = ["Give the reference as text."]
    elif len(ref) > MAX_REFERENCE_LENGTH:
        errors["account_reference"] = [f"At most {MAX_REFERENCE_LENGTH} characters."]
    elif not ACCOUNT_REFERENCE.fullmatch(ref):
        errors["account_reference"] = [
            "Use capital letters, digits, spaces and punctuation only, with no spaces at the start "
            "or end (references are matched in capitals)."]
    elif not errors.get("fund_code"):
        _unique(session, AccountHolder, errors, "account_reference", ref, stored and stored["id"],
                "This fund already has an account with this reference.", fund_code=fund)
    _text_rule(errors, values, "name", _length(AccountHolder, "name"), required=True)
    _text_rule(errors, values, "address", MAX_ADDRESS, multiline=True)
    _text_rule(errors, values, "postcode", _length(AccountHolder, "postcode"))
    _text_rule(errors, values, "stop_message", _length(AccountHolder, "stop_message"))


def _validator(session: Session, values: dict, stored: dict | None, errors: Errors) -> None:
    current_id = stored and stored["id"]
    _text_rule(errors, values, "name", _length(ReferenceValidator, "name"), required=True)
    _unique(session, ReferenceValidator, errors, "name", values.get("name"), current_id,
            "A validator with this name already exists.")
    lo, hi = values.get("min_length"), values.get("max_length")
    if problems := _whole(lo, 0, MAX_REFERENCE_LENGTH, "A length"):
        errors["min_length"] = problems
    if problems := _whole(hi, 1, MAX_REFERENCE_LENGTH, "A length"):
        errors["max_length"] = problems
    if not errors.get("min_length") and not errors.get("max_length") \
            and lo is not None and hi is not None and lo > hi:
        errors["min_length"] = ["Minimum length is more than maximum length."]
    if (values.get("character_class") or "any") not in CHARACTER_CLASSES:
        errors["character_class"] = [f"Choose one of: {', '.join(CHARACTER_CLASSES)}."]
    regex = values.get("regex")
    _text_rule(errors, values, "regex", _length(ReferenceValidator, "regex"))
    if regex and "regex" not in errors:
        try:
            re.compile(regex)
        except re.error as exc:
            errors["regex"] = [f"Not a valid regular expression: {exc}."]
    mask = values.get("input_mask")
    _text_rule(errors, values, "input_mask", MAX_REFERENCE_LENGTH)
    if mask and "input_mask" not in errors:
        if not mask.isascii():
            errors["input_mask"] = ["Use ASCII characters only."]
        elif not errors.get("min_length") and not errors.get("max_length") and (
                (lo is not None and len(mask) < lo) or (hi is not None and len(mask) > hi)):
            errors["input_mask"] = [f"The mask is {len(mask)} characters, outside the lengths "
                                    "allowed: no reference could pass."]
    scheme = values.get("check_digit_scheme")
    if scheme not in (None, "") and scheme not in CHECK_DIGIT_SCHEMES:
        errors["check_digit_scheme"] = ["Unknown scheme."]
    modulus = values.get("modulus")
    if problems := _whole(modulus, 2, MAX_MODULUS, "The modulus is a whole number"):
        errors["modulus"] = problems
    weights = values.get("weights")
    _text_rule(errors, values, "weights", _length(ReferenceValidator, "weights"))
    if weights and "weights" not in errors:
        parts = [p.strip() for p in weights.split(",")]
        if not all(re.fullmatch(r"[0-9]{1,3}", p) for p in parts):
            errors["weights"] = [f"Weights are whole numbers from 0 to {MAX_WEIGHT} separated by "
                                 "commas, e.g. 9,8,7,6,5,4,3,2,0."]
    if scheme in ("weighted_sum", "dynix") or (mask and "@" in mask and scheme != "luhn"):
        if modulus is None:
            errors.setdefault("modulus", []).append(
                "A check-digit scheme needs a modulus of 2 or more.")
        if not weights:
            errors.setdefault("weights", []).append("A check-digit scheme needs weights.")
    _text_rule(errors, values, "result_substitutions",
               _length(ReferenceValidator, "result_substitutions"))
    subs = values.get("result_substitutions")
    if subs and "result_substitutions" not in errors:
        pairs = [p.strip().partition(":") for p in subs.split(",")]
        if not all(re.fullmatch(r"[0-9]{1,4}", k.strip()) and sep
                   and re.fullmatch(r"[A-Za-z0-9]", v.strip()) for k, sep, v in pairs):
            errors["result_substitutions"] = ["Use remainder:character pairs, e.g. 10:A,11:0."]
        elif len({int(k) for k, _, _ in pairs}) != len(pairs):
            errors["result_substitutions"] = ["Each remainder once."]
    _text_rule(errors, values, "source_substitution",
               _length(ReferenceValidator, "source_substitution"))
    source = values.get("source_substitution")
    if source and "source_substitution" not in errors:
        if not (all(re.fullmatch(r"\s*[A-Za-z0-9]+\s*=\s*[0-9]+\s*", p)
                    for p in source.split(","))
                or re.fullmatch(r"\s*[0-9]+\s*", source)):
            errors["source_substitution"] = ["Use LETTERS=DIGITS pairs, e.g. BJ=05,LW=12, or "
                                             "digits alone (e.g. 98) to replace the first "
                                             "characters whatever they are."]
    if problems := _flag(values.get("subtract")):
        errors["subtract"] = problems
    nxt = values.get("next_validator_id")
    if nxt is not None:
        if isinstance(nxt, bool) or not isinstance(nxt, int) or not -2**31 <= nxt < 2**31 \
                or session.get(ReferenceValidator, nxt) is None:
            errors["next_validator_id"] = ["Unknown validator."]
        elif _chain_returns(session, nxt, current_id):
            errors["next_validator_id"] = ["The chain would come back to this validator."]


def _chain_returns(session: Session, start: int, current_id) -> bool:
    """Whether following next_validator from ``start`` comes back to ``current_id``."""
    seen, cur = set(), start
    while cur is not None and cur not in seen and len(seen) <= MAX_CHAIN:
        if current_id is not None and cur == int(current_id):
            return True
        seen.add(cur)
        cur = session.scalar(select(ReferenceValidator.next_validator_id)
                             .where(ReferenceValidator.id == cur))
    return False


_RULES = {Fund: _fund, PaymentMethod: _payment_method, VatCode: _vat_code, Office: _office,
          AccountHolder: _account_holder, ReferenceValidator: _validator}


def reference_errors(session: Session, model, values: dict, current_id=None) -> Errors:
    """What is wrong with a row of ``model`` holding ``values`` (column name -> value): a new row,
    or the row ``current_id`` changed to them (columns not given keep their stored values).
    Field -> messages; empty when it may be saved. Reads only what is committed (no autoflush)."""
    rules = _RULES.get(model)
    if rules is None:
        return {}
    errors: Errors = {}
    with session.no_autoflush:
        stored = _stored(session, model, current_id)
        merged = {**(stored or {}), **values}
        rules(session, merged, stored, errors)
    return errors


def check_reference_row(session: Session, item) -> None:
    """Refuse a reference-data row about to be added or changed as its attributes now stand.
    Raises ValidationError naming each bad field (the API answers 422)."""
    values = {attr.key: getattr(item, attr.key) for attr in inspect(type(item)).column_attrs}
    current_id = values.pop("id", None)
    errors = reference_errors(session, type(item), values, current_id)
    if errors:
        raise ValidationError("Not saved: " + "; ".join(f"{k}: {v[0]}" for k, v in errors.items()),
                              errors)


# --------------------------------------------------------------------------- settings
def check_setting(item: Setting) -> None:
    if item.key in FUND_SETTINGS:
        # Enforced by key: one suspense fund and one write-off fund, and it must exist.
        from app.extensions import db

        if _existing_code(db.session, Fund, item.value) is None:
            raise ValidationError(f"{item.value} is not a fund code.", {"value": ["Unknown fund."]})


def get_setting(session: Session, key: str, default: str | None = None) -> str | None:
    return session.scalar(select(Setting.value).where(Setting.key == key)) or default


def designated_fund(session: Session, key: str) -> Fund:
    code = get_setting(session, key)
    fund = session.scalar(select(Fund).where(Fund.code == code)) if code else None
    if fund is None:
        raise ValidationError(f"No fund is designated by the setting {key}.")
    return fund
