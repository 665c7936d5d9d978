"""Sounds-alike keys for names: American Soundex (as SQL Server's SOUNDEX, which the anchor
stores for surnames), computed in Python and stored, so the search works on both databases."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_CODES = {**dict.fromkeys("BFPV", "1"), **dict.fromkeys("CGJKQSXZ", "2"),
          **dict.fromkeys("DT", "3"), "L": "4", **dict.fromkeys("MN", "5"), "R": "6"}
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
#: words that end a name without being its surname ("Jones Ltd", "Davies & Sons")
_TRAILING = {"LTD", "LIMITED", "PLC", "LLP", "AND", "SONS", "SON", "CO", "JNR", "SNR", "JR", "SR",
             "II", "III", "MR", "MRS", "MS", "MISS", "DR"}


@lru_cache(maxsize=65536)
def soundex(word: str | None) -> str | None:
    """The four-character Soundex of a word ("Robert" → "R163"), or None without a letter."""
    plain = unicodedata.normalize("NFKD", word or "")
    letters = [c for c in plain.upper() if "A" <= c <= "Z"]
    if not letters:
        return None
    first = letters[0]
    out = []
    prev = _CODES.get(first, "")
    for c in letters[1:]:
        code = _CODES.get(c, "")
        if code and code != prev:
            out.append(code)
            if len(out) == 3:
                break
        if c not in "HW":  # H and W do not separate letters with the same code
            prev = code
    return (first + "".join(out)).ljust(4, "0")


def surname_of(name: str | None) -> str | None:
    """The word of a name taken as its surname: the last, skipping "Ltd", "& Sons" and the like
    (and a possessive: "Jones's Bakery" → "Jones" when the rest are trade words is not
    guessed; the last word is used)."""
    plain = name or ""
    if not plain.isascii():
        plain = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    words = [w.strip("'-") for w in _WORD.findall(plain)]
    words = [w for w in words if w]
    while len(words) > 1 and words[-1].upper() in _TRAILING:
        words.pop()
    return words[-1] if words else None


def name_key(name: str | None) -> str | None:
    return soundex(surname_of(name))
