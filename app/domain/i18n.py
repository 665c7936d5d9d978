"""Marking strings for translation in code that must not depend on Flask-Babel.

`N_("Amount")` returns the text unchanged; `make extract-messages` collects it, and the page that
shows it translates it with `_()` at render time.
"""


def N_(text: str) -> str:  # noqa: N802 (the gettext convention)
    return text
