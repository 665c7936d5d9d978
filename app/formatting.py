"""Locale-aware display of money and dates (Babel, en_GB and cy_GB)."""

from __future__ import annotations

from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from flask_babel import get_locale, get_timezone


def _babel_locale() -> str:
    loc = str(get_locale() or "en")
    return {"en": "en_GB", "cy": "cy_GB"}.get(loc, loc)


def money(pence) -> str:
    """£1,234.56 for pence (empty for None), formatted for the current locale."""
    if pence is None or pence == "":
        return ""
    return format_currency(Decimal(int(pence)) / 100, "GBP", locale=_babel_locale())


def when(value, fmt: str = "medium") -> str:
    if value is None:
        return ""
    if hasattr(value, "hour"):
        return format_datetime(value, fmt, tzinfo=get_timezone(), locale=_babel_locale())
    return format_date(value, fmt, locale=_babel_locale())


def install_filters(app) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["when"] = when
