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


@given(st.integers(min_value=0, max_value=10**12), st.lists(st.integers(1, 1000), min_size=1, max_size=20))
def test_allocate_resums_exactly(pence, ratios):
    parts = Money(pence).allocate(ratios)
    assert sum(p.pence for p in parts) == pence
    assert all(p.pence >= 0 for p in parts)


def test_money_refuses_float():
    with pytest.raises(TypeError):
        Money(1.5)
