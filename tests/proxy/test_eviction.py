"""A proxy project's cache size limit against a real upstream (Debian's docker-registry), on SQLite and PostgreSQL.

Three images pulled through a project whose limit fits two, the first pulled again: the eviction the
third cold pull queued removes the second (the least recently pulled), GC deletes its own blobs and
keeps the layer the others share, the others pull and re-hash, and the second pulled again comes
from the upstream (its access log counts it). Then a GC run evicts by itself, in the same run that
collects. Also: the limit through the REST API (bad input is a 400 naming the field, nothing
saved), cached content counted in the quota, one eviction job per project at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moorage.gc.executions import GC_RUN
from moorage.jobs import HandlerRegistry, JobRunner
from moorage.proxy.eviction import PROXY_EVICT
from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage.driver import PathNotFoundError
from tests.e2e.servers import RegistryProcess
from tests.integration.test_identity_helpers import Idp, make_idp, uid
from tests.proxy.helpers import ACCEPT, access_count, make_proxy, sha256
from tests.proxy.upstream import PushedImage, push_image, random_layer


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_PROXY__TAG_TTL="1h"):
        yield value


async def run_jobs(services: Services, *kinds: str) -> None:
    """Run the queued jobs (of ``kinds`` only, when given) on a test node."""
    handlers = services.job_handlers
    if kinds:
        handlers = HandlerRegistry()
        for kind in kinds:
            handler = services.job_handlers.get(kind)
            assert handler is not None
            handlers.register(kind, handler)
    runner = JobRunner(services.jobs, handlers, owner="test-node")
    while await runner.run_once():
        await asyncio.sleep(0)
    await runner.stop(grace=120)


async def state(services: Services, job_id: int) -> str:
    job = await services.jobs.get(job_id)
    assert job is not None
    return job.state


def sizes_of(image: PushedImage) -> dict[str, int]:
    """Every digest the image stores and its size: the manifest, its config and layers."""
    manifest = json.loads(image.manifest)
    found = {image.manifest_digest: len(image.manifest), manifest["config"]["digest"]: manifest["config"]["size"]}
    found.update({layer["digest"]: layer["size"] for layer in manifest["layers"]})
    return found


async def pull(idp: Idp, project: str, name: str, image: PushedImage, reference: str = "1") -> None:
    """Pull the image by tag as a client does, re-hashing the manifest and every blob."""
    r = await idp.http.get(f"/v2/{project}/{name}/manifests/{reference}", headers=ACCEPT)
    assert r.status_code == 200, r.text
    assert sha256(r.content) == image.manifest_digest
    for digest in [image.config, *image.layers]:
        r = await idp.http.get(f"/v2/{project}/{name}/blobs/{digest}")
        assert r.status_code == 200 and sha256(r.content) == digest
    assert idp.services.proxy is not None
    await idp.services.proxy.blobs.settled()  # stored, linked, promoted, eviction checked


async def stored(services: Services, digest: str) -> bool:
    try:
        await services.storage.stat(blob_path(parse_digest(digest)))
    except PathNotFoundError:
        return False
    return True


async def cached(services: Services, repository: str, digest: str) -> bool:
    """Whether the manifest is in the ordinary store (asked of the service: a GET would fetch it again)."""
    try:
        await services.manifests.get(repository, parse_digest(digest))
    except Exception:  # noqa: BLE001 - MANIFEST_UNKNOWN or NAME_UNKNOWN
        return False
    return True


async def queued_evictions(services: Services, project_id: int) -> list[int]:
    """The project's queued eviction jobs (the database is shared with other tests)."""
    jobs = await services.jobs.list(kind=PROXY_EVICT, state="queued")
    return [job.id for job in jobs if job.payload == {"project_id": project_id}]


async def usage(idp: Idp, project_id: int) -> int:
    r = await idp.api("GET", f"/quotas/{project_id}", idp.admin)
    return int(r.json()["used"]["storage"])


async def test_the_least_recently_pulled_image_is_evicted_collected_and_fetched_again(
    idp: Idp, open_upstream: RegistryProcess
) -> None:
    base = random_layer(20_000)  # shared by all three: counted once, never collected while one needs it
    names = [f"library/{uid('ev')}" for _ in range(3)]
    images = [await asyncio.to_thread(push_image, open_upstream.url, name, "1", [base, random_layer(150_000)],
                                      label=name) for name in names]
    sizes = [sizes_of(image) for image in images]
    shared = {images[0].layers[0]: len(base)}
    own = [{d: s for d, s in found.items() if d not in shared} for found in sizes]
    one, two, three = (sum(found.values()) for found in own)
    limit = len(base) + int(2.6 * max(one, two, three))  # two fit under 90 % of it, three do not fit
    project, _ = await make_proxy(idp, open_upstream.url)
    r = await idp.api("PUT", f"/projects/{project}", idp.admin, json={"metadata": {"proxy_cache_limit": str(limit)}})
    assert r.status_code == 200, r.text
    got = (await idp.api("GET", f"/projects/{project}", idp.admin)).json()
    assert got["metadata"]["proxy_cache_limit"] == str(limit)
    project_id = int(got["project_id"])
    repos = [f"{project}/{name}" for name in names]

    await pull(idp, project, names[0], images[0])
    await pull(idp, project, names[1], images[1])
    # cached content counts in the project's quota, the shared layer once
    assert await usage(idp, project_id) == len(base) + one + two
    assert await queued_evictions(idp.services, project_id) == []
    await pull(idp, project, names[2], images[2])
    assert await usage(idp, project_id) == len(base) + one + two + three > limit
    queued = await queued_evictions(idp.services, project_id)
    assert len(queued) == 1  # the third cold pull queued it
    await pull(idp, project, names[0], images[0])  # warm: now the second is the least recently pulled
    assert await queued_evictions(idp.services, project_id) == queued

    await run_jobs(idp.services, PROXY_EVICT)
    assert await state(idp.services, queued[0]) == "succeeded"
    assert not await cached(idp.services, repos[1], images[1].manifest_digest)
    assert await cached(idp.services, repos[0], images[0].manifest_digest)
    assert await cached(idp.services, repos[2], images[2].manifest_digest)
    assert await usage(idp, project_id) == len(base) + one + three <= limit * 0.9  # unlinked at once

    # GC deletes the evicted image's own blobs and nothing else
    await idp.services.jobs.enqueue(GC_RUN, {"grace_period": "0s"})
    await run_jobs(idp.services, GC_RUN)
    for digest in own[1]:
        assert not await stored(idp.services, digest), digest
    for digest in [*own[0], *own[2], *shared]:
        assert await stored(idp.services, digest), digest
    await pull(idp, project, names[2], images[2])  # (re-hashed: intact; pulled before the first this time)
    await pull(idp, project, names[0], images[0])

    # pulled again, the evicted image comes from the upstream
    layer = f"/v2/{names[1]}/blobs/{images[1].layers[1]}"
    before = access_count(open_upstream.log_path, "GET", layer)
    await pull(idp, project, names[1], images[1])
    assert access_count(open_upstream.log_path, "GET", layer) == before + 1
    assert await cached(idp.services, repos[1], images[1].manifest_digest)

    # over the limit again: a GC run evicts by itself (the third image is now the least recently pulled)
    # and collects in the same run, whether or not the queued eviction job ran first
    queued = await queued_evictions(idp.services, project_id)
    assert len(queued) == 1
    execution = await idp.services.jobs.enqueue(GC_RUN, {"grace_period": "0s"})
    await run_jobs(idp.services, GC_RUN)
    assert await state(idp.services, execution) == "succeeded"
    log = (await idp.api("GET", f"/system/gc/{execution}/log", idp.admin)).text
    assert f"EVICTED {repos[2]}@{images[2].manifest_digest}" in log
    assert not await cached(idp.services, repos[2], images[2].manifest_digest)
    for digest in own[2]:
        assert not await stored(idp.services, digest), digest
    await run_jobs(idp.services, PROXY_EVICT)  # the queued one finds nothing left to do
    assert await state(idp.services, queued[0]) == "succeeded"
    assert await cached(idp.services, repos[0], images[0].manifest_digest)
    assert await cached(idp.services, repos[1], images[1].manifest_digest)
    assert await usage(idp, project_id) == len(base) + one + two


async def test_one_eviction_job_per_project_at_a_time(idp: Idp, open_upstream: RegistryProcess) -> None:
    project, _ = await make_proxy(idp, open_upstream.url)
    project_id = int((await idp.api("GET", f"/projects/{project}", idp.admin)).json()["project_id"])
    proxy = idp.services.proxy
    assert proxy is not None
    # many nodes noticing at once: one job
    ids = await asyncio.gather(*(proxy.evictions.enqueue(project_id) for _ in range(8)))
    assert len(set(ids)) == 1 and ids[0] is not None
    assert await proxy.evictions.enqueue(project_id) == ids[0]  # still queued: the same
    await run_jobs(idp.services, PROXY_EVICT)
    assert ids[0] is not None and await state(idp.services, ids[0]) == "succeeded"
    after = await proxy.evictions.enqueue(project_id)  # finished: the next trigger makes a new one
    assert after is not None and after != ids[0]
    assert await proxy.evictions.enqueue(project_id) == after


async def test_the_cache_limit_through_the_rest_api(idp: Idp, open_upstream: RegistryProcess) -> None:
    r = await idp.api("POST", "/registries", idp.admin, json={"name": uid("ep"), "type": "docker-registry",
                                                               "url": open_upstream.url})
    registry_id = int(r.headers["location"].rsplit("/", 1)[1])
    # set when the proxy project is created, as a string (Harbor's metadata) or an integer
    name = uid("hub")
    r = await idp.api("POST", "/projects", idp.admin, json={
        "project_name": name, "registry_id": registry_id, "metadata": {"proxy_cache_limit": "1073741824"}})
    assert r.status_code == 201, r.text
    assert (await idp.api("GET", f"/projects/{name}", idp.admin)).json()["metadata"]["proxy_cache_limit"] == "1073741824"
    r = await idp.api("PUT", f"/projects/{name}", idp.admin, json={"metadata": {"proxy_cache_limit": -1}})
    assert r.status_code == 200, r.text
    assert (await idp.api("GET", f"/projects/{name}", idp.admin)).json()["metadata"]["proxy_cache_limit"] == "-1"
    # bad input: a 400 naming the field, nothing saved (neither the project nor another change in the request)
    for bad in ("10G", "1e9", " 5", "-2", "1_000", "٣", 1.5, True, "", {"x": 1}):
        other = uid("hub")
        r = await idp.api("POST", "/projects", idp.admin, json={
            "project_name": other, "registry_id": registry_id, "metadata": {"proxy_cache_limit": bad}})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["message"].startswith("metadata.proxy_cache_limit: ")
        assert (await idp.api("GET", f"/projects/{other}", idp.admin)).status_code == 404
        r = await idp.api("PUT", f"/projects/{name}", idp.admin, json={
            "public": True, "metadata": {"proxy_cache_limit": bad}})
        assert r.status_code == 400 and "metadata.proxy_cache_limit" in r.text
        got = (await idp.api("GET", f"/projects/{name}", idp.admin)).json()
        assert got["metadata"]["proxy_cache_limit"] == "-1" and got["public"] is False
    # a regular project has no cache limit: refused, and not shown
    regular = uid("plain")
    r = await idp.api("POST", "/projects", idp.admin, json={"project_name": regular,
                                                             "metadata": {"proxy_cache_limit": "100"}})
    assert r.status_code == 400 and "registry_id" in r.json()["errors"][0]["message"]
    assert (await idp.api("POST", "/projects", idp.admin, json={"project_name": regular})).status_code == 201
    r = await idp.api("PUT", f"/projects/{regular}", idp.admin, json={"metadata": {"proxy_cache_limit": "100"}})
    assert r.status_code == 400 and r.json()["errors"][0]["message"].startswith("metadata.proxy_cache_limit: ")
    assert "proxy_cache_limit" not in (await idp.api("GET", f"/projects/{regular}", idp.admin)).json()["metadata"]


async def test_lowering_the_limit_queues_an_eviction_and_an_immutable_artifact_stays(
    idp: Idp, open_upstream: RegistryProcess
) -> None:
    names = [f"library/{uid('im')}" for _ in range(2)]
    images = [await asyncio.to_thread(push_image, open_upstream.url, name, "1", [random_layer(50_000)], label=name)
              for name in names]
    project, _ = await make_proxy(idp, open_upstream.url)
    project_id = int((await idp.api("GET", f"/projects/{project}", idp.admin)).json()["project_id"])
    for name, image in zip(names, images, strict=True):
        await pull(idp, project, name, image)
    # the older image is held by an immutable tag rule
    r = await idp.api("POST", f"/projects/{project}/immutabletagrules", idp.admin, json={
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "1"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                            "pattern": names[0]}]}})
    assert r.status_code == 201, r.text
    assert await queued_evictions(idp.services, project_id) == []
    r = await idp.api("PUT", f"/projects/{project}", idp.admin, json={"metadata": {"proxy_cache_limit": "1000"}})
    assert r.status_code == 200, r.text
    queued = await queued_evictions(idp.services, project_id)
    assert len(queued) == 1  # a lower limit applies now, not at the next pull
    await run_jobs(idp.services, PROXY_EVICT)
    assert await state(idp.services, queued[0]) == "succeeded"
    assert await cached(idp.services, f"{project}/{names[0]}", images[0].manifest_digest)  # immutable: kept
    assert not await cached(idp.services, f"{project}/{names[1]}", images[1].manifest_digest)
    assert await usage(idp, project_id) == sum(sizes_of(images[0]).values())
