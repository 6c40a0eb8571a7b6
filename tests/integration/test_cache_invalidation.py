"""Every change that moves or removes something is seen through the Redis cache at once.

Runs against the real Redis of the test environment (MOORAGE_TEST_REDIS_URL, started by
scripts/test.sh when missing). The guard test fails when ManifestStore grows a mutating
method that the cached wrapper does not override, the bug class this file was written for.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moorage.app import create_app
from moorage.cache.wrappers import CachedBlobService, CachedManifestStore, CachedRepositories
from moorage.registry.blobs import BlobService
from moorage.registry.digests import parse_digest
from moorage.registry.interfaces import Blobs, Manifests, Repositories
from moorage.registry.manifest_store import ManifestStore
from moorage.registry.repository_service import RepositoryService
from moorage.services import Services
from tests.conftest import skip_or_fail
from tests.integration.conftest import make_settings, unique_name
from tests.integration.manifest_wrappers import Counting
from tests.integration.oci_client import push_image

REDIS_URL = os.environ.get("MOORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: ManifestStore methods that change what a read returns.
MUTATORS = {"put", "delete", "tag", "delete_tag"}


def _public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, inspect.iscoroutinefunction) if not n.startswith("_")}


def test_the_cached_store_overrides_every_mutator() -> None:
    public = _public(ManifestStore)
    readers = {"get", "tags", "catalog", "referrers", "read_payload"}
    assert public - readers == MUTATORS, (
        "a new ManifestStore method: classify it here and, if it mutates, override it in CachedManifestStore"
    )
    for name in MUTATORS:
        assert name in CachedManifestStore.__dict__, f"CachedManifestStore does not invalidate on {name}()"


@pytest.mark.parametrize(
    ("protocol", "service", "wrapper"),
    [
        (Manifests, ManifestStore, CachedManifestStore),
        (Blobs, BlobService, CachedBlobService),
        (Repositories, RepositoryService, CachedRepositories),
    ],
)
def test_each_wrapper_forwards_the_whole_protocol(protocol: type, service: type, wrapper: type) -> None:
    """A wrapper is the Protocol itself (it forwards every method), never a subclass that rebuilds its inner."""
    assert _public(service) == _public(protocol), f"{service.__name__} and {protocol.__name__} differ"
    assert _public(protocol) <= set(wrapper.__dict__), f"{wrapper.__name__} does not forward every method"
    assert not issubclass(wrapper, service)


@pytest.fixture
async def cached(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    settings = make_settings(database_url, tmp_path, MOORAGE_REDIS_URL=REDIS_URL)
    services = Services.from_settings(settings)
    assert isinstance(services.manifests, CachedManifestStore)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as http:
        yield http, services
    await services.aclose()


async def test_moving_a_tag_is_seen_at_once(cached: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = cached
    name = unique_name()
    first, _ = await push_image(client, name, "stable", [b"one"])
    second, _ = await push_image(client, name, "next", [b"two"])
    for _ in range(2):  # the second read is served from the cache
        assert (await client.get(f"/v2/{name}/manifests/stable")).headers["docker-content-digest"] == first
    await services.manifests.tag(name, "stable", parse_digest(second))
    assert (await client.get(f"/v2/{name}/manifests/stable")).headers["docker-content-digest"] == second


async def test_deleted_manifest_is_gone_at_once(cached: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = cached
    name = unique_name()
    digest, _ = await push_image(client, name, "t", [b"three"])
    for _ in range(2):
        assert (await client.get(f"/v2/{name}/manifests/{digest}")).status_code == 200
    assert (await client.delete(f"/v2/{name}/manifests/{digest}")).status_code == 202
    assert (await client.get(f"/v2/{name}/manifests/{digest}")).status_code == 404
    assert (await client.get(f"/v2/{name}/manifests/t")).status_code == 404


async def test_other_wrappers_stay_in_the_chain(cached: tuple[httpx.AsyncClient, Services]) -> None:
    """The cache wraps whatever it is given and may itself be wrapped; nothing in the chain is dropped."""
    client, services = cached
    assert services.cache is not None
    name = unique_name()
    first, _ = await push_image(client, name, "t", [b"chain one"])
    second, _ = await push_image(client, name, "u", [b"chain two"])
    store = ManifestStore(
        services.db, services.storage, max_bytes=services.settings.limits.manifest_max_bytes, guard=services.guard
    )
    below = Counting(store)
    cache_over_counter = CachedManifestStore(below, services.cache)
    for _ in range(3):
        assert (await cache_over_counter.get(name, "t")).digest == first
    assert below.gets == 1  # the counter saw the miss; the cache answered the rest

    above = Counting(CachedManifestStore(store, services.cache))
    await above.tag(name, "t", parse_digest(second))  # through both: the cache invalidates
    assert (await above.get(name, "t")).digest == second and above.gets == 1
    assert (await cache_over_counter.get(name, "t")).digest == second


async def test_cache_hits_and_misses_are_counted_in_metrics(cached: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = cached
    name = unique_name()
    await push_image(client, name, "m", [b"metrics one"])

    def lookups(text: str, result: str) -> float:
        line = f'moorage_cache_lookups_total{{kind="manifest",result="{result}"}} '
        return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))

    before = (await client.get("/metrics")).text
    for _ in range(3):  # a miss fills the entry, the next two are hits
        assert (await client.get(f"/v2/{name}/manifests/m")).status_code == 200
    after = (await client.get("/metrics")).text
    assert lookups(after, "miss") - lookups(before, "miss") >= 1
    assert lookups(after, "hit") - lookups(before, "hit") >= 2
