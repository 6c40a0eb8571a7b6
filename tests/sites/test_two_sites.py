"""Two sites on one database (docs/multi-site.md), with real object stores: site a on Ceph RGW S3
behind a TCP gate, site b on the OpenStack Swift SAIO."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from moorage.checks import run_checks
from moorage.db.jobs_tables import jobs
from moorage.db.site_tables import blob_sites
from moorage.db.tables import blobs
from moorage.gc.collector import GarbageCollector, GcOptions
from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.storage import PathNotFoundError
from tests.integration.oci_client import OCI_MANIFEST, error_code, push_image
from tests.services.fixtures import Service
from tests.services.tcpgate import TcpGate
from tests.sites.conftest import TwoSites, close_sites, open_sites, run_jobs, site_config
from tests.storage.objectstores import ensure_bucket, s3_settings, unique


async def holders(two: TwoSites, digest: str) -> set[str]:
    async with two.a.services.db.read() as conn:
        rows = await conn.execute(
            select(blob_sites.c.site).join(blobs, blobs.c.id == blob_sites.c.blob_id).where(blobs.c.digest == digest)
        )
        return set(rows.scalars())


async def copy_jobs(two: TwoSites, digest: str) -> list[str]:
    async with two.a.services.db.read() as conn:
        blob_id = (await conn.execute(select(blobs.c.id).where(blobs.c.digest == digest))).scalar_one()
        rows = await conn.execute(select(jobs.c.dedup_key).where(jobs.c.dedup_key.like(f"site.copy:{blob_id}:%")))
        return sorted(rows.scalars())


async def stored_at(two: TwoSites, site: str, digest: str) -> bool:
    sites = two.a.services.sites
    assert sites is not None
    try:
        await sites.stores[site].storage.stat(blob_path(parse_digest(digest)))
    except PathNotFoundError:
        return False
    return True


async def test_pull_at_b_before_the_copy_is_served_and_the_copy_runs_once(two_sites: TwoSites) -> None:
    two = two_sites
    layer = os.urandom(300_000)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest_digest, _ = await push_image(two.a.client, "proj/app", "v1", [layer])
    # The push recorded site a and queued one copy to b, whichever node published.
    assert await holders(two, layer_digest) == {"a"}
    assert two.b.services.sites is not None
    blob_id, _ = await two.b.services.sites.holders(parse_digest(layer_digest))
    assert await copy_jobs(two, layer_digest) == [f"site.copy:{blob_id}:b"]
    assert not await stored_at(two, "b", layer_digest)

    # Tags and catalog are the database's: b lists what a pushed, and can pull it now.
    tags = await two.b.client.get("/v2/proj/app/tags/list")
    assert tags.json()["tags"] == ["v1"]
    manifest = await two.b.client.get("/v2/proj/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == manifest_digest
    pulled = await two.b.client.get(f"/v2/proj/app/blobs/{layer_digest}")
    assert pulled.status_code == 200
    assert hashlib.sha256(pulled.content).hexdigest() == layer_digest.removeprefix("sha256:")
    ranged = await two.b.client.get(f"/v2/proj/app/blobs/{layer_digest}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == layer[10:20]
    # The fallback read asked for the same copy: still one job per blob and site.
    assert len(await copy_jobs(two, layer_digest)) == 1

    assert await run_jobs(two.b.services) >= 1
    assert await holders(two, layer_digest) == {"a", "b"}
    assert await stored_at(two, "b", layer_digest)
    assert await run_jobs(two.b.services) == 0  # nothing left: copied once

    # The same layer pushed at b before its copy ran: b stores it itself, the row never stops
    # being active, and the copy job queued by a's push finds b holding it (still one job).
    shared = os.urandom(150_000)
    shared_digest = "sha256:" + hashlib.sha256(shared).hexdigest()
    await push_image(two.a.client, "proj/shared", "v1", [shared])
    await push_image(two.b.client, "proj/shared-b", "v1", [shared])
    assert await holders(two, shared_digest) == {"a", "b"} and await stored_at(two, "b", shared_digest)
    await run_jobs(two.a.services)
    assert len(await copy_jobs(two, shared_digest)) == 1
    # A push at b works too and is copied to a.
    other = os.urandom(1000)
    await push_image(two.b.client, "proj/other", "v1", [other])
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    assert await holders(two, other_digest) == {"b"}
    await run_jobs(two.a.services)
    assert await holders(two, other_digest) == {"a", "b"} and await stored_at(two, "a", other_digest)


async def test_bytes_lost_at_b_after_their_copy_are_served_from_a_and_copied_again(two_sites: TwoSites) -> None:
    two = two_sites
    layer = os.urandom(90_000)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    await push_image(two.a.client, "proj/lost", "v1", [layer])
    assert await run_jobs(two.b.services) >= 1 and await stored_at(two, "b", layer_digest)
    assert two.b.services.sites is not None
    await two.b.services.sites.stores["b"].storage.delete(blob_path(parse_digest(layer_digest)))
    pulled = await two.b.client.get(f"/v2/proj/lost/blobs/{layer_digest}")
    assert pulled.status_code == 200 and pulled.content == layer
    assert await run_jobs(two.b.services) == 1  # the finished copy job was queued again
    assert await stored_at(two, "b", layer_digest) and len(await copy_jobs(two, layer_digest)) == 1


async def test_garbage_collection_deletes_the_bytes_at_every_site(two_sites: TwoSites) -> None:
    two = two_sites
    layer = os.urandom(120_000)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest_digest, _ = await push_image(two.a.client, "proj/collected", "v1", [layer])
    await run_jobs(two.b.services)
    assert await stored_at(two, "a", layer_digest) and await stored_at(two, "b", layer_digest)
    deleted = await two.a.client.delete(f"/v2/proj/collected/manifests/{manifest_digest}")
    assert deleted.status_code == 202
    gc_storage = two.a.services.gc_storage
    assert gc_storage is not None
    report = await GarbageCollector(two.a.services.db, gc_storage, GcOptions(grace=timedelta(0))).run()
    assert layer_digest in {digest for digest, _ in report.blobs}
    assert not await stored_at(two, "a", layer_digest) and not await stored_at(two, "b", layer_digest)
    assert await holders(two, layer_digest) == set()


async def test_site_a_storage_down(two_sites: TwoSites) -> None:
    two = two_sites
    copied, only_at_a = os.urandom(200_000), os.urandom(200_000)
    await push_image(two.a.client, "proj/copied", "v1", [copied])
    await run_jobs(two.b.services)
    await push_image(two.a.client, "proj/only-a", "v1", [only_at_a])
    copied_digest = "sha256:" + hashlib.sha256(copied).hexdigest()
    only_digest = "sha256:" + hashlib.sha256(only_at_a).hexdigest()

    two.gate.close()
    try:
        still = await two.b.client.get(f"/v2/proj/copied/blobs/{copied_digest}")
        assert still.status_code == 200 and still.content == copied
        refused = await two.b.client.get(f"/v2/proj/only-a/blobs/{only_digest}")
        assert refused.status_code == 503 and error_code(refused) == "UNAVAILABLE"
        message = refused.json()["errors"][0]["message"]
        assert "site 'a' storage (s3, sites.a.storage)" in message, message
        assert refused.json()["errors"][0]["detail"]["unavailable_sites"] == ["a"]
        health = await two.b.client.get("/api/v2.0/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and health.json()["site"] == "b"
        assert health.json()["degraded_sites"] == ["a"]
        # moorage check names every site's storage, and what to fix.
        found = {r.name: r for r in await run_checks(two.b.services.settings)}
        assert not found["site a: storage write"].ok and "sites.a.storage" in found["site a: storage write"].fix
        assert found["site b: storage write"].ok and found["site b: storage delete"].ok
        # The copy cannot run either; it stays queued for a later attempt.
        await run_jobs(two.b.services)
        assert await holders(two, only_digest) == {"a"}
    finally:
        two.gate.open()
    back = await two.b.client.get(f"/v2/proj/only-a/blobs/{only_digest}")
    assert back.status_code == 200 and back.content == only_at_a


async def test_a_delete_at_one_site_reaches_the_other_sites_own_redis(
    tmp_path: Path, postgres_database: str, ceph_rgw: Service, swift_saio: Service, gate: TcpGate
) -> None:
    bucket = unique("sites-a")
    ensure_bucket(s3_settings(ceph_rgw, bucket))
    config = site_config(tmp_path, postgres_database, ceph_rgw, swift_saio, gate, bucket,
                         unique("sites-b"), redis=True)
    two = await open_sites(tmp_path, config, gate)
    try:
        assert two.a.services.cache is not None and two.b.services.cache is not None
        assert two.a.services.cache.client is not two.b.services.cache.client
        digest, _ = await push_image(two.a.client, "proj/cached", "v1", [os.urandom(100)])
        for _ in range(2):  # the second read is served from b's own Redis
            seen = await two.b.client.get("/v2/proj/cached/manifests/v1", headers={"Accept": OCI_MANIFEST})
            assert seen.status_code == 200
        deleted = await two.a.client.delete(f"/v2/proj/cached/manifests/{digest}")
        assert deleted.status_code == 202
        gone = await two.b.client.get("/v2/proj/cached/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert gone.status_code == 404, gone.text
        by_digest = await two.b.client.get(f"/v2/proj/cached/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert by_digest.status_code == 404
    finally:
        await close_sites(two)
