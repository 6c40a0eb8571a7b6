"""Uploads under races: concurrent completions of one digest on two nodes and on the object stores,
idempotent publishing, the write lease under slow drivers and stalled clients, and purge's
compare-and-delete. Timing in these tests only paces real streams; nothing asserts a duration.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from moorage.config import Settings
from moorage.errors import RegistryError
from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage import FileInfo, StorageDriver, WriteState
from tests.integration.conftest import unique_name
from tests.integration.oci_client import digest_of
from tests.integration.test_uploads import _start, _storage_keys


@pytest.fixture
def own_database(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A freshly migrated database of the same backend, for tests whose answer counts the whole table."""
    import psycopg

    from moorage.db.migrate import upgrade
    from moorage.db.session import is_sqlite

    if is_sqlite(database_url):
        url = f"sqlite:///{tmp_path / 'own.db'}"
        upgrade(url)
        yield url
        return
    admin = str(request.getfixturevalue("postgres_admin_url"))
    name = f"moorage_own_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def own_services(own_database: str, tmp_path: Path) -> AsyncIterator[Services]:
    from tests.integration.conftest import make_settings

    built = Services.from_settings(make_settings(own_database, tmp_path / "own"))
    yield built
    await built.aclose()


async def _age(services: Services, upload_id: str, **values: object) -> None:
    from sqlalchemy import update

    from moorage.db.tables import uploads

    async with services.db.write() as conn:
        await conn.execute(update(uploads).where(uploads.c.id == upload_id).values(**values))


async def _upload_with(services: Services, name: str, data: bytes) -> str:
    started = await services.uploads.start(name)
    await services.uploads.append(name, started.id, _chunks(data))
    return started.id


async def test_purge_removes_only_stale_idle_uploads(own_services: Services, tmp_path: Path) -> None:
    from datetime import timedelta

    from moorage.registry.repositories import now

    services = own_services
    name = unique_name()
    stale = await _upload_with(services, name, b"old" * 100)
    fresh = await _upload_with(services, name, b"new" * 100)
    writing = await _upload_with(services, name, b"busy" * 100)
    await _age(services, stale, updated_at=now() - timedelta(days=8))
    # Old, but a request holds its lease right now: being written, so kept.
    await _age(services, writing, updated_at=now() - timedelta(days=8), lease_token=str(uuid.uuid4()),
               lease_until=now() + timedelta(minutes=5))
    assert await services.uploads.purge(timedelta(days=7), dry_run=True) == 1
    assert (await services.uploads.status(name, stale)).size == 300  # a dry run deletes nothing
    assert await services.uploads.purge(timedelta(days=7)) == 1
    with pytest.raises(RegistryError) as gone:
        await services.uploads.status(name, stale)
    assert gone.value.code == "BLOB_UPLOAD_UNKNOWN"
    assert (await services.uploads.status(name, fresh)).size == 300
    assert (await services.uploads.status(name, writing)).size == 400
    # Unfinished writes are not listed by the driver: look at the disk (own_services' filesystem root).
    on_disk = tmp_path / "own" / "storage" / "uploads"
    assert not (on_disk / stale).exists() and (on_disk / fresh).exists()
    assert await services.uploads.purge(timedelta(days=7)) == 0


async def test_purge_keeps_an_upload_resumed_after_it_was_listed(own_services: Services) -> None:
    """Compare-and-delete: the interleaving "list stale, client resumes, delete" keeps the upload."""
    from datetime import timedelta

    from moorage.registry.repositories import now

    services = own_services
    name = unique_name()
    resumed, claimed, abandoned = [await _upload_with(services, name, b"x" * 100) for _ in range(3)]
    for upload_id in (resumed, claimed, abandoned):
        await _age(services, upload_id, updated_at=now() - timedelta(days=8))
    cutoff = now() - timedelta(days=7)
    assert sorted(await services.uploads.stale(cutoff)) == sorted([resumed, claimed, abandoned])
    # Between the listing and the deletes: one client sends its next chunk, another starts one.
    await services.uploads.append(name, resumed, _chunks(b"y" * 50), start=100)
    await _age(services, claimed, lease_token=str(uuid.uuid4()), lease_until=now() + timedelta(minutes=5))
    assert await services.uploads.discard_if_stale(resumed, cutoff) is False
    assert await services.uploads.discard_if_stale(claimed, cutoff) is False
    assert await services.uploads.discard_if_stale(abandoned, cutoff) is True
    assert (await services.uploads.status(name, resumed)).size == 150
    assert (await services.uploads.status(name, claimed)).size == 100
    # The resumed upload's bytes are intact: it completes under the digest of everything sent.
    digest = parse_digest(digest_of(b"x" * 100 + b"y" * 50))
    assert await services.uploads.complete(name, resumed, digest, _chunks()) == 150
    with pytest.raises(RegistryError) as gone:
        await services.uploads.status(name, abandoned)
    assert gone.value.code == "BLOB_UPLOAD_UNKNOWN"


class _Recording:
    """A storage wrapper (the ``NoRedirect`` pattern) that records which writes reach the real driver."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[str] = []
        self.stat = inner.stat
        self.read = inner.read
        self.put = inner.put
        self.append = inner.append
        self.list = inner.list
        self.delete = inner.delete
        self.url_for = inner.url_for
        self.self_check = inner.self_check

    async def commit(self, path: str, state: WriteState) -> None:
        self.calls.append("commit")
        await self.inner.commit(path, state)

    async def move(self, source: str, destination: str) -> None:
        self.calls.append("move")
        await self.inner.move(source, destination)


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_completing_an_already_stored_digest_only_links_it(services: Services) -> None:
    """Distribution skips the move when the blob exists: the key is written once, the upload discarded."""
    from moorage.registry.uploads import UploadService

    recording = _Recording(services.storage)
    uploads = UploadService(services.db, recording)
    data = os.urandom(70_000)
    digest = parse_digest(digest_of(data))
    first, second, third = unique_name(), unique_name(), unique_name()
    assert await uploads.monolithic(first, digest, _chunks(data), len(data)) == len(data)
    assert recording.calls == ["commit", "move"]
    recording.calls.clear()
    chunked = await uploads.start(second)
    await uploads.append(second, chunked.id, _chunks(data[:1000]))
    assert await uploads.complete(second, chunked.id, digest, _chunks(data[1000:])) == len(data)
    assert await uploads.monolithic(third, digest, _chunks(data), len(data)) == len(data)
    assert recording.calls == []  # neither publish touched the stored key
    assert await _storage_keys(services, "uploads") == []
    for name in (first, second, third):
        assert await services.blobs.size(name, digest) == len(data)
    stored = b"".join([chunk async for chunk in services.storage.read(blob_path(digest))])
    assert digest_of(stored) == str(digest)
    # Bytes lost from storage (the row remains): the next push publishes them again.
    await services.storage.delete(blob_path(digest))
    assert await uploads.monolithic(first, digest, _chunks(data), len(data)) == len(data)
    assert recording.calls == ["commit", "move"]
    assert b"".join([chunk async for chunk in services.storage.read(blob_path(digest))]) == data


async def test_concurrent_completions_of_one_digest_on_two_nodes(settings: Settings, services: Services) -> None:
    """Pushes of the same layer finishing at once on two nodes all succeed and leave one correct blob."""
    digest = await _complete_concurrently(settings, services, os.urandom(300_000), pushes=6)
    assert [info.path for info in await _listed(services, f"blobs/sha256/{digest[7:9]}/{digest[7:]}")] == [
        blob_path(parse_digest(digest))
    ]


OBJECT_STORES = [
    pytest.param("ceph-s3", marks=pytest.mark.ceph),
    pytest.param("ceph-swift", marks=pytest.mark.ceph),
    pytest.param("openstack-swift", marks=pytest.mark.swift),
]


@pytest.mark.parametrize("backend", OBJECT_STORES)
async def test_concurrent_completions_of_one_digest_on_object_storage(
    backend: str, sqlite_database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same on the real object stores, with a blob above the 5 MiB part/segment size (multipart
    completion, server-side copy, Swift SLO segments)."""
    from tests.integration.conftest import make_settings
    from tests.storage.objectstores import TEMPURL_KEY, ensure_bucket, s3_settings, unique

    env = {"MOORAGE_STORAGE__REDIRECT__DISABLE": "true"}  # the in-process client streams every blob
    if backend == "ceph-s3":
        service = request.getfixturevalue("ceph_rgw")
        bucket = unique("uploads")
        ensure_bucket(s3_settings(service, bucket))
        env.update({
            "MOORAGE_STORAGE__S3__REGIONENDPOINT": service["S3_ENDPOINT"],
            "MOORAGE_STORAGE__S3__REGION": service["S3_REGION"],
            "MOORAGE_STORAGE__S3__ACCESSKEY": service["S3_ACCESS_KEY"],
            "MOORAGE_STORAGE__S3__SECRETKEY": service["S3_SECRET_KEY"],
            "MOORAGE_STORAGE__S3__BUCKET": bucket,
        })
    else:
        service = request.getfixturevalue("ceph_rgw" if backend == "ceph-swift" else "swift_saio")
        env.update({
            "MOORAGE_STORAGE__SWIFT__AUTHURL": service["SWIFT_AUTH_URL"],
            "MOORAGE_STORAGE__SWIFT__USERNAME": service["SWIFT_USER"],
            "MOORAGE_STORAGE__SWIFT__PASSWORD": service["SWIFT_KEY"],
            "MOORAGE_STORAGE__SWIFT__CONTAINER": unique("uploads"),
            "MOORAGE_STORAGE__SWIFT__SECRETKEY": TEMPURL_KEY,
            "MOORAGE_STORAGE__SWIFT__CHUNKSIZE": str(5 * 1024 * 1024),
        })
    settings = make_settings(sqlite_database, tmp_path, **env)
    services = Services.from_settings(settings)
    try:
        await _complete_concurrently(settings, services, os.urandom(5 * 1024 * 1024 + 1000), pushes=4)
    finally:
        await services.aclose()


async def _complete_concurrently(settings: Settings, services: Services, data: bytes, *, pushes: int) -> str:
    """Start ``pushes`` uploads of ``data`` alternately on two nodes, finish them all at once on the other
    node, then pull every copy and re-hash what storage holds. Returns the digest."""
    import asyncio

    from sqlalchemy import func, select

    from moorage.app import create_app
    from moorage.db.tables import blobs

    other = Services.from_settings(settings)  # a second node: same database, same storage
    nodes = []
    try:
        for built in (services, other):
            transport = httpx.ASGITransport(app=create_app(settings, built))
            nodes.append(httpx.AsyncClient(transport=transport, base_url="http://registry.test"))
        digest = digest_of(data)
        split = len(data) * 2 // 3
        names = [unique_name() for _ in range(pushes)]
        locations = []
        for index, name in enumerate(names):
            node = nodes[index % 2]
            location = await _start(node, name)
            response = await node.patch(location, content=data[:split])
            assert response.status_code == 202, response.text
            locations.append(response.headers["location"])
        finished = await asyncio.gather(
            *(
                nodes[(index + 1) % 2].put(location, params={"digest": digest}, content=data[split:])
                for index, location in enumerate(locations)
            )
        )
        assert [response.status_code for response in finished] == [201] * pushes, [r.text for r in finished]
        for index, name in enumerate(names):
            pulled = await nodes[index % 2].get(f"/v2/{name}/blobs/{digest}")
            assert pulled.status_code == 200 and digest_of(pulled.content) == digest
        stored = b"".join([chunk async for chunk in services.storage.read(blob_path(parse_digest(digest)))])
        assert digest_of(stored) == digest
        assert await _storage_keys(services, "uploads") == []
        async with services.db.read() as conn:
            rows = (await conn.execute(select(func.count()).where(blobs.c.digest == digest))).scalar()
        assert rows == 1
        return digest
    finally:
        for node in nodes:
            await node.aclose()
        await other.aclose()


async def _listed(services: Services, prefix: str) -> list[FileInfo]:
    return [info async for info in services.storage.list(prefix)]


class _SlowParts:
    """A storage wrapper that writes like S3 on a slow link: it takes the whole chunk, then streams it to
    the real driver in small pieces, and finishes only once told to (after longer than the lease)."""

    def __init__(self, inner: StorageDriver, lease_seconds: float) -> None:
        import asyncio

        self.inner = inner
        self.name = inner.name
        self.lease_seconds = lease_seconds
        self.past_the_lease = asyncio.Event()
        self.finish = asyncio.Event()
        self.stat = inner.stat
        self.read = inner.read
        self.put = inner.put
        self.commit = inner.commit
        self.move = inner.move
        self.list = inner.list
        self.delete = inner.delete
        self.url_for = inner.url_for
        self.self_check = inner.self_check

    async def append(self, path: str, state: WriteState | None, chunks: AsyncIterable[bytes]) -> WriteState:
        import asyncio
        import time

        part = b"".join([chunk async for chunk in chunks])  # the client has sent everything
        started = time.monotonic()

        async def trickle() -> AsyncIterator[bytes]:
            for offset in range(0, len(part), 100):
                yield part[offset : offset + 100]
                await asyncio.sleep(0.05)
            while not self.finish.is_set():
                if time.monotonic() - started > 2 * self.lease_seconds:
                    self.past_the_lease.set()
                await asyncio.sleep(0.05)

        return await self.inner.append(path, state, trickle())


async def test_the_lease_is_renewed_while_a_slow_driver_write_is_in_flight(services: Services) -> None:
    """A part upload longer than the lease no longer lets another request take the upload (a 416 for the
    client whose write was still running)."""
    import asyncio

    from moorage.registry.uploads import LeaseTiming, UploadService

    lease = LeaseTiming(seconds=1.0, renew_every=0.25)
    slow = _SlowParts(services.storage, lease.seconds)
    uploads = UploadService(services.db, slow, lease=lease)
    name = unique_name()
    data = os.urandom(1000)
    started = await uploads.start(name)
    writing = asyncio.create_task(uploads.append(name, started.id, _chunks(data)))
    await asyncio.wait_for(slow.past_the_lease.wait(), 30)
    # Twice the lease later, the write is still in flight: the upload is still its writer's, also
    # for a request on another node (one with a fast driver).
    other_node = UploadService(services.db, services.storage, lease=lease)
    with pytest.raises(RegistryError) as rival:
        await other_node.append(name, started.id, _chunks(b"rival"), start=0)
    assert rival.value.code == "BLOB_UPLOAD_INVALID" and rival.value.status == 416
    slow.finish.set()
    assert (await writing).size == len(data)
    digest = parse_digest(digest_of(data))
    assert await other_node.complete(name, started.id, digest, _chunks()) == 1000
    assert b"".join([chunk async for chunk in services.storage.read(blob_path(digest))]) == data


async def test_a_client_that_stalls_loses_the_upload_after_the_lease(services: Services) -> None:
    """Only work renews the lease: a client silent for longer than the lease lets its own retry take over."""
    import asyncio

    from moorage.registry.uploads import LeaseTiming, UploadService

    # A 2 s lease, not less: on a loaded CI machine the event loop can stall for several tenths of a
    # second, and a 0.5 s lease then ran out inside the retry's own work (one failure seen under load).
    uploads = UploadService(services.db, services.storage, lease=LeaseTiming(seconds=2.0, renew_every=0.3))
    name = unique_name()
    started = await uploads.start(name)
    first_sent, resume = asyncio.Event(), asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b"a" * 100
        first_sent.set()
        await resume.wait()
        yield b"b" * 100

    stalled = asyncio.create_task(uploads.append(name, started.id, stalling()))
    await asyncio.wait_for(first_sent.wait(), 30)  # the stalled request holds the lease from here on
    retried = None
    for _ in range(300):  # the retry is refused while the lease lasts, then it takes over
        try:
            retried = await uploads.append(name, started.id, _chunks(b"c" * 100), start=0)
            break
        except RegistryError as error:
            assert error.code == "BLOB_UPLOAD_INVALID"
            await asyncio.sleep(0.1)
    assert retried is not None and retried.size == 100
    resume.set()
    with pytest.raises(RegistryError) as lost:
        await stalled
    assert lost.value.code == "BLOB_UPLOAD_INVALID" and lost.value.status == 416
    digest = parse_digest(digest_of(b"c" * 100))
    assert await uploads.complete(name, started.id, digest, _chunks()) == 100
