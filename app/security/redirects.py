"""Where a `next` parameter may send the browser: a path on this site, never anywhere else.

Browsers parse a Location header leniently (WHATWG URL): they drop tabs and newlines anywhere,
strip leading control characters and spaces, and read a backslash as a slash, so
``/\\t/evil.example`` and ``/\\evil.example`` both become ``//evil.example``, another host. A
target is therefore refused outright if it holds any control character, whitespace or backslash;
what is left must be a relative path (one leading slash) or an absolute http(s) URL of this very
host, which is reduced to its path.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit, urlunsplit

from flask import request


def _suspicious(char: str) -> bool:
    return char == "\\" or char.isspace() or unicodedata.category(char).startswith("C")


def local_path(target: str | None) -> str | None:
    """``target`` as a same-site path ("/page?query") to redirect to, or None if it could lead
    anywhere else (or is empty)."""
    if not isinstance(target, str) or not target or len(target) > 2000:
        return None
    if any(_suspicious(c) for c in target):
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or parts.netloc != request.host:
            return None
        target = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    if not target.startswith("/") or target.startswith("//"):
        return None
    return target
