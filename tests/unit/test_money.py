"""Money: the strict (API) and form parsers, exact pence, VAT and splitting."""

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import ValidationError
from app.domain.money import MAX_PENCE, Money, vat_of


@pytest.mark.parametrize("text,pence", [("12.34", 1234), ("0.01", 1), ("5", 500), ("5.5", 550),
                                        ("5.50", 550), ("7.0", 700), ("007.50", 750),
                                        ("9999999999999.99", MAX_PENCE)])
def test_strict_parse_valid(text, pence):
    assert Money.parse(text).pence == pence


# The strict parser is the API's: issue #15 lists what it used to accept ("12,34" was £1,234.00).
STRICT_REFUSES = ["12,34", "١٢.٣٤", "１２.３４", "£12.34", "+12.34", " 12.34", "12.34 ", ".5", "5.",
                  "1,234.50", "2.500", "12.345", "-5", "0", "0.00", "1e3", "NaN", "inf", "abc", "",
                  " ", "12.3.4", "12..3", "1 234.50", "12\n", "10000000000000.00",
                  "9" * 10_000, 12, 12.5, 0, True, None, Decimal("12.34"), ["12.34"]]


@pytest.mark.parametrize("bad", STRICT_REFUSES)
def test_strict_parse_refuses(bad):
    with pytest.raises(ValidationError) as exc:
        Money.parse(bad, field="lines[0].amount")
    assert list(exc.value.errors) == ["lines[0].amount"]
    assert exc.value.errors["lines[0].amount"][0]


def test_strict_messages_say_what_is_wrong():
    def message(value, **kw):
        with pytest.raises(ValidationError) as exc:
            Money.parse(value, **kw)
        return exc.value.errors["amount"][0]

    assert "not a number" in message(12)
    assert "two decimal places" in message("12.345")
    assert "negative" in message("-5")
    assert "more than zero" in message("0")
    assert "too large" in message("9" * 10_000)
    assert "e.g." in message("12,34")


def test_strict_parse_signs_and_zero_only_when_asked():
    assert Money.parse("-12.50", allow_negative=True).pence == -1250
    assert Money.parse("0", allow_zero=True).pence == 0
    with pytest.raises(ValidationError):
        Money.parse("+12.50", allow_negative=True)


def test_a_money_passes_through_with_its_checks():
    """A form parses first and hands the service a Money: the service's own rules still hold."""
    assert Money.parse(Money(1234)) == Money(1234)
    with pytest.raises(ValidationError):
        Money.parse(Money(0))
    with pytest.raises(ValidationError):
        Money.parse(Money(-1))


@pytest.mark.parametrize("text,pence", [
    ("12.34", 1234), ("5", 500), ("5.5", 550), ("1,234.50", 123450), ("£1,234.50", 123450),
    ("12,345,678.00", 1234567800), ("£3.10", 310), (" 12.34 ", 1234), ("999,999", 99999900),
    ("1,000", 100000), ("£0.01", 1)])
def test_form_parse_valid(text, pence):
    assert Money.parse_form(text).pence == pence


FORM_REFUSES = ["12,34", "1,23.00", "1,2345.00", ",123.00", "1,234,56.00", "1,,234.00", "12,34.5",
                "١٢.٣٤", "１２.３４", "£١٢", "+12.34", "-12.34", "-£12.34", "£-12.34", ".5", "5.",
                "£.5", "12.345", "£1,234.567", "12.34£", "££12", "£ 12.34", "1 234.50", "GBP 12",
                "12p", "1e3", "NaN", "", "0", "12,345,678.001", "9" * 10_000, 12, 12.5, None]


@pytest.mark.parametrize("bad", FORM_REFUSES)
def test_form_parse_refuses(bad):
    with pytest.raises(ValidationError) as exc:
        Money.parse_form(bad, field="maximum_amount")
    assert list(exc.value.errors) == ["maximum_amount"]


def test_form_messages():
    def message(value):
        with pytest.raises(ValidationError) as exc:
            Money.parse_form(value)
        return exc.value.errors["amount"][0]

    assert "groups of three digits" in message("12,34")
    assert "groups of three digits" in message("1,2345.00")
    assert "two decimal places" in message("£1,234.567")
    assert "negative" in message("-12.34")


# ---------------------------------------------------------------------------- properties
def _pounds(pence: int) -> str:
    return f"{pence // 100}.{pence % 100:02d}"


@given(st.integers(min_value=1, max_value=MAX_PENCE))
def test_every_amount_round_trips_through_both_parsers(pence):
    wire = str(Money(pence))
    assert Money.parse(wire).pence == pence
    assert Money.parse_form(wire).pence == pence
    grouped = f"{pence // 100:,}.{pence % 100:02d}"
    assert Money.parse_form(grouped).pence == pence
    assert Money.parse_form("£" + grouped).pence == pence
    if pence % 10 == 0:
        assert Money.parse(_pounds(pence)[:-1]).pence == pence  # "5.5"
    if pence % 100 == 0:
        assert Money.parse(str(pence // 100)).pence == pence  # "5"


_AMOUNTISH = st.text(alphabet="0123456789.,£+- \t١٢３", max_size=14)


def _exact(text: str) -> Decimal:
    return Decimal(text.strip().lstrip("£").replace(",", "")) * 100


@given(_AMOUNTISH)
def test_whatever_strict_accepts_is_plain_digits_and_exact(text):
    try:
        money = Money.parse(text, allow_zero=True)
    except ValidationError:
        return
    assert re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", text)
    assert Decimal(money.pence) == _exact(text)
    assert Money.parse_form(text, allow_zero=True) == money  # the form accepts more, never less


@given(_AMOUNTISH)
def test_whatever_the_form_accepts_is_exact_pence(text):
    try:
        money = Money.parse_form(text, allow_zero=True)
    except ValidationError:
        return
    assert re.fullmatch(r"£?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]{1,2})?", text.strip())
    assert Decimal(money.pence) == _exact(text)


_NON_ASCII_DIGITS = [chr(c) for c in range(0x80, 0x10000) if chr(c).isdigit()]


@given(st.integers(min_value=0, max_value=10**12), st.data())
def test_nothing_with_a_non_ascii_digit_is_accepted(pence, data):
    text = f"{pence // 100:,}.{pence % 100:02d}"
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    i = data.draw(st.sampled_from(digits))
    other = data.draw(st.sampled_from(_NON_ASCII_DIGITS))
    bad = text[:i] + other + text[i + 1:]
    for parse in (Money.parse, Money.parse_form):
        with pytest.raises(ValidationError):
            parse(bad, allow_zero=True)
        with pytest.raises(ValidationError):
            parse(bad.replace(",", ""), allow_zero=True)


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
