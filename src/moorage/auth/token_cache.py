"""Bearer tokens this process has already verified, so a token seen again skips the ES256 check.

Why: a client pulling an image sends the same bearer token on every request, and verifying its
ECDSA signature was the largest part of the CPU a manifest ``GET`` cost in token mode. What the
cache saves is *only* the signature, audience, issuer and expiry check of a byte-identical token;
it never stands in for the account check. :meth:`moorage.auth.policy.Policy.account` still runs
on every request (its own :data:`~moorage.auth.policy.CACHE_SECONDS` cache and the account's
generation), so a deleted user, a changed password or a disabled robot is refused within seconds
whether or not its token is cached here.

Safety:

* The key is the SHA-256 of the whole token string (with the kind of verification asked for):
  a token that differs in one byte (a tampered payload or signature) is another key and is
  verified in full. The token itself is not kept.
* Only successful verifications are stored; a refusal is never remembered (nor turned into one).
* An entry lives until the token's ``exp`` and at most :data:`TOKEN_CACHE_SECONDS` (the interval
  at which a process re-reads the signing keys), whichever comes first.
* At most ``max_entries`` tokens (least recently used evicted first): made-up tokens never get
  in, and a flood of valid ones only costs the verifications it would have cost anyway.

Per process and not shared: another node simply verifies the token once itself.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["TOKEN_CACHE_MAX", "TOKEN_CACHE_SECONDS", "VerifiedTokens"]

#: Longest a verified token is trusted without re-checking its signature (its ``exp`` may end it sooner).
TOKEN_CACHE_SECONDS = 30.0
#: Tokens remembered per process (a few KiB each).
TOKEN_CACHE_MAX = 4096


class VerifiedTokens:
    """An LRU map from (SHA-256 of a token, purpose) to the claims it was verified with, until ``exp``.

    ``clock`` is wall-clock seconds (the scale of ``exp``); tests pass their own.
    Not thread-safe: one instance belongs to one event loop, and no method awaits.
    """

    __slots__ = ("_clock", "_entries", "max_entries", "max_seconds")

    def __init__(self, *, max_entries: int = TOKEN_CACHE_MAX, max_seconds: float = TOKEN_CACHE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self._clock = clock
        self._entries: OrderedDict[tuple[bytes, str], tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(token: str, purpose: str) -> tuple[bytes, str]:
        return hashlib.sha256(token.encode()).digest(), purpose

    def get(self, token: str, purpose: str) -> dict[str, Any] | None:
        """A copy of the claims ``token`` was verified with for ``purpose``, or ``None`` (verify it)."""
        key = self._key(token, purpose)
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, claims = entry
        if until <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return dict(claims)  # a caller that edits its claims cannot change what the next one gets

    def put(self, token: str, purpose: str, claims: dict[str, Any]) -> None:
        """Remember that ``token`` verified for ``purpose`` with ``claims`` (call only after a success)."""
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return
        now = self._clock()
        until = min(float(exp), now + self.max_seconds)
        if until <= now:
            return
        key = self._key(token, purpose)
        self._entries[key] = (until, dict(claims))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
