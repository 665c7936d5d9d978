"""Locale-aware display of money and dates (Babel, en_GB and cy_GB), and translation of our
fixed messages without ever marking data as safe HTML."""

from __future__ import annotations

import re
from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from flask_babel import get_locale, get_timezone
from flask_babel import gettext as _gettext

from app.domain.i18n import Fixed


def _babel_locale() -> str:
    loc = str(get_locale() or "en")
    return {"en": "en_GB", "cy": "cy_GB"}.get(loc, loc)


def money(pence) -> str:
    """£1,234.56 for pence (empty for None), formatted for the current locale."""
    if pence is None or pence == "":
        return ""
    return format_currency(Decimal(int(pence)) / 100, "GBP", locale=_babel_locale())


def number(value) -> str:
    """1,234 for a count, for the current locale (empty for None)."""
    if value is None or value == "":
        return ""
    return format_decimal(value, locale=_babel_locale())


def percent(value) -> str:
    """12.5 -> "12.5%" for the current locale (empty for None)."""
    if value is None or value == "":
        return ""
    return format_decimal(Decimal(value), "#,##0.0", locale=_babel_locale()) + "%"


def when(value, fmt: str = "medium") -> str:
    if value is None:
        return ""
    if hasattr(value, "hour"):
        return format_datetime(value, fmt, tzinfo=get_timezone(), locale=_babel_locale())
    return format_date(value, fmt, locale=_babel_locale())


def tr(value):
    """A message marked with N_() in the reader's language; any other value (data) unchanged.

    Jinja's own ``_()`` returns its result as safe markup, so ``{{ _(value) }}`` would print a
    payee's ``<script>`` as HTML and would look data up in the catalogue. This returns plain
    text, which autoescape escapes, with the message's values substituted after translation.
    """
    if not isinstance(value, Fixed):
        return value
    text = _gettext(value.msgid)
    if not value.params:
        return text
    return text % {k: tr(v) for k, v in value.params.items()}


def library_message(value) -> str:
    """A library's English message (WTForms/FAB form errors) through our catalogue, as plain
    text: escaped on output whatever the message holds (an error may quote the input)."""
    return _gettext(str(value))


_LOCAL_PATH = re.compile(r"/(?:[A-Za-z0-9_.~-][^\s\\]*)?")


def local_link(value) -> str | None:
    """``value`` if it is a path on this site ("/refunds/5"), else None: a link from data never
    becomes ``javascript:``, another site, or "//host" (browsers drop tabs and newlines)."""
    if isinstance(value, str) and _LOCAL_PATH.fullmatch(value):
        return value
    return None


def install_filters(app) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["number"] = number
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.filters["tr"] = tr
    app.jinja_env.filters["library_message"] = library_message
    app.jinja_env.filters["local_link"] = local_link
