"""PostgreSQL row locks between GC and writers, with really concurrent transactions.

The interleaving test runs one transaction at a time; these put two at once on PostgreSQL
(READ COMMITTED): a writer holding its shared lock makes GC skip the blob, and a writer that
arrives while GC's sweep holds a blob waits for it, then publishes the blob again.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text

from moorage.db.tables import blobs
from moorage.gc.collector import GarbageCollector, GcOptions
from moorage.registry.digests import Digest
from moorage.registry.gc_fence import ACTIVE, lock_blobs
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage.checked import CheckedDriver
from tests.gc.conftest import age_everything
from tests.integration.conftest import make_settings


@pytest.fixture
async def pg_services(postgres_admin_url: str, postgres_template: str, tmp_path: Path) -> AsyncIterator[Services]:
    name = f"moorage_gc_locks_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    services = Services.from_settings(make_settings(url, tmp_path))
    yield services
    await services.aclose()
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _state(services: Services, digest: Digest) -> str | None:
    async with services.db.read() as conn:
        return (await conn.execute(select(blobs.c.state).where(blobs.c.digest == str(digest)))).scalar()


async def _waiting_on_a_lock(services: Services) -> bool:
    async with services.db.read() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        )
        return bool(found.scalar())


async def test_gc_skips_a_blob_a_writer_holds(pg_services: Services) -> None:
    data = os.urandom(500)
    digest = Digest.of(data)
    await pg_services.uploads.monolithic("locks/held", digest, _chunks(data), len(data))
    await age_everything(pg_services.db)
    release = asyncio.Event()
    locked = asyncio.Event()

    async def writer() -> None:  # what a manifest PUT naming the blob holds until it commits
        async with pg_services.db.write() as conn:
            assert (await lock_blobs(conn, [str(digest)]))[str(digest)].state == ACTIVE
            locked.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await locked.wait()
    report = await GarbageCollector(pg_services.db, pg_services.storage, GcOptions()).run()
    assert report.blobs == []  # skipped (FOR UPDATE SKIP LOCKED), not waited for
    assert await _state(pg_services, digest) == ACTIVE
    release.set()
    await task
    report = await GarbageCollector(pg_services.db, pg_services.storage, GcOptions()).run()
    assert report.blobs == [(str(digest), 500)]  # released without a reference: garbage after all


class _PausingDeletes(CheckedDriver):
    """Real storage whose blob deletes wait for ``go``: GC stopped inside its sweep, locks held."""

    def __init__(self, inner: CheckedDriver) -> None:
        super().__init__(inner.inner)
        self.inside = asyncio.Event()
        self.go = asyncio.Event()

    async def delete(self, path: str) -> None:
        if path.startswith("blobs/"):
            self.inside.set()
            await self.go.wait()
        await super().delete(path)

    async def delete_many(self, paths: Sequence[str]) -> None:
        if any(path.startswith("blobs/") for path in paths):
            self.inside.set()
            await self.go.wait()
        await super().delete_many(paths)


async def test_a_push_waits_for_the_sweep_then_publishes_again(pg_services: Services) -> None:
    data = os.urandom(800)
    digest = Digest.of(data)
    await pg_services.uploads.monolithic("locks/sweep", digest, _chunks(data), len(data))
    await age_everything(pg_services.db)
    pausing = _PausingDeletes(pg_services.storage)
    gc = asyncio.create_task(GarbageCollector(pg_services.db, pausing, GcOptions()).run())
    await pausing.inside.wait()  # marked deleting, its row locked by the sweep, bytes not yet deleted
    push = asyncio.create_task(pg_services.uploads.monolithic("locks/sweep", digest, _chunks(data), len(data)))
    while not await _waiting_on_a_lock(pg_services):  # the push's transaction queues behind GC's lock
        assert not push.done(), push
        await asyncio.sleep(0.01)
    pausing.go.set()
    report = await gc
    assert report.blobs == [(str(digest), 800)]
    assert await push == 800
    assert await _state(pg_services, digest) == ACTIVE  # published again after GC deleted it
    stored = b"".join([chunk async for chunk in pg_services.storage.read(blob_path(digest))])
    assert stored == data
    assert await pg_services.blobs.size("locks/sweep", digest) == 800
