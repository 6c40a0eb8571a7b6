"""Each GC rule, on SQLite and PostgreSQL, through the registry's HTTP API and a real GC run."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from moorage.config import Settings
from moorage.db.tables import blobs
from moorage.gc.collector import GarbageCollector, GcOptions
from moorage.gc.job import GC_RUN, enqueue_gc
from moorage.gc.orphans import find_orphans
from moorage.jobs import JobRunner
from moorage.registry.digests import parse_digest
from moorage.registry.gc_fence import ACTIVE, DELETING, PENDING
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage import PathNotFoundError, StorageError
from moorage.storage.checked import CheckedDriver
from tests.gc.conftest import age_everything, collect
from tests.integration.oci_client import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    error_code,
    push_blob,
    push_image,
)


async def stored(services: Services, digest: str) -> bool:
    try:
        await services.storage.stat(blob_path(parse_digest(digest)))
    except PathNotFoundError:
        return False
    return True


async def state_of(services: Services, digest: str) -> str | None:
    async with services.db.read() as conn:
        result = await conn.execute(select(blobs.c.state).where(blobs.c.digest == digest))
        return result.scalar_one_or_none()


async def pull_all(client: httpx.AsyncClient, name: str, tag: str) -> None:
    """Pull a tagged image and re-hash every blob it names (and the manifest itself)."""
    response = await client.get(
        f"/v2/{name}/manifests/{tag}", headers={"Accept": f"{OCI_MANIFEST},{OCI_INDEX}"}
    )
    assert response.status_code == 200, response.text
    manifest = json.loads(response.content)
    for child in manifest.get("manifests", []):
        got = await client.get(f"/v2/{name}/manifests/{child['digest']}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200 and digest_of(got.content) == child["digest"]
        await pull_blobs(client, name, json.loads(got.content))
    await pull_blobs(client, name, manifest)


async def pull_blobs(client: httpx.AsyncClient, name: str, manifest: dict[str, object]) -> None:
    config = manifest.get("config")
    layers = manifest.get("layers", [])
    assert isinstance(layers, list)
    for item in ([config] if isinstance(config, dict) else []) + layers:
        blob = await client.get(f"/v2/{name}/blobs/{item['digest']}")
        assert blob.status_code == 200, blob.text
        assert digest_of(blob.content) == item["digest"]


async def push_manifest(
    client: httpx.AsyncClient, name: str, reference: str, manifest: dict[str, object]
) -> str:
    body = json.dumps(manifest).encode()
    media_type = str(manifest["mediaType"])
    response = await client.put(
        f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )
    assert response.status_code == 201, response.text
    return digest_of(body)


async def test_unreferenced_blobs_go_referenced_ones_stay(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    layer, stray = os.urandom(3000), os.urandom(2000)
    await push_image(gc_client, "app/one", "v1", [layer])
    stray_digest = await push_blob(gc_client, "app/one", stray)
    await age_everything(gc_services.db)
    report = await collect(gc_services)
    assert report.blobs == [(stray_digest, len(stray))]
    assert report.bytes_freed == 2000 and report.manifests == []
    assert not await stored(gc_services, stray_digest) and await state_of(gc_services, stray_digest) is None
    assert (await gc_client.head(f"/v2/app/one/blobs/{stray_digest}")).status_code == 404
    await pull_all(gc_client, "app/one", "v1")
    again = await collect(gc_services)  # nothing left to do
    assert again.blobs == [] and again.manifests == []


async def test_grace_window_keeps_young_blobs_and_fresh_links(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    young = await push_blob(gc_client, "app/young", os.urandom(100))
    assert (await collect(gc_services)).blobs == []  # pushed just now: inside the 2 h window
    relinked = await push_blob(gc_client, "app/young", os.urandom(100))
    await age_everything(gc_services.db)
    mount = await gc_client.post(
        "/v2/app/other/blobs/uploads/", params={"mount": relinked, "from": "app/young"}
    )
    assert mount.status_code == 201, mount.text  # a fresh link (a mount) protects an old blob
    report = await collect(gc_services)
    assert report.blobs == [(young, 100)]
    assert await state_of(gc_services, relinked) == ACTIVE
    # The same blob pushed again refreshes its link: also kept.
    await age_everything(gc_services.db)
    await push_blob(
        gc_client, "app/young", await (await gc_client.get(f"/v2/app/young/blobs/{relinked}")).aread()
    )
    assert (await collect(gc_services)).blobs == []


async def test_a_reference_from_any_repository_keeps_a_blob(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    shared = os.urandom(500)
    await push_blob(gc_client, "a/linked-only", shared)
    await push_image(gc_client, "b/uses-it", "v1", [shared])
    await age_everything(gc_services.db)
    report = await collect(gc_services)
    assert report.blobs == []
    pulled = await gc_client.get(f"/v2/a/linked-only/blobs/{digest_of(shared)}")
    assert pulled.status_code == 200 and pulled.content == shared


async def test_untagged_manifests_and_what_keeps_them(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    name = "app/untagged"
    shared, only_old, child_layer, lone_layer = (os.urandom(400 + i) for i in range(4))
    kept_digest, kept_body = await push_image(gc_client, name, "v1", [shared])
    old_digest, _ = await push_image(gc_client, name, None, [shared, only_old])  # untagged: goes
    # A tagged index keeps its untagged child.
    child_digest, child_body = await push_image(gc_client, name, None, [child_layer])
    await push_manifest(
        gc_client,
        name,
        "multi",
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, child_body)]},
    )
    # An untagged index and its untagged child both go.
    lone_digest, lone_body = await push_image(gc_client, name, None, [lone_layer])
    lone_index = await push_manifest(
        gc_client,
        name,
        digest_of(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [descriptor(OCI_MANIFEST, lone_body)],
                }
            ).encode()
        ),
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, lone_body)]},
    )
    # A referrer (signature) of the tagged image stays with it; one of a deleted image goes with it.
    empty = b"{}"
    await push_blob(gc_client, name, empty)
    signature = await push_manifest(
        gc_client,
        name,
        digest_of(json.dumps(_referrer(kept_body, empty)).encode()),
        _referrer(kept_body, empty),
    )
    old_body = (
        await gc_client.get(f"/v2/{name}/manifests/{old_digest}", headers={"Accept": OCI_MANIFEST})
    ).content
    orphan_sig = await push_manifest(
        gc_client,
        name,
        digest_of(json.dumps(_referrer(old_body, empty)).encode()),
        _referrer(old_body, empty),
    )
    # A tagged referrer keeps its untagged subject.
    subject_digest, subject_body = await push_image(gc_client, name, None, [os.urandom(300)])
    await push_manifest(gc_client, name, "sbom", _referrer(subject_body, empty))
    await age_everything(gc_services.db)

    assert (await collect(gc_services)).manifests == []  # not asked: untagged manifests stay
    dry = await collect(gc_services, delete_untagged=True, dry_run=True)
    report = await collect(gc_services, delete_untagged=True)
    gone = {old_digest, lone_digest, lone_index, orphan_sig}
    assert {digest for _, digest in report.manifests} == gone
    assert sorted(dry.manifests) == sorted(report.manifests) and sorted(dry.blobs) == sorted(report.blobs)
    assert {digest for digest, _ in report.blobs} == gone | {digest_of(only_old), digest_of(lone_layer)}
    for digest in gone:
        response = await gc_client.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 404
        assert not await stored(gc_services, digest)
    for digest in (kept_digest, child_digest, signature, subject_digest):
        response = await gc_client.get(
            f"/v2/{name}/manifests/{digest}", headers={"Accept": f"{OCI_MANIFEST}"}
        )
        assert response.status_code == 200, digest
    await pull_all(gc_client, name, "v1")
    await pull_all(gc_client, name, "multi")
    await pull_all(gc_client, name, "sbom")
    referrers = (await gc_client.get(f"/v2/{name}/referrers/{kept_digest}")).json()["manifests"]
    assert [item["digest"] for item in referrers] == [signature]


def _referrer(subject_body: bytes, empty: bytes) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor("application/vnd.oci.empty.v1+json", empty)],
        "subject": descriptor(OCI_MANIFEST, subject_body),
    }


async def test_young_untagged_manifests_stay(gc_client: httpx.AsyncClient, gc_services: Services) -> None:
    digest, _ = await push_image(gc_client, "app/fresh", None, [os.urandom(100)])
    report = await collect(gc_services, delete_untagged=True)
    assert report.manifests == [] and report.blobs == []
    assert (
        await gc_client.head(f"/v2/app/fresh/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    ).status_code == 200


async def test_dry_run_prints_what_a_real_run_deletes_and_deletes_nothing(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    for index in range(3):
        await push_blob(gc_client, "app/dry", os.urandom(100 + index))
    await push_image(gc_client, "app/dry", "v1", [os.urandom(50)])
    await age_everything(gc_services.db)
    dry = await collect(gc_services, dry_run=True)
    assert len(dry.blobs) == 3 and dry.dry_run
    assert dry.summary() == "would delete 0 manifest(s) and 3 blob(s), 303 bytes"
    for digest, _ in dry.blobs:
        assert await stored(gc_services, digest) and await state_of(gc_services, digest) == ACTIVE
    real = await collect(gc_services)
    assert sorted(real.blobs) == sorted(dry.blobs)
    assert real.summary() == "deleted 0 manifest(s) and 3 blob(s), 303 bytes"


async def mark_deleting(services: Services, digest: str) -> None:
    """What a GC run that marked the blob and then died leaves behind."""
    async with services.db.write() as conn:
        await conn.execute(update(blobs).where(blobs.c.digest == digest).values(state=DELETING))


async def test_a_deleting_blob_is_invisible_refused_and_pushed_again(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    layer = os.urandom(1000)
    digest = await push_blob(gc_client, "app/race", layer)
    await mark_deleting(gc_services, digest)
    assert (await gc_client.head(f"/v2/app/race/blobs/{digest}")).status_code == 404
    mount = await gc_client.post(
        "/v2/app/elsewhere/blobs/uploads/", params={"mount": digest, "from": "app/race"}
    )
    assert mount.status_code == 202  # not mounted: the client uploads instead
    config = b"{}"
    await push_blob(gc_client, "app/race", config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }
    refused = await gc_client.put(
        "/v2/app/race/manifests/v1",
        content=json.dumps(manifest).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert refused.status_code == 400 and error_code(refused) == "MANIFEST_BLOB_UNKNOWN"
    # GC had already deleted the bytes when it died: pushing the blob again really publishes it.
    await gc_services.storage.delete(blob_path(parse_digest(digest)))
    await push_blob(gc_client, "app/race", layer)
    assert await state_of(gc_services, digest) == ACTIVE and await stored(gc_services, digest)
    await push_manifest(gc_client, "app/race", "v1", manifest)
    await pull_all(gc_client, "app/race", "v1")


async def test_a_chunked_upload_over_a_deleting_blob_publishes_again(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    layer = os.urandom(5000)
    digest = await push_blob(gc_client, "app/chunked", layer)
    await mark_deleting(gc_services, digest)
    await gc_services.storage.delete(blob_path(parse_digest(digest)))
    start = await gc_client.post("/v2/app/chunked/blobs/uploads/")
    location = start.headers["location"]
    patched = await gc_client.patch(
        location, content=layer[:2000], headers={"Content-Type": "application/octet-stream"}
    )
    assert patched.status_code == 202
    done = await gc_client.put(patched.headers["location"], params={"digest": digest}, content=layer[2000:])
    assert done.status_code == 201, done.text
    pulled = await gc_client.get(f"/v2/app/chunked/blobs/{digest}")
    assert pulled.status_code == 200 and pulled.content == layer


class _FailingDeletes(CheckedDriver):
    """Real storage whose deletes fail after ``allowed`` of them: a GC killed half-way through its sweep."""

    def __init__(self, inner: CheckedDriver, allowed: int) -> None:
        super().__init__(inner.inner)
        self.allowed = allowed

    async def delete(self, path: str) -> None:
        if path.startswith("blobs/"):
            if self.allowed <= 0:
                raise StorageError("storage went away", path=path)
            self.allowed -= 1
        await super().delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        blob_paths = [path for path in paths if path.startswith("blobs/")]
        if len(blob_paths) > self.allowed:  # the allowed ones go, then storage goes away
            await super().delete_many(blob_paths[: self.allowed])
            self.allowed = 0
            raise StorageError("storage went away", path=blob_paths[0])
        self.allowed -= len(blob_paths)
        await super().delete_many(paths)


async def test_a_run_that_dies_mid_sweep_is_finished_by_the_next(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    digests = [await push_blob(gc_client, "app/crash", os.urandom(200 + i)) for i in range(4)]
    await push_image(gc_client, "app/crash", "v1", [os.urandom(10)])
    await age_everything(gc_services.db)
    dying = GarbageCollector(gc_services.db, _FailingDeletes(gc_services.storage, 2), GcOptions(batch_size=2))
    with pytest.raises(StorageError):
        await dying.run()
    states = [await state_of(gc_services, digest) for digest in digests]
    assert states == [None, None, DELETING, DELETING]  # the first batch finished, the second rolled back
    for digest in digests:
        assert (await gc_client.head(f"/v2/app/crash/blobs/{digest}")).status_code == 404
    dry = await collect(gc_services, dry_run=True)
    assert sorted(digest for digest, _ in dry.blobs) == sorted(digests[2:])
    report = await collect(gc_services)
    assert sorted(digest for digest, _ in report.blobs) == sorted(digests[2:])
    for digest in digests:
        assert not await stored(gc_services, digest) and await state_of(gc_services, digest) is None
    await pull_all(gc_client, "app/crash", "v1")


async def test_a_publisher_that_died_leaves_a_pending_row_gc_reaps(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    digest = await push_blob(gc_client, "app/pending", os.urandom(300))
    async with gc_services.db.write() as conn:
        await conn.execute(update(blobs).where(blobs.c.digest == digest).values(state=PENDING))
    assert (await gc_client.head(f"/v2/app/pending/blobs/{digest}")).status_code == 404
    assert (await collect(gc_services)).blobs == []  # a publisher may still be at work
    old = datetime.now(UTC) - timedelta(hours=3)
    async with gc_services.db.write() as conn:
        await conn.execute(update(blobs).where(blobs.c.digest == digest).values(state_at=old))
    assert (await collect(gc_services)).blobs == [(digest, 300)]
    assert not await stored(gc_services, digest)


async def test_gc_runs_as_a_job(gc_client: httpx.AsyncClient, gc_services: Services) -> None:
    digest = await push_blob(gc_client, "app/job", os.urandom(100))
    await age_everything(gc_services.db)
    job_id = await enqueue_gc(gc_services.jobs)
    runner = JobRunner(gc_services.jobs, gc_services.job_handlers, owner="test-node")
    other = JobRunner(gc_services.jobs, gc_services.job_handlers, owner="other-node")
    assert await runner.run_once() == 1
    assert await other.run_once() == 0  # one execution cluster-wide
    await runner.stop(grace=30)
    job = await gc_services.jobs.get(job_id)
    assert job is not None and job.kind == GC_RUN and job.state == "succeeded", job
    assert not await stored(gc_services, digest) and await state_of(gc_services, digest) is None


async def test_a_read_only_registry_is_not_collected(gc_settings: Settings, gc_services: Services) -> None:
    """Read-only mode (a storage migration, a restore) refuses a real run; a dry run still answers."""
    digest = await gc_services.uploads.monolithic("app/ro", parse_digest(digest_of(b"x" * 10)), _one(b"x" * 10), 10)
    assert digest == 10
    await age_everything(gc_services.db)
    read_only = gc_settings.model_copy(deep=True)
    read_only.storage.maintenance.readonly.enabled = True
    frozen = Services.from_settings(read_only)
    try:
        job_id = await enqueue_gc(frozen.jobs)
        runner = JobRunner(frozen.jobs, frozen.job_handlers, owner="ro-node")
        assert await runner.run_once() == 1
        await runner.stop(grace=30)
        job = await frozen.jobs.get(job_id)
        assert job is not None and job.state == "queued" and "read-only" in (job.last_error or "")
        dry_id = await enqueue_gc(frozen.jobs, dry_run=True)
        assert await runner.run_once() >= 1
        await runner.stop(grace=30)
        dry = await frozen.jobs.get(dry_id)
        assert dry is not None and dry.state == "succeeded"
    finally:
        await frozen.aclose()
    assert await state_of(gc_services, digest_of(b"x" * 10)) == ACTIVE


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_orphan_bytes_are_swept_only_when_asked_and_old(gc_client: httpx.AsyncClient, gc_services: Services) -> None:
    """Bytes no row knows (a crash, an import) go with --sweep-orphans once older than the grace window."""
    orphan = os.urandom(700)
    orphan_digest = parse_digest(digest_of(orphan))
    await gc_services.storage.put(blob_path(orphan_digest), orphan)
    known = await push_blob(gc_client, "app/orphans", os.urandom(50))
    await push_image(gc_client, "app/orphans", "v1", [os.urandom(60)])
    later = datetime.now(UTC) + timedelta(hours=3)

    def clock() -> datetime:
        return later

    young = await collect(gc_services, sweep_orphans=True)  # written just now: inside the window
    assert young.blobs == [] and await stored(gc_services, str(orphan_digest))
    not_asked = await GarbageCollector(gc_services.db, gc_services.storage, GcOptions(dry_run=True), clock=clock).run()
    assert (str(orphan_digest), 700) not in not_asked.blobs
    options = GcOptions(sweep_orphans=True, dry_run=True)
    dry = await GarbageCollector(gc_services.db, gc_services.storage, options, clock=clock).run()
    assert sorted(dry.blobs) == sorted([(str(orphan_digest), 700), (known, 50)])
    assert await stored(gc_services, str(orphan_digest)) and await state_of(gc_services, str(orphan_digest)) is None
    options = GcOptions(sweep_orphans=True)
    real = await GarbageCollector(gc_services.db, gc_services.storage, options, clock=clock).run()
    assert sorted(real.blobs) == sorted(dry.blobs) and real.orphans == dry.orphans == 1
    assert real.summary() == "deleted 0 manifest(s) and 2 blob(s) (1 orphan(s)), 750 bytes"
    assert not await stored(gc_services, str(orphan_digest))
    await pull_all(gc_client, "app/orphans", "v1")


async def test_an_adopted_orphan_pushed_again_is_published_not_swept(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    """The sweeper adopted the bytes as a deleting row; a push of the same blob takes the row over."""
    data = os.urandom(900)
    digest = parse_digest(digest_of(data))
    await gc_services.storage.put(blob_path(digest), data)
    adopted = await find_orphans(gc_services.db, gc_services.storage, datetime.now(UTC) + timedelta(hours=3), adopt=True)
    assert adopted == [(str(digest), 900)] and await state_of(gc_services, str(digest)) == DELETING
    assert (await gc_client.head(f"/v2/app/adopted/blobs/{digest}")).status_code == 404
    await push_blob(gc_client, "app/adopted", data)
    assert await state_of(gc_services, str(digest)) == ACTIVE
    assert (await collect(gc_services)).blobs == []  # nothing deleting is left to sweep
    pulled = await gc_client.get(f"/v2/app/adopted/blobs/{digest}")
    assert pulled.status_code == 200 and pulled.content == data
