"""Form fields and helpers for money and rates typed into web pages (pounds on screen, pence in
the database)."""

from __future__ import annotations

from decimal import Decimal

from wtforms import StringField
from wtforms.validators import ValidationError as WTFValidationError

from app.domain.errors import ValidationError
from app.domain.money import Money, parse_rate


class MoneyField(StringField):
    """Shows pence as "12.34"; parses input with the form parser (Money.parse_form): "£1,234.50"
    is accepted, "12,34", three decimal places and non-ASCII digits are not."""

    def __init__(self, label=None, validators=None, allow_zero=False, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.allow_zero = allow_zero
        self._error = None

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(Money(int(self.data)))

    def process_formdata(self, valuelist):
        self._error = None
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        try:
            self.data = Money.parse_form(valuelist[0], field=self.name,
                                         allow_zero=self.allow_zero).pence
        except ValidationError as exc:
            self.data = None
            self._error = next(iter(exc.errors.values()))[0] if exc.errors else exc.message
            raise ValueError(self._error) from None

    def pre_validate(self, form):
        if self._error:
            raise WTFValidationError(self._error)


def form_amount(text):
    """A form's amount for a service that parses amounts strictly: Money when the text is one as
    forms write it ("£1,234.50"), else the text unchanged, which the service then refuses (the
    strict parser accepts less than the form parser) with the field named as it names it."""
    if not isinstance(text, str) or not text.strip():
        return text
    try:
        return Money.parse_form(text, allow_zero=True)
    except ValidationError:
        return text


class RateField(StringField):
    """A VAT rate typed as a decimal fraction ("0.20", "0.175"); parsed by money.parse_rate
    (ASCII digits, at most four places, 0 up to but not including 1) after trimming."""

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        if self.data is None:
            return ""
        rate = Decimal(self.data)
        return f"{rate:.2f}" if rate == rate.quantize(Decimal("0.01")) else str(rate.normalize())

    def process_formdata(self, valuelist):
        self.data = None
        if not valuelist or not valuelist[0].strip():
            return
        try:
            self.data = parse_rate(valuelist[0].strip(), field=self.name)
        except ValidationError as exc:
            raise ValueError(next(iter(exc.errors.values()))[0]) from None
