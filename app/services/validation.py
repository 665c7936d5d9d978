"""Reference validation per fund, as DOMAIN.md "Reference validation" says. All checks run.

Staff see which check failed (``errors``); the public sees wording that does not reveal the rule
(``public_errors``). ``field_errors`` groups staff messages by input field for inline form errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.check_digits import CheckDigitRule
from app.domain.money import Money
from app.models.reference import AccountHolder, Fund, PaymentMethod, ReferenceValidator

_CLASSES = {
    "alpha": re.compile(r"^[A-Za-z]*$"),
    "numeric": re.compile(r"^[0-9]*$"),
    "alphanumeric": re.compile(r"^[A-Za-z0-9]*$"),
    "alpha_space": re.compile(r"^[A-Za-z ]*$"),
    "numeric_space": re.compile(r"^[0-9 ]*$"),
    "alphanumeric_space": re.compile(r"^[A-Za-z0-9 ]*$"),
}
_CLASS_WORDS = {
    "alpha": "letters only", "numeric": "digits only", "alphanumeric": "letters and digits only",
    "alpha_space": "letters and spaces only", "numeric_space": "digits and spaces only",
    "alphanumeric_space": "letters, digits and spaces only",
}
MAX_CHAIN = 10


@dataclass
class ValidationResult:
    valid: bool = True
    errors: list[str] = field(default_factory=list)
    public_errors: list[str] = field(default_factory=list)
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    fund: Fund | None = None
    account: AccountHolder | None = None
    method: PaymentMethod | None = None
    on_stop: bool = False
    stop_message: str | None = None
    reference: str = ""
    warnings: list[str] = field(default_factory=list)

    def add(self, fld: str, message: str, public: str | None = None) -> None:
        self.valid = False
        self.errors.append(message)
        self.field_errors.setdefault(fld, []).append(message)
        if public and public not in self.public_errors:
            self.public_errors.append(public)


def normalise_reference(reference: str | None) -> str:
    return (reference or "").strip().upper()


def rule_of(v: ReferenceValidator) -> CheckDigitRule:
    scheme = v.check_digit_scheme or "weighted_sum"
    return CheckDigitRule.from_fields(scheme, v.modulus, v.weights, v.subtract,
                                      v.source_substitution, v.result_substitutions)


def _mask_ok(ch: str, m: str) -> bool:
    if m == "$":
        return ch.isascii() and ch.isalpha()
    if m == "#":
        return ch.isascii() and ch.isdigit()
    if m in "?@":
        return ch.isascii() and ch.isalnum()
    if m == "*":
        return (ch.isascii() and ch.isalnum()) or ch in " /-"
    return ch == m.upper()


def check_format(v: ReferenceValidator, ref: str) -> list[str]:
    """Every failing format check of one validator (empty list: the reference passes it)."""
    errors: list[str] = []
    n = len(ref)
    if v.min_length is not None and n < v.min_length:
        errors.append(f"Too short: at least {v.min_length} characters (got {n}).")
    if v.max_length is not None and n > v.max_length:
        errors.append(f"Too long: at most {v.max_length} characters (got {n}).")
    cls = v.character_class or "any"
    if cls in _CLASSES and not _CLASSES[cls].match(ref):
        errors.append(f"Wrong characters: {_CLASS_WORDS[cls]}.")
    if v.regex:
        try:
            if not re.search(v.regex, ref):
                errors.append(f"Does not match the pattern {v.regex}.")
        except re.error:
            errors.append("The validator's pattern is broken; ask an administrator.")
    mask = (v.input_mask or "").upper()
    if mask:
        if len(ref) != len(mask):
            errors.append(f"Does not fit the format {mask}: {len(mask)} characters expected.")
        else:
            bad = [i + 1 for i, (c, m) in enumerate(zip(ref, mask)) if not _mask_ok(c, m)]
            if bad:
                errors.append(f"Does not fit the format {mask} at position "
                              f"{', '.join(str(b) for b in bad)}.")
    if "@" in mask or v.check_digit_scheme:
        pos = mask.index("@") if "@" in mask else len(ref) - 1
        if not ref or pos >= len(ref):
            errors.append("Check digit missing.")
        elif not rule_of(v).is_valid(ref, pos):
            errors.append("Check digit is wrong.")
    return errors


def check_reference_format(v: ReferenceValidator | None, ref: str) -> tuple[bool, list[str]]:
    """Run a validator and its chain: valid when any validator in the chain passes every check."""
    if v is None:
        return True, []
    all_errors: list[str] = []
    seen: set[int] = set()
    chain = []
    cur = v
    while cur is not None and cur.id not in seen and len(chain) < MAX_CHAIN:
        seen.add(cur.id)
        chain.append(cur)
        cur = cur.next_validator
    for validator in chain:
        errs = check_format(validator, ref)
        if not errs:
            return True, []
        prefix = f"{validator.name}: " if len(chain) > 1 else ""
        all_errors.extend(prefix + e for e in errs)
    return False, all_errors


def validate_reference(session: Session, fund_code: str | None, reference: str | None,
                       amount: int | None = None, method_code: str | None = None, *,
                       may_override_stop: bool = False) -> ValidationResult:
    """Validate a payment to fund_code/reference of amount pence by method. All checks run."""
    res = ValidationResult(reference=normalise_reference(reference))
    ref = res.reference
    fund = None
    if fund_code:
        fund = session.scalar(select(Fund).where(Fund.code == str(fund_code).strip().upper()))
    res.fund = fund
    if fund is None:
        res.add("fund_code", f"Unknown fund {fund_code!r}." if fund_code else "Choose a fund.",
                "Choose a valid payment type.")
    elif fund.disabled:
        res.add("fund_code", f"Fund {fund.code} is disabled.", "This payment type is not available.")

    method = None
    if method_code:
        method = session.scalar(select(PaymentMethod).where(
            PaymentMethod.code == str(method_code).strip().upper()))
        res.method = method
        if method is None:
            res.add("payment_method_code", f"Unknown payment method {method_code!r}.",
                    "Choose a valid payment method.")
        elif method.disabled:
            res.add("payment_method_code", f"Payment method {method.code} is disabled.",
                    "This payment method is not available.")

    # 1. Amount
    if amount is not None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            res.add("amount", "Amount must be whole pence.", "Enter a valid amount.")
        elif amount <= 0:
            res.add("amount", "Amount must be more than zero.", "Enter an amount more than zero.")
        else:
            if fund is not None and fund.maximum_amount is not None and amount > fund.maximum_amount:
                res.add("amount", f"Amount {Money(amount)} is more than the fund maximum "
                        f"{Money(fund.maximum_amount)}.", "The amount is more than we can accept.")
            if method is not None:
                if method.minimum_amount is not None and amount < method.minimum_amount:
                    res.add("amount", f"Amount {Money(amount)} is less than the {method.code} "
                            f"minimum {Money(method.minimum_amount)}.",
                            "The amount is less than we can accept by this method.")
                if method.maximum_amount is not None and amount > method.maximum_amount:
                    res.add("amount", f"Amount {Money(amount)} is more than the {method.code} "
                            f"maximum {Money(method.maximum_amount)}.",
                            "The amount is more than we can accept by this method.")

    # 2-4. Reference format and check digit (chained validators)
    if not ref:
        res.add("account_reference", "Enter an account reference.", "Enter your reference.")
    elif fund is not None:
        ok, errs = check_reference_format(fund.validator, ref)
        if not ok:
            for e in errs:
                res.add("account_reference", e, "This reference is not valid. Please check it "
                        "against your bill or notice.")

    # 5. Account exists; stop
    if fund is not None and ref:
        account = session.scalar(select(AccountHolder).where(
            AccountHolder.fund_code == fund.code, AccountHolder.account_reference == ref))
        res.account = account
        if account is None and fund.account_must_exist:
            res.add("account_reference", f"No account {ref} exists in fund {fund.code}.",
                    "This reference is not valid. Please check it against your bill or notice.")
        if account is not None and account.on_stop:
            res.on_stop = True
            res.stop_message = account.stop_message
            if may_override_stop:
                res.warnings.append(f"Account on stop: {account.stop_message} (accepted by override).")
            else:
                res.add("account_reference", f"Account on stop: {account.stop_message}",
                        "We cannot take a payment to this account. Please contact us.")
    return res
