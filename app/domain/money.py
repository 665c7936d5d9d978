"""Money as integer pence: the two parsers of amounts people type (strict for the API, friendlier
for web forms), formatting, and exact splitting."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from app.domain.errors import ValidationError

_PENCE = Decimal(100)
#: The largest amount any field accepts, £9,999,999,999,999.99: far above any council payment,
#: and small enough that the sum of thousands of them still fits the ledger's BIGINT pence
#: (SQLite's sum() fails on an overflow; PostgreSQL's column would).
MAX_PENCE = 10**15 - 1
_MAX_POUND_DIGITS = len(str(MAX_PENCE // 100))
# [0-9], not \d: only ASCII digits are digits here ("١٢" and "１２" are refused).
_STRICT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")
_FORM = re.compile(r"(-?)£?([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]{1,2}))?")
_SEPARATED = re.compile(r"-?£?[0-9][0-9,]*(?:\.[0-9]{1,2})?")
_TOO_MANY_PLACES = re.compile(r"\s*-?£?[0-9,]*\.[0-9]{3,}\s*")
_RATE = re.compile(r"[0-9]+(?:\.[0-9]{1,4})?")
_PLACES = "Use at most two decimal places (pounds and pence)."
_NEGATIVE = "Amount must not be negative."
_TOO_LARGE = "The amount is too large."


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", {field: [message]})


def _pence(pounds: str, pence: str | None, field: str, negative: bool) -> int:
    """Exact pence from the digits the parsers matched (bounded before int() sees them)."""
    pounds = pounds.lstrip("0") or "0"
    if len(pounds) > _MAX_POUND_DIGITS:
        raise _invalid(field, _TOO_LARGE)
    value = int(pounds) * 100 + (int(pence.ljust(2, "0")) if pence else 0)
    if value > MAX_PENCE:
        raise _invalid(field, _TOO_LARGE)
    return -value if negative else value


def _checked(pence: int, field: str, allow_zero: bool, allow_negative: bool) -> Money:
    if pence == 0 and not allow_zero:
        raise _invalid(field, "Amount must be more than zero.")
    if pence < 0 and not allow_negative:
        raise _invalid(field, _NEGATIVE)
    if abs(pence) > MAX_PENCE:
        raise _invalid(field, _TOO_LARGE)
    return Money(pence)


@dataclass(frozen=True, order=True)
class Money:
    """An amount of sterling in whole pence. Arithmetic stays in integers."""

    pence: int

    def __post_init__(self):
        if isinstance(self.pence, bool) or not isinstance(self.pence, int):
            raise TypeError("Money holds integer pence only")

    @classmethod
    def parse(cls, value, field: str = "amount", allow_zero: bool = False,
              allow_negative: bool = False) -> "Money":
        """The strict parser, for the API and everything that is not a web form: a string of ASCII
        digits with an optional point and one or two decimals ("5", "5.5", "5.50"), nothing else.

        A leading "-" only when ``allow_negative`` (processing-rule literals). A Money passes
        through (its caller has parsed it already, e.g. a form with ``parse_form``); the zero and
        sign checks still apply. Raises ValidationError naming ``field`` for numbers (JSON
        integers and floats too), signs, spaces, "£", separators, non-ASCII digits, ".5", "5.",
        three decimal places, amounts above MAX_PENCE, zero (unless allowed) and negatives
        (unless allowed).
        """
        if isinstance(value, Money):
            return _checked(value.pence, field, allow_zero, allow_negative)
        if value is None:
            raise _invalid(field, "Enter an amount.")
        if not isinstance(value, str):
            raise _invalid(field, 'Give the amount as a string such as "12.34", not a number.')
        m = _STRICT.fullmatch(value)
        if m is None:
            if _TOO_MANY_PLACES.fullmatch(value):
                raise _invalid(field, _PLACES)
            raise _invalid(field, 'Not a valid amount: give digits with an optional point and up '
                                  'to two decimal places, e.g. "12.34".')
        sign, pounds, pence = m.groups()
        if sign and not allow_negative:
            raise _invalid(field, _NEGATIVE)
        return _checked(_pence(pounds, pence, field, negative=bool(sign)), field, allow_zero,
                        allow_negative)

    @classmethod
    def parse_form(cls, value, field: str = "amount", allow_zero: bool = False) -> "Money":
        """The form parser, for amounts typed into the web pages: what ``parse`` accepts, and
        also surrounding spaces, a leading "£" and thousands separators in the right places
        ("1,234.50", "£1,234.50", "12,345,678.00"). Misplaced separators ("12,34", "1,23.00",
        "1,2345.00"), non-ASCII digits and everything else ``parse`` refuses are refused.
        """
        if isinstance(value, Money) or not isinstance(value, str):
            return cls.parse(value, field, allow_zero)
        text = value.strip()
        m = _FORM.fullmatch(text)
        if m is None:
            if _TOO_MANY_PLACES.fullmatch(text):
                raise _invalid(field, _PLACES)
            if "," in text and _SEPARATED.fullmatch(text):
                raise _invalid(field, "Put commas only between groups of three digits, "
                                      "e.g. 1,234.50, or leave them out.")
            raise _invalid(field, "Not a valid amount: give pounds and pence, e.g. 12.34 or "
                                  "£1,234.50.")
        sign, pounds, pence = m.groups()
        if sign:
            raise _invalid(field, _NEGATIVE)
        return _checked(_pence(pounds.replace(",", ""), pence, field, negative=False), field,
                        allow_zero, False)

    @classmethod
    def zero(cls) -> "Money":
        return cls(0)

    def __add__(self, other: "Money") -> "Money":
        return Money(self.pence + other.pence)

    def __sub__(self, other: "Money") -> "Money":
        return Money(self.pence - other.pence)

    def __neg__(self) -> "Money":
        return Money(-self.pence)

    def __bool__(self) -> bool:
        return self.pence != 0

    def to_decimal(self) -> Decimal:
        return Decimal(self.pence) / _PENCE

    def __str__(self) -> str:
        """Decimal string with two places, the API's wire format: "12.34", "-0.05"."""
        sign = "-" if self.pence < 0 else ""
        p = abs(self.pence)
        return f"{sign}{p // 100}.{p % 100:02d}"

    def display(self) -> str:
        """The portal's money style, for people: "£2,940.24", "-£0.05" (en_GB and cy_GB alike)."""
        return gbp(self.pence)

    def allocate(self, ratios: list[int]) -> list["Money"]:
        """Split exactly by integer ratios with the largest-remainder method (re-sums exactly)."""
        total = sum(ratios)
        if total <= 0:
            raise ValueError("ratios must sum to a positive number")
        shares = [self.pence * r // total for r in ratios]
        remainders = sorted(range(len(ratios)),
                            key=lambda i: (self.pence * ratios[i]) % total, reverse=True)
        for i in remainders[: self.pence - sum(shares)]:
            shares[i] += 1
        return [Money(s) for s in shares]


def vat_of(gross: Money, rate: Decimal) -> Money:
    """VAT inside a VAT-inclusive gross, in exact integer arithmetic: gross x rate / (1 + rate)
    (= gross - gross / (1 + rate)) rounded half up, away from zero, to the penny."""
    return Money(vat_by_fraction(gross.pence, *vat_fraction(rate)))


def vat_fraction(rate: Decimal) -> tuple[int, int]:
    """The VAT share of a VAT-inclusive gross, rate / (1 + rate), as (numerator, denominator)."""
    num, den = rate.as_integer_ratio()
    return num, den + num


def vat_by_fraction(gross: int, num: int, whole: int) -> int:
    """gross x num / whole in pence, rounded half up (away from zero); see vat_of."""
    if num == 0:
        return 0
    vat = (2 * abs(gross) * num + whole) // (2 * whole)
    return -vat if gross < 0 else vat


def parse_rate(value, field: str = "rate") -> Decimal:
    """A VAT rate as a decimal fraction string ("0.20", "0.175", "0"): ASCII digits with at most
    four decimal places (the column's), from 0 up to (not including) 1. ValidationError naming
    ``field`` otherwise (numbers, signs, spaces, exponents, "20%")."""
    if not isinstance(value, str):
        raise _invalid(field, 'Give the rate as a decimal string fraction, e.g. "0.20".')
    if not _RATE.fullmatch(value):
        if re.fullmatch(r"[0-9]*\.[0-9]{5,}", value):
            raise _invalid(field, "At most four decimal places.")
        raise _invalid(field, 'Not a valid rate: give a fraction such as "0.20".')
    if Decimal(value) >= 1:
        raise _invalid(field, "The rate is a fraction from 0 up to (not including) 1, e.g. 0.20.")
    return Decimal(value)


def percent(rate) -> str:
    """A VAT rate stored as a fraction, as people write it: 0.2 -> "20%", 0.175 -> "17.5%"."""
    if rate is None or rate == "":
        return ""
    value = (Decimal(str(rate)) * 100).normalize()
    return f"{value:f}%"


def gbp(pence) -> str:
    """Pence as people read money, in every message and page: "£2,940.24", "-£50.00".

    The same as Babel's en_GB and cy_GB currency format (app/formatting.money), for text made
    where no request locale exists (service messages, notifications, flash messages)."""
    if pence is None or pence == "":
        return ""
    if isinstance(pence, Money):
        pence = pence.pence
    p = int(pence)
    sign = "-" if p < 0 else ""
    p = abs(p)
    return f"{sign}£{p // 100:,}.{p % 100:02d}"


def pence_to_str(pence: int | None) -> str | None:
    """Format stored pence for JSON, or None."""
    return None if pence is None else str(Money(int(pence)))
