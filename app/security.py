"""API keys: random 32-byte URL-safe tokens with a short visible prefix, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "amaqc_"


def generate_key() -> str:
    """A new key, e.g. ``amaqc_3q2X...`` (the part after the prefix is 43 URL-safe chars)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Hex SHA-256 of a key; the only form in which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    """The first characters of a key, safe to show in listings and logs."""
    return key[: len(KEY_PREFIX) + 6]
