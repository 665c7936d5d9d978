"""Idempotency-Key fingerprints: a key names one request, so a repeat must be that same request.

A client that retries sends the same key with the same body and gets the first result back. The
same key with a different body is a client bug that, answered with the first result, would hide
that the second request never happened; it is refused with 422, as the IETF Idempotency-Key
draft does. The fingerprint is the SHA-256 of the body's canonical JSON (keys sorted, no
whitespace), so key order and spacing do not matter. Keys stored before fingerprints were kept
have none and are not compared.
"""

from __future__ import annotations

import hashlib
import json

from app.domain.errors import ValidationError


def fingerprint(body) -> str:
    """The SHA-256 (hex) of the canonical JSON of a parsed request body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_same_request(stored: str | None, given: str | None) -> None:
    """Raise ValidationError (422) if a repeated key came with a different body."""
    if stored and given and stored != given:
        raise ValidationError(
            "This Idempotency-Key was already used for a different request; send a new key "
            "for a new request.",
            {"Idempotency-Key": ["Already used with a different request body."]})
