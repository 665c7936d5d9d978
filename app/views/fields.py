"""Form fields for money (pounds on screen, pence in the database)."""

from __future__ import annotations

from wtforms import StringField
from wtforms.validators import ValidationError as WTFValidationError

from app.domain.errors import ValidationError
from app.domain.money import Money


class MoneyField(StringField):
    """Shows pence as "12.34"; parses input with Decimal, rejecting more than two places."""

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
            self.data = Money.parse(valuelist[0], field=self.name, allow_zero=self.allow_zero).pence
        except ValidationError as exc:
            self.data = None
            self._error = next(iter(exc.errors.values()))[0] if exc.errors else exc.message
            raise ValueError(self._error) from None

    def pre_validate(self, form):
        if self._error:
            raise WTFValidationError(self._error)
