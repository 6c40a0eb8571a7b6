"""Dependency checks of one node (database, storage, optional Redis), without HTTP types.

:class:`HealthChecker` runs every check concurrently, each with its own timeout, and reports
status and latency; :mod:`moorage.api.health` turns that into ``/api/v2.0/health``. The storage
probe writes, reads back and deletes ``_health/<node>/probe``, so a read-only or full shared
volume on one node is caught, not only an unreachable one. The result is cached for
``cache_seconds`` and shared by every concurrent caller (see :mod:`moorage.api.health` for why).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from sqlalchemy import text

from moorage.db.session import Database
from moorage.registry.paths import health_probe_path
from moorage.storage import StorageDriver

__all__ = ["ComponentHealth", "HealthChecker", "Pingable"]


class Pingable(Protocol):
    """What the health check needs of the Redis cache: one round trip that raises on failure."""

    async def ping(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    healthy: bool
    required: bool
    latency_ms: float
    error: str | None = None
    #: The site whose storage this is (multi-site), else ``None``.
    site: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "status": "healthy" if self.healthy else "unhealthy",
            "required": self.required,
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.error:
            body["error"] = self.error
        if self.site is not None:
            body["site"] = self.site
        return body


class HealthChecker:
    """Runs every dependency check concurrently, each bounded by ``timeout`` seconds.

    Results are reused for ``cache_seconds`` (measured with ``clock``); callers arriving while a
    check runs wait for that check instead of starting their own.
    """

    def __init__(
        self, db: Database, storage: StorageDriver, redis: Pingable | None = None, *, timeout: float = 3.0,
        cache_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic,
        site: str | None = None, other_sites: Mapping[str, StorageDriver] | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        #: Multi-site: this node's site, and the other sites' storage (probed too, but not required:
        #: another site being down degrades this node, whose own reads fall back only for bytes not here).
        self.site = site
        self.other_sites = dict(other_sites or {})
        self.redis = redis
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.node = uuid.uuid4().hex
        self._last: tuple[float, list[ComponentHealth]] | None = None
        self._lock = asyncio.Lock()

    async def _database(self) -> None:
        async with self.db.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def _storage(self, storage: StorageDriver | None = None) -> None:
        storage = storage or self.storage
        path = health_probe_path(self.node)
        payload = str(time.time()).encode()
        await storage.put(path, payload)
        read = b"".join([chunk async for chunk in storage.read(path)])
        if read != payload:
            raise RuntimeError("the probe read back different bytes than were written")
        await storage.delete(path)

    async def _timed(self, name: str, required: bool, check: Callable[[], Awaitable[None]]) -> ComponentHealth:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure is a finding, reported with its message
            message = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                message = f"no answer within {self.timeout:g}s"
            return ComponentHealth(name, False, required, (time.perf_counter() - started) * 1000, message[:500])
        return ComponentHealth(name, True, required, (time.perf_counter() - started) * 1000)

    def _sited(self, component: ComponentHealth) -> ComponentHealth:
        if component.name == "storage":
            return replace(component, site=self.site)
        if component.name.startswith("storage:"):
            return replace(component, site=component.name.partition(":")[2])
        return component

    def _fresh(self) -> list[ComponentHealth] | None:
        if self._last is None or self.clock() - self._last[0] >= self.cache_seconds:
            return None
        return self._last[1]

    async def check(self, *, strict: bool = False) -> list[ComponentHealth]:
        """Every component's result (at most ``cache_seconds`` old); ``strict`` makes Redis required."""
        results = self._fresh()
        if results is None:
            async with self._lock:  # one probe for every caller of this window
                results = self._fresh()
                if results is None:
                    checks = [self._timed("database", True, self._database),
                              self._timed("storage", True, self._storage)]
                    if self.redis is not None:
                        checks.append(self._timed("redis", False, self.redis.ping))
                    for name, storage in sorted(self.other_sites.items()):
                        checks.append(self._timed(f"storage:{name}", False, partial(self._storage, storage)))
                    results = list(await asyncio.gather(*checks))
                    if self.site is not None:
                        results = [self._sited(c) for c in results]
                    self._last = (self.clock(), results)
        return [replace(c, required=True) if strict and c.name == "redis" else c for c in results]
