"""``sites_from_settings``: the one place that turns ``site``/``sites`` into a :class:`Sites`."""

from __future__ import annotations

from pathlib import Path

from moorage.config import RedisSettings, Settings
from moorage.db.session import Database
from moorage.jobs.queue import JobQueue
from moorage.net.tls import TrustStore
from moorage.sites.model import Sites, SiteStore
from moorage.storage import StorageDriver
from moorage.storage.factory import build_driver

__all__ = ["peer_redis", "sites_from_settings"]


def sites_from_settings(
    settings: Settings, db: Database, queue: JobQueue, own_storage: StorageDriver, trust: TrustStore
) -> Sites | None:
    """Every site's storage (this node's own is ``own_storage``), or ``None`` for a single-site config.

    Other sites' drivers connect lazily, so a node starts while another site's storage is down
    (``/api/v2.0/health`` and ``moorage check`` then name it).
    """
    if settings.site is None:
        return None
    stores: dict[str, SiteStore] = {}
    for name, site in settings.sites.items():
        storage = own_storage if name == settings.site else build_driver(
            site.storage.driver_name,
            site.storage.driver_settings,
            Path(settings.data_dir),
            redirect=not site.storage.redirect.disable,
            trust=trust,
            metrics=settings.metrics.enabled,
        )
        stores[name] = SiteStore(name, storage, site.storage.driver_name)
    return Sites(db, queue, settings.site, stores, fallback=settings.sites[settings.site].fallback)


def peer_redis(settings: Settings) -> list[RedisSettings]:
    """The other sites' Redis that are not this node's (their caches must hear of our deletes)."""
    if settings.site is None:
        return []
    own = settings.redis
    peers: list[RedisSettings] = []
    for name in settings.sites:
        redis = settings.site_redis(name)
        if name != settings.site and redis.mode != "none" and redis != own and redis not in peers:
            peers.append(redis)
    return peers
