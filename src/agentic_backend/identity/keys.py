"""API key secrets: how they are made, found and checked.

A generated key reads ``agb_<public id>_<secret>``: the public id (16 base32 characters) finds the row, the
whole key's SHA-256 is what is stored and compared, in constant time. SHA-256 rather than a slow password
hash because the secret has 256 bits of entropy: there is nothing to brute-force, and a fast check keeps
authentication cheap on every request. A key supplied by an operator (``AGENTIC_ADMIN_API_KEY``) may have
any shape; its public id is then derived from its hash, so lookup works the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "agb"
MAX_KEY_LENGTH = 256  # longer is not one of our keys: refuse before hashing anything large
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def generate() -> str:
    public = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return f"{PREFIX}_{public}_{secrets.token_urlsafe(32)}"


def secret_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def public_id(key: str) -> str:
    prefix, _, rest = key.partition("_")
    public, _, secret = rest.partition("_")
    if prefix == PREFIX and len(public) == 16 and secret:
        return public
    return "h" + secret_hash(key)[:31]


def matches(key: str, stored_hash: str | None) -> bool:
    """Constant-time check of ``key`` against a stored hash; with no stored hash (unknown key) it does the
    same work against a dummy, so that timing does not tell whether a key exists."""
    return digest_matches(secret_hash(key), stored_hash)


def digest_matches(digest: str, stored_hash: str | None) -> bool:
    """``matches`` for a key whose ``secret_hash`` the caller has computed already."""
    expected = stored_hash if stored_hash is not None else _DUMMY_HASH
    return hmac.compare_digest(digest, expected) and stored_hash is not None
