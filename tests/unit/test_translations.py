"""Every string of ours (and FAB's on our pages) is in the Welsh catalogue, translated."""

import os
import subprocess
import sys
import tempfile

from babel.messages.pofile import read_po

from config import BASE_DIR

CY = os.path.join(BASE_DIR, "translations", "cy", "LC_MESSAGES", "messages.po")


def _catalog(path):
    with open(path, "rb") as f:
        return read_po(f)


def test_every_string_in_our_code_has_a_welsh_translation():
    with tempfile.TemporaryDirectory() as tmp:
        pot = os.path.join(tmp, "ours.pot")
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "pybabel"), "-q", "extract",
                        "-F", os.path.join(BASE_DIR, "translations", "babel.cfg"),
                        "-k", "_l", "-k", "lazy_gettext", "-k", "N_", "-o", pot, "app", "config.py"],
                       cwd=BASE_DIR, check=True)
        ours = {m.id for m in _catalog(pot) if m.id}
    cy = {m.id: m for m in _catalog(CY) if m.id}
    missing = sorted(str(i) for i in ours if i not in cy)
    assert not missing, f"run `make extract-messages` and translate: {missing[:20]}"
    untranslated = sorted(str(i) for i in ours if not cy[i].string or cy[i].fuzzy)
    assert not untranslated, f"no Welsh for: {untranslated[:20]}"


def test_fab_strings_on_our_pages_are_welsh():
    cy = {m.id: m.string for m in _catalog(CY) if m.id}
    for msgid in ("Login", "Username", "Password", "Sign In", "Logout", "Search", "List Users",
                  "Security", "Record Count", "Add", "Edit", "Save", "Back",
                  "Invalid login. Please try again.", "Added Row", "Changed Row"):
        assert cy.get(msgid), msgid
        assert cy[msgid] != msgid, msgid


def test_money_and_dates_formatted_for_en_gb_and_cy_gb(app):
    from datetime import date

    from flask_babel import force_locale

    from app.formatting import money, when

    with app.test_request_context():
        with force_locale("en"):
            assert money(123456) == "£1,234.56"
            assert when(date(2026, 11, 25)) == "25 November 2026"
        with force_locale("cy"):
            assert money(123456) == "£1,234.56"
            assert when(date(2026, 11, 25)) == "25 Tachwedd 2026"


def test_money_written_directly_is_what_babel_writes(app):
    """money() writes pounds for en_GB and cy_GB itself (app/formatting.py _PLAIN_POUNDS): the
    same text as Babel's format_currency, for small, large, negative and string amounts."""
    import random
    from decimal import Decimal

    from babel.numbers import format_currency
    from flask_babel import force_locale

    from app.formatting import money

    rng = random.Random(22)
    amounts = [0, 1, 9, 10, 99, 100, 101, 99999, 100000, 123456789012, -1, -100, -123456,
               *(rng.randint(-10**12, 10**12) for _ in range(300))]
    with app.test_request_context():
        for lang, babel in (("en", "en_GB"), ("cy", "cy_GB")):
            with force_locale(lang):
                for pence in amounts:
                    assert money(pence) == format_currency(Decimal(pence) / 100, "GBP",
                                                           locale=babel), (lang, pence)
                assert money(str(-2550)) == "-£25.50" and money(None) == "" and money("") == ""
