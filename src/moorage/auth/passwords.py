"""Password and secret hashing (argon2id) with a short verification cache.

Argon2 is deliberately slow (~15 ms with these parameters, OWASP's minimum: m=19 MiB, t=2),
and Basic credentials may arrive on every ``/v2`` request of a client that does not use
tokens. A successful verification is remembered for :data:`CACHE_SECONDS` under an HMAC of
(stored hash, password) with a per-process random key: changing the password changes the
stored hash, so the cache can never keep an old password valid, and it holds no password.

The async variants run argon2 in a worker thread (argon2-cffi releases the GIL): 15 ms of CPU on
the event loop per login would stall every upload and pull of that worker while a guesser (or a
busy CI farm) logs in. A name that does not exist is checked against a dummy hash, so the time
of a refusal does not tell a guesser which user names exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "PasswordPolicyError",
    "check_password_policy",
    "generate_secret",
    "hash_secret",
    "hash_secret_async",
    "recently_verified",
    "remember_verified",
    "verify_secret",
    "verify_secret_async",
]

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


def _cache_key(stored_hash: str, secret: str) -> bytes:
    return hmac.new(_CACHE_KEY, stored_hash.encode() + b"\0" + secret.encode(), hashlib.sha256).digest()


def recently_verified(stored_hash: str, secret: str) -> bool:
    """Whether ``secret`` matched ``stored_hash`` within :data:`CACHE_SECONDS` (no argon2 run: a lookup only)."""
    expiry = _CACHE.get(_cache_key(stored_hash, secret))
    return expiry is not None and expiry > time.monotonic()


def remember_verified(stored_hash: str, secret: str, seconds: float = CACHE_SECONDS) -> None:
    """Record that ``secret`` was verified for the credential ``stored_hash`` names (also used by
    identity sources that check passwords elsewhere, with a key that changes with the account), for
    ``seconds`` (at most :data:`CACHE_SECONDS`; a source whose answer holds for less says so)."""
    if seconds <= 0:
        return
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[_cache_key(stored_hash, secret)] = time.monotonic() + min(seconds, CACHE_SECONDS)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Constant-time check of ``secret`` against an argon2 hash (cached on success)."""
    if recently_verified(stored_hash, secret):
        return True
    try:
        _HASHER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
    remember_verified(stored_hash, secret)
    return True


async def verify_secret_async(stored_hash: str | None, secret: str) -> bool:
    """:func:`verify_secret` off the event loop; ``None`` (no such account) costs the same and is ``False``."""
    if stored_hash is not None and recently_verified(stored_hash, secret):
        return True
    if stored_hash is None:
        await asyncio.to_thread(verify_secret, _dummy_hash(), secret)
        return False
    return await asyncio.to_thread(verify_secret, stored_hash, secret)


async def hash_secret_async(secret: str) -> str:
    """:func:`hash_secret` off the event loop."""
    return await asyncio.to_thread(hash_secret, secret)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash with the real parameters and a random secret nobody knows (made once per process)."""
    if not _DUMMY:
        _DUMMY.append(_HASHER.hash(secrets.token_urlsafe(24)))
    return _DUMMY[0]


def generate_secret(length: int = 32) -> str:
    """A random secret that satisfies :func:`check_password_policy` (robot secrets, initial admin)."""
    while True:
        candidate = secrets.token_urlsafe(length)[:length]
        try:
            check_password_policy(candidate)
        except PasswordPolicyError:
            continue
        return candidate
