"""Tags re-validated after the TTL, and an upstream that fails (503, 429 with Retry-After, a timeout,
corrupt bytes) behind a real-socket shim: cached content is served with a ``Warning`` and counted,
uncached content fails with an error naming the upstream and what it answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.e2e.servers import RegistryProcess
from tests.integration.test_identity_helpers import Idp, make_idp, uid
from tests.proxy.helpers import ACCEPT, make_proxy
from tests.proxy.shim import Shim
from tests.proxy.upstream import push_image, random_layer


@pytest.fixture
def database_url(sqlite_database: str) -> str:
    """SQLite only: what is tested here is the upstream's behaviour, not the database's (the single-flight
    lease runs on PostgreSQL in test_single_flight.py)."""
    return sqlite_database


@pytest.fixture
def shim(open_upstream: RegistryProcess) -> Iterator[Shim]:
    made = Shim(open_upstream.url).start()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
async def eager(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    """Tags always re-validated (TTL 0), upstream requests time out after 1 s."""
    async for value in make_idp(database_url, tmp_path, MOORAGE_PROXY__TAG_TTL="0s", MOORAGE_PROXY__TIMEOUT="1"):
        yield value


def stale_count(endpoint: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("moorage_proxy_stale_served_total", {"endpoint": endpoint, "reason": reason})
    return value or 0.0


async def endpoint_name(idp: Idp, registry_id: int) -> str:
    return str((await idp.api("GET", f"/registries/{registry_id}", idp.admin)).json()["name"])


async def test_a_tag_is_revalidated_after_the_ttl_and_follows_a_move(
    eager: Idp, shim: Shim, open_upstream: RegistryProcess
) -> None:
    name = f"library/{uid('ttl')}"
    first = await asyncio.to_thread(push_image, open_upstream.url, name, "latest", [random_layer(1000)], label="1")
    project, _ = await make_proxy(eager, shim.url)
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/latest", headers=ACCEPT)
    assert r.headers["docker-content-digest"] == first.manifest_digest
    second = await asyncio.to_thread(push_image, open_upstream.url, name, "latest", [random_layer(1000)], label="2")
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/latest", headers=ACCEPT)
    assert r.status_code == 200 and r.headers["docker-content-digest"] == second.manifest_digest
    assert shim.count("HEAD", f"/v2/{name}/manifests/latest") == 2
    # a manifest by digest is immutable: answered without asking the upstream
    before = len(shim.hits)
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/{first.manifest_digest}", headers=ACCEPT)
    assert r.status_code == 200 and r.content == first.manifest and len(shim.hits) == before


async def test_within_the_ttl_a_tag_is_answered_without_the_upstream(idp: Idp, shim: Shim,
                                                                    open_upstream: RegistryProcess) -> None:
    name = f"library/{uid('ttl')}"
    await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)])
    project, _ = await make_proxy(idp, shim.url)  # the idp fixture's TTL is 1h
    for _ in range(3):
        assert (await idp.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)).status_code == 200
    assert shim.count("HEAD", f"/v2/{name}/manifests/1") == 1


async def test_upstream_5xx_serves_the_cache_with_a_warning_and_fails_uncached_content_by_name(
    eager: Idp, shim: Shim, open_upstream: RegistryProcess
) -> None:
    name = f"library/{uid('down')}"
    image = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)])
    project, registry_id = await make_proxy(eager, shim.url)
    endpoint = await endpoint_name(eager, registry_id)
    assert (await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)).status_code == 200
    shim.mode = "503"
    before = stale_count(endpoint, "unavailable")
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)
    assert r.status_code == 200 and r.content == image.manifest
    assert "Revalidation Failed" in r.headers["warning"] and "503" in r.headers["warning"]
    assert stale_count(endpoint, "unavailable") == before + 1
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/2", headers=ACCEPT)
    assert r.status_code == 502
    error = r.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE" and endpoint in error["message"] and "answered 503" in error["message"]
    r = await eager.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 502 and "answered 503" in r.json()["errors"][0]["message"]


async def test_429_is_passed_on_and_retry_after_is_honoured(
    eager: Idp, shim: Shim, open_upstream: RegistryProcess
) -> None:
    name = f"library/{uid('limit')}"
    image = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)])
    project, _ = await make_proxy(eager, shim.url)
    assert (await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)).status_code == 200
    shim.mode, shim.retry_after = "429", 120
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)
    assert r.status_code == 200 and "rate_limited" in r.headers["warning"]
    hits = len(shim.hits)
    # within Retry-After nothing is sent upstream: cached content is served, the rest is refused with 429
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)
    assert r.status_code == 200 and "warning" in r.headers
    r = await eager.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 100 <= int(r.headers["retry-after"]) <= 120
    assert len(shim.hits) == hits


async def test_an_upstream_timeout_serves_the_cache(eager: Idp, shim: Shim, open_upstream: RegistryProcess) -> None:
    name = f"library/{uid('slow')}"
    await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(1000)])
    project, _ = await make_proxy(eager, shim.url)
    assert (await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)).status_code == 200
    shim.mode, shim.hang_seconds = "hang", 3.0
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/1", headers=ACCEPT)
    assert r.status_code == 200 and "timeout" in r.headers["warning"]
    r = await eager.http.get(f"/v2/{project}/{name}/manifests/other", headers=ACCEPT)
    assert r.status_code == 504 and "in time" in r.json()["errors"][0]["message"]


async def test_corrupt_upstream_bytes_are_never_linked(idp: Idp, shim: Shim, open_upstream: RegistryProcess) -> None:
    name = f"library/{uid('bad')}"
    layer = random_layer(200_000)
    image = await asyncio.to_thread(push_image, open_upstream.url, name, "1", [layer])
    project, _ = await make_proxy(idp, shim.url)
    shim.corrupt = True
    try:
        await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    except Exception:  # noqa: BLE001, S110 - the body breaks off: the client must not get a clean answer
        pass
    # nothing was linked: the next pull fetches again and gets the right bytes
    shim.corrupt = False
    r = await idp.http.get(f"/v2/{project}/{name}/blobs/{image.layers[0]}")
    assert r.status_code == 200 and r.content == layer
    assert shim.count("GET", f"/v2/{name}/blobs/{image.layers[0]}") == 2
