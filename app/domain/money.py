"""Money as integer pence: parsing user input with Decimal, formatting, and exact splitting."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from app.domain.errors import ValidationError

_PENCE = Decimal(100)
#: The largest amount any field accepts, £9,999,999,999,999.99: far above any council payment,
#: and small enough that the sum of thousands of them still fits the ledger's BIGINT pence.
MAX_PENCE = 10**15 - 1
MAX_POUND_DIGITS = 13


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
        """Parse a decimal string such as "12.34" (or an int of pounds) into Money.

        Raises ValidationError for floats, NaN, exponents, more than two decimal places,
        zero (unless allowed) and negatives (unless allowed).
        """
        if isinstance(value, bool) or isinstance(value, float):
            raise ValidationError(f"{field}: give the amount as a decimal string such as \"12.34\"",
                                  {field: ["Amount must be a decimal string, not a number with a fraction."]})
        if isinstance(value, Money):
            d = Decimal(value.pence) / _PENCE
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, str):
            text = value.strip().replace(",", "").lstrip("£")
            if not text or any(c in text.lower() for c in ("e", "n", "i")):
                raise ValidationError(f"{field}: not a valid amount",
                                      {field: ["Not a valid amount."]})
            try:
                d = Decimal(text)
            except InvalidOperation:
                raise ValidationError(f"{field}: not a valid amount",
                                      {field: ["Not a valid amount."]}) from None
        elif isinstance(value, Decimal):
            d = value
        else:
            raise ValidationError(f"{field}: not a valid amount", {field: ["Not a valid amount."]})
        if not d.is_finite():
            raise ValidationError(f"{field}: not a valid amount", {field: ["Not a valid amount."]})
        if d.adjusted() >= MAX_POUND_DIGITS or abs(d) * _PENCE > MAX_PENCE:
            # checked before int(): a 10,000-digit amount is refused, not converted
            raise ValidationError(f"{field}: too large",
                                  {field: [f"Amount must be at most {cls(MAX_PENCE)}."]})
        if d.as_tuple().exponent < -2 and d != d.quantize(Decimal("0.01")):
            raise ValidationError(f"{field}: at most two decimal places",
                                  {field: ["Use at most two decimal places (pounds and pence)."]})
        pence = int((d * _PENCE).to_integral_value())
        if pence == 0 and not allow_zero:
            raise ValidationError(f"{field}: must be more than zero",
                                  {field: ["Amount must be more than zero."]})
        if pence < 0 and not allow_negative:
            raise ValidationError(f"{field}: must not be negative",
                                  {field: ["Amount must not be negative."]})
        return cls(pence)

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


def pence_to_str(pence: int | None) -> str | None:
    """Format stored pence for JSON, or None."""
    return None if pence is None else str(Money(int(pence)))
