from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import ValidationError
from app.domain.money import Money, vat_of


@pytest.mark.parametrize("text,pence", [("12.34", 1234), ("0.01", 1), ("5", 500), ("1,234.50", 123450),
                                        ("£3.10", 310), ("7.0", 700), ("2.500", 250)])
def test_parse_valid(text, pence):
    assert Money.parse(text).pence == pence


@pytest.mark.parametrize("bad", ["12.345", "-5", "0", "1e3", "NaN", "inf", "abc", "", " ", 1.5, True, None])
def test_parse_rejects(bad):
    with pytest.raises(ValidationError):
        Money.parse(bad)


def test_str_is_two_places():
    assert str(Money(5)) == "0.05"
    assert str(Money(-1234)) == "-12.34"


def test_vat_inclusive_round_half_up():
    assert vat_of(Money(1200), Decimal("0.20")) == Money(200)
    assert vat_of(Money(1000), Decimal("0.20")) == Money(167)  # 1.6666 -> 1.67
    assert vat_of(Money(105), Decimal("0.05")) == Money(5)
    assert vat_of(Money(3), Decimal("0.20")) == Money(1)  # exactly 0.5p: half up
    assert vat_of(Money(-3), Decimal("0.20")) == Money(-1)  # away from zero
    assert vat_of(Money(999), Decimal("0")) == Money(0)


def _vat_by_decimal(pence: int, rate: Decimal) -> int:
    """The definition, in Decimal: round_half_up(gross - gross / (1 + rate), 2)."""
    from decimal import ROUND_HALF_UP

    g = Decimal(pence) / 100
    vat = (g - g / (1 + rate)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return int(vat * 100)


@given(st.integers(min_value=-10**11, max_value=10**11),
       st.sampled_from(["0.20", "0.05", "0.175", "0.15", "0.125", "0.0", "0.08", "0.33"]))
def test_vat_in_integers_matches_the_decimal_definition(pence, rate):
    assert vat_of(Money(pence), Decimal(rate)).pence == _vat_by_decimal(pence, Decimal(rate))


def test_vat_matches_the_decimal_definition_for_every_small_amount():
    for rate in (Decimal("0.20"), Decimal("0.05"), Decimal("0.175")):
        for pence in range(0, 20001):
            assert vat_of(Money(pence), rate).pence == _vat_by_decimal(pence, rate), (pence, rate)


@given(st.integers(min_value=0, max_value=10**12), st.lists(st.integers(1, 1000), min_size=1, max_size=20))
def test_allocate_resums_exactly(pence, ratios):
    parts = Money(pence).allocate(ratios)
    assert sum(p.pence for p in parts) == pence
    assert all(p.pence >= 0 for p in parts)


def test_money_refuses_float():
    with pytest.raises(TypeError):
        Money(1.5)
