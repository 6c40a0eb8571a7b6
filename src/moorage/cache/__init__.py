"""Optional Redis: client factory (single, Sentinel, Cluster), entry cache, rate-limit and lock hooks."""

from moorage.cache.client import RedisClient, build_client
from moorage.cache.factory import cache_from_settings
from moorage.cache.fence import GenerationFence
from moorage.cache.store import RegistryCache
from moorage.cache.wrappers import CachedBlobService, CachedManifestStore, CachedRepositories

__all__ = [
    "CachedBlobService",
    "CachedManifestStore",
    "CachedRepositories",
    "GenerationFence",
    "RedisClient",
    "RegistryCache",
    "build_client",
    "cache_from_settings",
]
