"""Marking strings for translation in code that must not depend on Flask-Babel.

`N_("Amount")` returns the text as a `Fixed` message; `make extract-messages` collects it, and the
page that shows it translates it at render time with the `tr` filter (app/formatting.py). Values
may be substituted: `N_("Line %(n)s", n=2)` is "Line 2" as a plain string and "Llinell 2" on a
Welsh page. Only a `Fixed` is ever looked up in the catalogue: any other string shown next to one
(a payee's name, a narrative) is data, shown as it is and escaped like all data.
"""

from __future__ import annotations


class Fixed(str):
    """A message of ours (its msgid and values), equal to its English text as a string."""

    __slots__ = ("msgid", "params")

    def __new__(cls, msgid: str, **params):
        self = super().__new__(cls, msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params
        return self


def N_(text: str, **params) -> Fixed:  # noqa: N802 (the gettext convention)
    return Fixed(text, **params)
