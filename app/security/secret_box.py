"""Secrets kept encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256), such as the users'
TOTP secrets: whoever reads the database (a backup, a replica, a leaked dump) cannot make their
codes.

The key is IMS_TOTP_KEY, or SECRET_KEY when that is empty, stretched to a Fernet key with
SHA-256 under a purpose label. After a change of key, the earlier keys in
IMS_TOTP_PREVIOUS_KEYS (comma-separated) still open what they sealed; sealing always uses the
current key. A value that is not a Fernet token is plain text from before encryption (migration
0022 seals those) and is returned as it is.
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

PURPOSE = b"ims-totp-secret\x00"
#: every Fernet token starts with its version byte 0x80, base64: "gAAAAA"
TOKEN_PREFIX = "gAAAAA"


def fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(PURPOSE + secret.encode("utf-8")).digest())


def keys_of(config) -> list[str]:
    """The current key first, then the earlier ones (from a Flask config or any mapping)."""
    current = config.get("IMS_TOTP_KEY") or config.get("SECRET_KEY") or ""
    previous = [k.strip() for k in str(config.get("IMS_TOTP_PREVIOUS_KEYS") or "").split(",")
                if k.strip()]
    return [k for k in [current, *previous] if k]


def box(config=None) -> MultiFernet:
    if config is None:
        from flask import current_app

        config = current_app.config
    keys = keys_of(config)
    if not keys:
        raise RuntimeError("No key to encrypt secrets with: set IMS_TOTP_KEY or SECRET_KEY.")
    return MultiFernet([Fernet(fernet_key(k)) for k in keys])


def is_sealed(value: str | None) -> bool:
    return bool(value) and value.startswith(TOKEN_PREFIX)


def seal(plain: str, config=None) -> str:
    return box(config).encrypt(plain.encode("utf-8")).decode("ascii")


def unseal(value: str | None, config=None) -> str | None:
    """The plain text of ``value`` (None when empty, or when no key in force opens it: logged,
    and the caller treats the secret as unusable)."""
    if not value:
        return None
    if not is_sealed(value):
        return value
    try:
        return box(config).decrypt(value.encode("ascii")).decode("utf-8")
    except InvalidToken:
        log.error("a sealed secret does not open with IMS_TOTP_KEY or IMS_TOTP_PREVIOUS_KEYS")
        return None
