"""Record ids from outside (URL paths, JSON bodies, forms, query strings): whole numbers that an id
column can hold.

Every id column is an ``INTEGER`` on PostgreSQL (the audit trail's ``BIGINT`` aside), and a value
outside its range is a database error (PostgreSQL: "integer out of range"; SQLite: an
OverflowError beyond 64 bits), not "no such record". Anything that is not an id in range is
therefore "no such record" before it reaches a query.
"""

from __future__ import annotations

#: The largest id: PostgreSQL's ``integer``. Ids start at 1.
MAX_ID = 2**31 - 1
#: The largest ``BIGINT`` (the audit trail's ids, amounts in pence).
MAX_BIGINT = 2**63 - 1


def parse_id(value, maximum: int = MAX_ID) -> int | None:
    """The id ``value`` names (an int, or a string of ASCII digits), or None when it names none:
    not a whole number, a bool, below 1 or above ``maximum``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # at most 19 digits before int(): a 10,000-digit "id" is not parsed at all
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            return None
        value = int(text)
    if not isinstance(value, int) or not 1 <= value <= maximum:
        return None
    return value


def to_id(value, maximum: int = MAX_ID) -> int:
    """``int(value)`` for an id in range, else ValueError: the drop-in for ``int()`` wherever an
    id from outside is about to be looked up."""
    parsed = parse_id(value, maximum)
    if parsed is None:
        raise ValueError(f"{value!r:.40} is not an id")
    return parsed


def decimal_pattern(maximum: int = MAX_ID) -> str:
    """A regular expression matching exactly the decimals 1 to ``maximum`` (no sign, no leading
    zero), for routes: a path whose id is out of range then matches no route at all (404), where a
    range check after matching would leave a sibling route with another method to answer 405."""
    text, width = str(maximum), len(str(maximum))
    alternatives = [rf"[1-9]\d{{0,{width - 2}}}"] if width > 1 else []
    for i, digit in enumerate(map(int, text)):
        low = 1 if i == 0 else 0
        if digit > low:
            below = f"[{low}-{digit - 1}]" if digit - 1 > low else str(low)
            alternatives.append(text[:i] + below + (rf"\d{{{width - i - 1}}}" if i < width - 1 else ""))
    alternatives.append(text)
    return "(?:" + "|".join(alternatives) + ")"
