"""``cache_from_settings``: the one place that turns ``redis:`` settings into a ``RegistryCache``."""

from __future__ import annotations

from collections.abc import Sequence

from moorage.cache.client import build_client
from moorage.cache.fence import GenerationFence
from moorage.cache.store import RegistryCache
from moorage.config import RedisSettings
from moorage.db.session import Database

__all__ = ["cache_from_settings"]


def cache_from_settings(
    settings: RedisSettings, db: Database, peers: Sequence[RedisSettings] = ()
) -> RegistryCache | None:
    """The cache for ``settings``, or ``None`` when no Redis is configured.

    ``peers`` are the other sites' own Redis (multi-site): invalidations are sent to them too.
    """
    client = build_client(settings)
    if client is None:
        return None
    fence = GenerationFence(db, lease=settings.fence_lease)
    peer_clients = []
    for peer in peers:
        peer_client = build_client(peer)
        if peer_client is not None:
            peer_clients.append((peer_client, peer.key_prefix))
    return RegistryCache(
        client, fence, prefix=settings.key_prefix, ttl=settings.ttl, deadline=settings.timeout * 3, peers=peer_clients
    )
