"""Locale-aware display of money and dates (Babel, en_GB and cy_GB), and translation of our
fixed messages without ever marking data as safe HTML."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from flask_babel import get_locale, get_timezone, ngettext
from flask_babel import gettext as _gettext

from app.domain import labels as _labels
from app.domain.i18n import N_, Fixed
from app.domain.money import Money, percent


def _babel_locale() -> str:
    loc = str(get_locale() or "en")
    return {"en": "en_GB", "cy": "cy_GB"}.get(loc, loc)


#: locales whose pounds Babel writes "£1,234.56" and "-£1,234.56" (tests/unit/test_translations.py
#: compares the two for both): written here directly, a page's fifty amounts in a fraction of a
#: millisecond (Babel's format_currency takes about 0.1 ms each)
_PLAIN_POUNDS = frozenset({"en_GB", "cy_GB"})


def money(pence) -> str:
    """£1,234.56 for pence (empty for None), formatted for the current locale."""
    if pence is None or pence == "":
        return ""
    pence = int(pence)
    locale = _babel_locale()
    if locale in _PLAIN_POUNDS:
        whole, part = divmod(abs(pence), 100)
        return f"{'-' if pence < 0 else ''}£{whole:,}.{part:02d}"
    return format_currency(Decimal(pence) / 100, "GBP", locale=locale)


def number(value) -> str:
    """1,234 for a count, for the current locale (empty for None)."""
    if value is None or value == "":
        return ""
    return format_decimal(value, locale=_babel_locale())


def percent_value(value) -> str:
    """12.5 -> "12.5%" for the current locale (empty for None): a change, a share."""
    if value is None or value == "":
        return ""
    return format_decimal(Decimal(value), "#,##0.0", locale=_babel_locale()) + "%"


#: The portal's one date style (UK, through Babel in English and Welsh): "6 December 2026" for a
#: date, "6 Dec 2026 07:23" for a moment (in the portal's time zone).
DATE_FORMAT = "d MMMM y"
DATETIME_FORMAT = "d MMM y HH:mm"


def when(value, fmt: str | None = None) -> str:
    """A date or a moment in the portal's style; ISO text (from stored JSON) is read first."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = (datetime.fromisoformat(value) if "T" in value or " " in value.strip()
                     else date.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)  # stored moments are UTC
        return format_datetime(value, fmt or DATETIME_FORMAT, tzinfo=get_timezone(),
                               locale=_babel_locale())
    if isinstance(value, date):
        return format_date(value, fmt or DATE_FORMAT, locale=_babel_locale())
    return value


def days(n) -> str:
    """"1 day", "2 days" (pluralised in the reader's language)."""
    n = int(n)
    return ngettext("%(num)s day", "%(num)s days", n)


def age_days(value) -> str:
    """How long ago a date was, in days: "1 day", "0 days"."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    return days((date.today() - value).days)


def rate(value) -> str:
    """A VAT rate (a fraction) as "20%"."""
    return percent(value)


def tr(value):
    """A message marked with N_() in the reader's language; any other value (data) unchanged.

    Jinja's own ``_()`` returns its result as safe markup, so ``{{ _(value) }}`` would print a
    payee's ``<script>`` as HTML and would look data up in the catalogue. This returns plain
    text, which autoescape escapes, with the message's values substituted after translation.
    """
    if isinstance(value, (date, datetime)):
        return when(value)
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


def label(value, kind: str):
    """A stored status, role, task name... in words, in the reader's language (else as stored)."""
    return tr(_labels.label(kind, value))


def reasons(text) -> str:
    """A stored reason ("Unknown fund XX.; The reference is blank.") in the reader's language."""
    return "; ".join(str(tr(s)) for s in _labels.known_sentences(text))


def suggestion_text(text) -> str:
    """A suspense suggestion's reason in the reader's language."""
    return " ".join(str(tr(s)) for s in _labels.suggestion_sentences(text))


def audit_action(action) -> str:
    return tr(_labels.ACTIONS.get(action, action))


#: audited entity -> the labels kind of its "status"
_STATUS_KINDS = {"Refund": "refund", "WriteOff": "write_off", "SuspenseItem": "suspense",
                 "ImportBatch": "import", "WorkflowTask": "task", "WorkflowInstance": "workflow",
                 "SuspenseAllocation": "allocation", "ConfigProposal": "proposal"}
_DECIMAL_MONEY = re.compile(r"-?\d+\.\d\d")


def _readable(value, key: str = "", entity: str = "") -> str:
    """One audited value in words: money as £, statuses and roles translated, dates UK style."""
    if value is None or value == "":
        return "—"
    if value is True:
        return _gettext("Yes")
    if value is False:
        return _gettext("No")
    if isinstance(value, list):
        return ", ".join(_readable(v, key, entity) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{tr(_labels.FIELDS.get(k, k))}: {_readable(v, k, entity)}"
                         for k, v in value.items())
    if isinstance(value, str) and value.startswith("pd:"):
        shown = _personal(value)
        if shown is not None:
            return shown
    if key == "status" and entity in _STATUS_KINDS:
        return str(tr(_labels.label(_STATUS_KINDS[entity], value)))
    if key in ("roles", "role", "current_role"):
        return str(tr(_labels.label("role", value)))
    if key == "amount" or key.endswith("_amount") or key == "total":
        if isinstance(value, int):
            return money(value)
        if isinstance(value, str) and _DECIMAL_MONEY.fullmatch(value):
            return money(Money.parse(value, allow_zero=True, allow_negative=True).pence)
    if isinstance(value, str) and _ISO_MOMENT.fullmatch(value):
        return when(value)
    return str(value)


_ERASED = N_("(erased)")


def _personal(value: str) -> str | None:
    """A personal-data token of the audit trail as its value, or "(erased)"; None if it is not
    one."""
    from app.extensions import db
    from app.services.personal import resolve

    token, kept = resolve(db.session, value)
    if not token:
        return None
    return kept if kept is not None else _gettext(_ERASED)


_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[+-]\d\d:\d\d|Z)?)?")


def _json(text):
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def audit_changes(event) -> list[dict]:
    """An audit event's before and after as rows a person reads: field, before, after (only
    fields that changed; each value in words). Raw JSON never reaches the page."""
    before, after = _json(getattr(event, "before", None)), _json(getattr(event, "after", None))
    entity = getattr(event, "entity", "") or ""
    if not isinstance(before, dict) and not isinstance(after, dict):
        if before is None and after is None:
            return []
        return [{"field": "", "before": "" if before is None else _readable(before, "", entity),
                 "after": "" if after is None else _readable(after, "", entity)}]
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    rows = []
    for key in list(dict.fromkeys([*before, *after])):
        if key in before and key in after and before[key] == after[key]:
            continue
        rows.append({"field": tr(_labels.FIELDS.get(key, key)),
                     "before": _readable(before[key], key, entity) if key in before else "",
                     "after": _readable(after[key], key, entity) if key in after else ""})
    return rows


def entity_words(entity) -> str:
    return tr(_labels.entity_words(entity))


def install_filters(app) -> None:
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["number"] = number
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["percent"] = percent_value
    app.jinja_env.filters["days"] = days
    app.jinja_env.filters["age_days"] = age_days
    app.jinja_env.filters["rate"] = rate
    app.jinja_env.filters["label"] = label
    app.jinja_env.filters["reasons"] = reasons
    app.jinja_env.filters["suggestion_text"] = suggestion_text
    app.jinja_env.filters["audit_action"] = audit_action
    app.jinja_env.filters["audit_changes"] = audit_changes
    app.jinja_env.filters["entity_words"] = entity_words
    app.jinja_env.filters["entity_link"] = _labels.entity_link
    app.jinja_env.filters["tr"] = tr
    app.jinja_env.filters["library_message"] = library_message
    app.jinja_env.filters["local_link"] = local_link
