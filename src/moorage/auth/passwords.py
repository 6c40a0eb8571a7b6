"""Password and secret hashing (argon2id) with a short verification cache.

Argon2 is deliberately slow (~15 ms with these parameters, OWASP's minimum: m=19 MiB, t=2),
and Basic credentials may arrive on every ``/v2`` request of a client that does not use
tokens. A successful verification is remembered for :data:`CACHE_SECONDS` under an HMAC of
(stored hash, password) with a per-process random key: changing the password changes the
stored hash, so the cache can never keep an old password valid, and it holds no password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["PasswordPolicyError", "check_password_policy", "generate_secret", "hash_secret", "verify_secret"]

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_CACHE_KEY = os.urandom(32)
_CACHE: dict[bytes, float] = {}
CACHE_SECONDS = 60.0
_CACHE_MAX = 10_000


class PasswordPolicyError(ValueError):
    """A new password that is too weak; the message says what is required."""


def check_password_policy(password: str) -> None:
    """Harbor's rule: 8–128 characters with at least one upper-case, one lower-case letter and a digit."""
    if not 8 <= len(password) <= 128:
        raise PasswordPolicyError("the password must be 8 to 128 characters long")
    if not (any(c.isupper() for c in password) and any(c.islower() for c in password)
            and any(c.isdigit() for c in password)):
        raise PasswordPolicyError(
            "the password must contain at least one upper-case letter, one lower-case letter and one digit"
        )


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Constant-time check of ``secret`` against an argon2 hash (cached on success)."""
    key = hmac.new(_CACHE_KEY, stored_hash.encode() + b"\0" + secret.encode(), hashlib.sha256).digest()
    now = time.monotonic()
    expiry = _CACHE.get(key)
    if expiry is not None and expiry > now:
        return True
    try:
        _HASHER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = now + CACHE_SECONDS
    return True


def generate_secret(length: int = 32) -> str:
    """A random secret that satisfies :func:`check_password_policy` (robot secrets, initial admin)."""
    while True:
        candidate = secrets.token_urlsafe(length)[:length]
        try:
            check_password_policy(candidate)
        except PasswordPolicyError:
            continue
        return candidate
