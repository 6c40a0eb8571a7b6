"""A redis-py asyncio client for the configured mode: single server, Sentinel or Cluster.

Cluster: ``redis.asyncio.cluster.RedisCluster`` discovers every node from any one it is given
and follows ``MOVED``/``ASK`` redirections itself (the field's "MOVED errors" came from a
single-node client pointed at a cluster). Every key Moorage writes for one repository carries
the hash tag ``{<repository>}``, so the Lua scripts that touch several keys of a repository
stay on one slot, as Cluster requires.

Sentinel: the client asks the Sentinels for the current master on each (re)connect, so a
failover costs the commands in flight at that moment and nothing else.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from moorage.config import RedisSettings

__all__ = ["RedisClient", "build_client", "parse_address"]

RedisClient: TypeAlias = "Redis | RedisCluster"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → ``(host, port)``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def build_client(settings: RedisSettings) -> RedisClient | None:
    """A client for ``settings`` (``None`` when Redis is not configured). Connects lazily."""
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.timeout,
    }
    mode = settings.mode
    if mode == "single":
        return Redis.from_url(str(settings.url), **timeouts)
    if mode == "sentinel":
        sentinel = settings.sentinel
        watcher = Sentinel(  # type: ignore[no-untyped-call]
            [parse_address(a) for a in sentinel.addresses],
            sentinel_kwargs={**timeouts, "password": sentinel.sentinel_password},
            **timeouts,
        )
        master: Redis = watcher.master_for(sentinel.master, password=sentinel.password, db=sentinel.db, **timeouts)
        return master
    if mode == "cluster":
        cluster = settings.cluster
        return RedisCluster(
            startup_nodes=[ClusterNode(*parse_address(a)) for a in cluster.addresses],
            password=cluster.password,
            # Fail fast: the cache is optional, a request must not wait out many retries.
            cluster_error_retry_attempts=1,
            **timeouts,
        )
    return None
