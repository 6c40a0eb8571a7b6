"""Redis as an optional accelerator: a per-repository entry cache, rate-limit and lock hooks.

Correctness rules (details and the reasoning in docs/operations.md, "Redis"):

* The database stays the source of truth. Redis only holds copies of what a read of the
  database returned, per repository, in one hash ``<prefix>:g<generation>:{<repo>}:entries``.
* Invalidation is per repository, after the database commit: one Lua script replaces the
  repository's *version token* with a random value and deletes the hash.
* Fills are conditional: a reader takes the version token together with its lookup, reads the
  database, and writes the entry only if the token is still the same. A fill that raced with a
  delete therefore never lands (random tokens, so no ABA when a token key expires).
* Redis failing makes this layer answer "no cache" (never an error). A delete whose
  invalidation failed bumps the generation in the database (``GenerationFence``) and waits the
  fence lease, so nothing stale is served when Redis comes back. When Redis answers again after
  failures, the node bumps the generation too (Redis may have restarted from an old snapshot).
* After a failure the node leaves Redis alone for ``retry_after`` seconds, so a dead Redis costs
  one timeout per node per interval, not one per request.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from redis.exceptions import RedisClusterException, RedisError

from moorage.cache.client import RedisClient
from moorage.cache.fence import GenerationFence
from moorage.metrics import CACHE_LOOKUPS

__all__ = ["RegistryCache"]

log = structlog.get_logger("moorage.cache")
T = TypeVar("T")

_LOOKUP = """
local value = redis.call('hget', KEYS[1], ARGV[1])
local token = redis.call('get', KEYS[2])
return {value, token}
"""
_FILL = """
local token = redis.call('get', KEYS[2]) or ''
if token ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[1], ARGV[2], ARGV[3])
redis.call('expire', KEYS[1], tonumber(ARGV[4]))
return 1
"""
_INVALIDATE = """
redis.call('set', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('del', KEYS[1])
return 1
"""
_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


#: Field prefixes of the entry cache (moorage.cache.wrappers) → the metrics label.
_KINDS = {"m:": "manifest", "b:": "blob"}


class _Unavailable(Exception):
    """Redis did not answer (or is being left alone after a failure)."""


class RegistryCache:
    """The registry's use of Redis; every public method degrades to "no cache" instead of failing."""

    def __init__(
        self,
        client: RedisClient,
        fence: GenerationFence,
        *,
        prefix: str = "moorage",
        ttl: int = 300,
        retry_after: float = 1.0,
        deadline: float = 2.0,
        peers: Sequence[tuple[RedisClient, str]] = (),
    ) -> None:
        self.client = client
        #: Other sites' own Redis (client, key prefix): a delete here must reach their entries too.
        self.peers = list(peers)
        self.fence = fence
        self.prefix = prefix
        self.ttl = ttl
        self.retry_after = retry_after
        self.deadline = deadline
        self._down_until = 0.0
        self._failed = False

    # -- plumbing ------------------------------------------------------------------------
    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._down_until:
            raise _Unavailable()
        try:
            # Bounded as a whole: a cluster client may retry discovery on several nodes.
            result = await asyncio.wait_for(op(), self.deadline)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            if not self._failed:
                log.warning("redis_unavailable", error=str(exc) or type(exc).__name__)
            self._failed = True
            self._down_until = time.monotonic() + self.retry_after
            raise _Unavailable() from None
        if self._failed:
            # Redis is back, maybe restarted from an old snapshot or after missing invalidations
            # that other nodes could not send: drop everything it holds, and ignore this answer.
            self._failed = False
            log.info("redis_available_again")
            await self.fence.bump()
            raise _Unavailable()
        return result

    def _keys(self, generation: int, repository: str) -> list[str]:
        # {repository} is the Cluster hash tag: both keys live on one slot, as Lua requires.
        return [
            f"{self.prefix}:g{generation}:{{{repository}}}:entries",
            f"{self.prefix}:{{{repository}}}:version",
        ]

    async def ping(self) -> None:
        """One round trip; raises the client's error (used by the health check, not degraded)."""
        await self.client.ping()

    # -- entry cache -------------------------------------------------------------------------
    async def lookup(self, repository: str, field: str) -> tuple[bytes | None, str | None]:
        """``(value, fill_token)``: a hit, or a miss with the token :meth:`fill` needs (``None``: no cache)."""
        kind = _KINDS.get(field[:2], "other")
        generation = await self.fence.current()
        if generation is None:
            CACHE_LOOKUPS.labels(kind, "unavailable").inc()
            return None, None
        keys = self._keys(generation, repository)
        try:
            reply: Any = await self._call(lambda: self.client.eval(_LOOKUP, 2, *keys, field))
        except _Unavailable:
            CACHE_LOOKUPS.labels(kind, "unavailable").inc()
            return None, None
        value, version = reply[0], reply[1]
        CACHE_LOOKUPS.labels(kind, "hit" if value is not None else "miss").inc()
        if value is not None:
            return bytes(value), None
        version_text = version.decode() if isinstance(version, bytes) else str(version or "")
        return None, f"{generation}:{version_text}"

    async def fill(self, repository: str, field: str, value: bytes, token: str) -> None:
        """Store ``value`` unless the repository was invalidated since the lookup that gave ``token``."""
        generation, _, version = token.partition(":")
        keys = self._keys(int(generation), repository)
        try:
            await self._call(
                lambda: self.client.eval(_FILL, 2, *keys, version, field, value, str(self.ttl))
            )
        except _Unavailable:
            pass

    async def invalidate(self, repository: str) -> None:
        """Drop the repository's entries everywhere; if Redis cannot be told, fence the whole cache.

        Call after the database commit that changed the repository. Never raises for Redis
        failures (the caller's change is committed and must be reported as done); it may take
        ``fence.lease`` seconds longer when Redis is unreachable.
        """
        generation = await self.fence.current()
        if generation is None:
            # We cannot even name the current keys: fence instead of guessing.
            await self._fence_after_failure(repository)
            return
        keys = self._keys(generation, repository)
        token = secrets.token_hex(8)
        try:
            await self._call(
                lambda: self.client.eval(_INVALIDATE, 2, *keys, token, str(self.ttl * 4 + 60))
            )
        except _Unavailable:
            await self._fence_after_failure(repository)
            return
        await self._invalidate_peers(generation, repository, token)

    async def _invalidate_peers(self, generation: int, repository: str, token: str) -> None:
        """Drop the repository's entries in every other site's Redis; fence when one cannot be told.

        Each site with its own Redis caches what its nodes read; the database they share changed
        here, so their copies are stale now. A peer that does not answer within the deadline gets
        the same treatment as our own Redis failing: the generation moves on, so the entries it
        still holds are never read again (docs/multi-site.md).
        """
        for client, prefix in self.peers:
            keys = [f"{prefix}:g{generation}:{{{repository}}}:entries", f"{prefix}:{{{repository}}}:version"]
            try:
                await asyncio.wait_for(client.eval(_INVALIDATE, 2, *keys, token, str(self.ttl * 4 + 60)), self.deadline)
            except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
                log.warning("peer_cache_invalidation_failed", repository=repository, error=str(exc) or type(exc).__name__)
                await self._fence_after_failure(repository)
                return

    async def _fence_after_failure(self, repository: str) -> None:
        log.warning("cache_invalidation_fenced", repository=repository)
        try:
            await self.fence.bump()
        except Exception as exc:  # the database itself failed right after our commit
            log.error("cache_fence_failed", repository=repository, error=str(exc))
            raise

    # -- hooks for other features ---------------------------------------------------------------
    async def allow(self, key: str, limit: int, window_seconds: int) -> bool:
        """Fixed-window rate limit: ``True`` while ``key`` has been seen at most ``limit`` times.

        Fails open (``True``) when Redis is unavailable: a rate limit protects capacity, and a
        registry that refused every pull because its cache died would be the worse outage.
        """
        slot = int(time.time() // window_seconds)
        name = f"{self.prefix}:rate:{{{key}}}:{slot}"

        async def count() -> int:
            value = int(await self.client.incr(name))
            if value == 1:
                await self.client.expire(name, window_seconds + 1)
            return value

        try:
            return await self._call(count) <= limit
        except _Unavailable:
            return True

    @asynccontextmanager
    async def lock(self, name: str, ttl: float = 10.0, wait: float = 5.0) -> AsyncIterator[bool]:
        """A short best-effort mutual exclusion: yields ``True`` when held, ``False`` when not.

        For saving duplicate work only (two nodes building the same thing): never for
        correctness, since Redis may be gone (then it yields ``False`` at once) and a lock
        may expire under a slow holder. Correctness goes through database row locks.
        """
        key = f"{self.prefix}:lock:{{{name}}}"
        token = secrets.token_hex(16)
        deadline = time.monotonic() + wait
        held = False
        while True:
            try:
                held = bool(await self._call(lambda: self.client.set(key, token, nx=True, px=int(ttl * 1000))))
            except _Unavailable:
                break
            if held or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        try:
            yield held
        finally:
            if held:
                try:
                    await self._call(lambda: self.client.eval(_UNLOCK, 1, key, token))
                except _Unavailable:
                    pass

    async def aclose(self) -> None:
        await self.client.aclose()
        for client, _ in self.peers:
            await client.aclose()
