"""Reference validation per fund, as DOMAIN.md "Reference validation" says. All checks run.

Staff see which check failed (``errors``); the public sees wording that does not reveal the rule
(``public_errors``). ``field_errors`` groups staff messages by input field for inline form errors.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.check_digits import CheckDigitRule
from app.domain.money import Money
from app.models.reference import AccountHolder, Fund, PaymentMethod, ReferenceValidator
from app.services import refcache

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

#: The window of transaction dates accepted from people and files (config.py can change it).
EARLIEST_TRANSACTION_DATE = dt.date(2000, 1, 1)
TRANSACTION_DAYS_AHEAD = 365


def transaction_date_window(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The first and last transaction date accepted: IMS_EARLIEST_TRANSACTION_DATE, and
    IMS_TRANSACTION_DAYS_AHEAD days after today (the defaults outside an app)."""
    earliest, ahead = EARLIEST_TRANSACTION_DATE, TRANSACTION_DAYS_AHEAD
    from flask import current_app, has_app_context

    if has_app_context():
        earliest = current_app.config.get("IMS_EARLIEST_TRANSACTION_DATE", earliest)
        ahead = current_app.config.get("IMS_TRANSACTION_DAYS_AHEAD", ahead)
    return earliest, (today or dt.date.today()) + dt.timedelta(days=ahead)


def date_outside_window(value: dt.date, window: tuple[dt.date, dt.date] | None = None) -> str | None:
    """Why a transaction or value date is refused (a typo such as 0202-01-31 or 2206-01-31),
    or None when it is inside the window."""
    first, last = window or transaction_date_window()
    if first <= value <= last:
        return None
    return (f"The date {value.isoformat()} is outside the accepted range "
            f"{first.isoformat()} to {last.isoformat()}.")


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


class FormatCheck:
    """One validator's format checks, read from the model once (plain values, compiled pattern,
    check-digit rule), so checking many references does not touch the ORM or recompile."""

    __slots__ = ("name", "min_length", "max_length", "cls_rx", "cls_words", "regex", "rx",
                 "mask", "check_pos_in_mask", "digit_rule")

    def __init__(self, v: ReferenceValidator):
        self.name = v.name
        self.min_length = v.min_length
        self.max_length = v.max_length
        cls = v.character_class or "any"
        self.cls_rx = _CLASSES.get(cls)
        self.cls_words = _CLASS_WORDS.get(cls)
        self.regex = v.regex or None
        self.rx: re.Pattern | None = None
        if self.regex:
            try:
                self.rx = re.compile(self.regex)
            except re.error:
                self.rx = None
        self.mask = (v.input_mask or "").upper()
        self.check_pos_in_mask = self.mask.index("@") if "@" in self.mask else None
        self.digit_rule = rule_of(v) if (self.check_pos_in_mask is not None
                                         or v.check_digit_scheme) else None

    def errors(self, ref: str) -> list[str]:
        """Every failing format check (empty list: the reference passes this validator)."""
        errors: list[str] = []
        n = len(ref)
        if self.min_length is not None and n < self.min_length:
            errors.append(f"Too short: at least {self.min_length} characters (got {n}).")
        if self.max_length is not None and n > self.max_length:
            errors.append(f"Too long: at most {self.max_length} characters (got {n}).")
        if self.cls_rx is not None and not self.cls_rx.match(ref):
            errors.append(f"Wrong characters: {self.cls_words}.")
        if self.regex:
            if self.rx is None:
                errors.append("The validator's pattern is broken; ask an administrator.")
            elif not self.rx.search(ref):
                errors.append(f"Does not match the pattern {self.regex}.")
        mask = self.mask
        if mask:
            if n != len(mask):
                errors.append(f"Does not fit the format {mask}: {len(mask)} characters expected.")
            else:
                bad = [i + 1 for i, (c, m) in enumerate(zip(ref, mask)) if not _mask_ok(c, m)]
                if bad:
                    errors.append(f"Does not fit the format {mask} at position "
                                  f"{', '.join(str(b) for b in bad)}.")
        if self.digit_rule is not None:
            pos = self.check_pos_in_mask if self.check_pos_in_mask is not None else n - 1
            if not ref or pos >= n:
                errors.append("Check digit missing.")
            elif not self.digit_rule.is_valid(ref, pos):
                errors.append("Check digit is wrong.")
        return errors


def check_format(v: ReferenceValidator, ref: str) -> list[str]:
    """Every failing format check of one validator (empty list: the reference passes it)."""
    return FormatCheck(v).errors(ref)


class ReferenceCheck:
    """A validator chain compiled once: ``check(ref)`` gives what check_reference_format gives.

    ``memo`` (for bulk checks such as imports, where references repeat) remembers results for up
    to ``memo_size`` distinct references.
    """

    def __init__(self, v: ReferenceValidator | None, *, memo_size: int = 0):
        chain: list[ReferenceValidator] = []
        seen: set[int] = set()
        cur = v
        while cur is not None and cur.id not in seen and len(chain) < MAX_CHAIN:
            seen.add(cur.id)
            chain.append(cur)
            cur = cur.next_validator
        self.steps = [FormatCheck(x) for x in chain]
        self.memo: dict[str, tuple[bool, tuple[str, ...]]] | None = {} if memo_size else None
        self.memo_size = memo_size

    def _run(self, ref: str) -> tuple[bool, tuple[str, ...]]:
        all_errors: list[str] = []
        prefixed = len(self.steps) > 1
        for step in self.steps:
            errs = step.errors(ref)
            if not errs:
                return True, ()
            prefix = f"{step.name}: " if prefixed else ""
            all_errors.extend(prefix + e for e in errs)
        return (not self.steps), tuple(all_errors)

    def check(self, ref: str) -> tuple[bool, tuple[str, ...]]:
        memo = self.memo
        if memo is None:
            return self._run(ref)
        hit = memo.get(ref)
        if hit is None:
            if len(memo) >= self.memo_size:
                memo.clear()
            hit = memo[ref] = self._run(ref)
        return hit


def check_reference_format(v: ReferenceValidator | None, ref: str) -> tuple[bool, list[str]]:
    """Run a validator and its chain: valid when any validator in the chain passes every check."""
    if v is None:
        return True, []
    ok, errs = ReferenceCheck(v).check(ref)
    return ok, list(errs)


def validate_reference(session: Session, fund_code: str | None, reference: str | None,
                       amount: int | None = None, method_code: str | None = None, *,
                       may_override_stop: bool = False) -> ValidationResult:
    """Validate a payment to fund_code/reference of amount pence by method. All checks run."""
    res = ValidationResult(reference=normalise_reference(reference))
    ref = res.reference
    fund = refcache.fund(session, fund_code) if fund_code else None
    res.fund = fund
    if fund is None:
        res.add("fund_code", f"Unknown fund {fund_code!r}." if fund_code else "Choose a fund.",
                "Choose a valid payment type.")
    elif fund.disabled:
        res.add("fund_code", f"Fund {fund.code} is disabled.", "This payment type is not available.")

    method = None
    if method_code:
        method = refcache.method(session, method_code)
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
        account = refcache.account(session, fund.code, ref)
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
