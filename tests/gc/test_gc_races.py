"""The race proof: GC on one node, pushes, mounts, re-pushes and untags on two others, in
1,000+ seeded random interleavings per database; then everything tagged is pulled and re-hashed.

Each round runs three actors under :class:`~tests.gc.stepping.Scheduler`: a full GC run (half
the rounds with a cutoff in the future, so that *nothing* is protected by the grace window and
only the locking protocol keeps pushes safe), and two pushing nodes that behave like real
clients: they skip blobs a HEAD finds, mount across repositories, push blobs again, and retry
what the registry tells them to retry (``MANIFEST_BLOB_UNKNOWN``, ``BLOB_UPLOAD_UNKNOWN``).
Some rounds start with orphan bytes (no row) of a blob the nodes may push, for
``--sweep-orphans`` to adopt while they do.
After every round the whole database is checked against storage: every active blob's bytes
hash to its digest, every manifest's blobs are active and linked, its children stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from moorage.db.tables import blobs, manifest_references, manifests, repositories, repository_blobs, tags
from moorage.errors import RegistryError
from moorage.gc.collector import GarbageCollector, GcOptions
from moorage.registry import mediatypes as mt
from moorage.registry.blobs import BlobService
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.gc_fence import ACTIVE
from moorage.registry.manifest_store import ManifestStore
from moorage.registry.paths import blob_path
from moorage.registry.uploads import UploadService
from moorage.storage.drivers.memory import MemoryDriver
from tests.gc.stepping import Scheduler, SteppedDatabase, SteppedDriver

ROUNDS = int(os.environ.get("MOORAGE_TEST_GC_ROUNDS", "1000"))
SEED = 20261129
#: Few tags over a larger pool of blobs: at any time a third of the blobs or more are garbage,
#: so GC has work in most rounds and pushes keep naming blobs GC is about to delete.
REPOSITORIES = ("race/a", "race/b")
TAGS = ("t1", "t2")
POOL = 12


@dataclass
class Node:
    db: SteppedDatabase
    storage: SteppedDriver
    uploads: UploadService
    manifests: ManifestStore
    blobs: BlobService


@dataclass
class Tally:
    """What happened, to show that the races were really exercised."""

    pushes: int = 0
    repushes: int = 0
    mounts: int = 0
    mount_refused: int = 0
    untags: int = 0
    manifest_retries: int = 0
    upload_retries: int = 0
    gc_blobs: int = 0
    gc_manifests: int = 0
    gc_orphans: int = 0
    codes: dict[str, int] = field(default_factory=dict)

    def saw(self, error: RegistryError) -> None:
        self.codes[error.code] = self.codes.get(error.code, 0) + 1


def node(url: str, memory: MemoryDriver, scheduler: Scheduler, actor: str) -> Node:
    db = SteppedDatabase(url, scheduler, actor)
    storage = SteppedDriver(memory, scheduler, actor)
    return Node(
        db,
        storage,
        UploadService(db, storage),
        ManifestStore(db, storage, max_bytes=1 << 20),
        BlobService(db, storage, redirect_expiry=60),
    )


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Client:
    """A registry client on one node: what skopeo/podman do, on the domain services."""

    def __init__(self, node: Node, rng: random.Random, pool: list[bytes], tally: Tally) -> None:
        self.node = node
        self.rng = rng
        self.pool = pool
        self.tally = tally

    async def push_blob(self, repository: str, data: bytes, *, head_first: bool) -> None:
        digest = Digest.of(data)
        if head_first:
            try:
                await self.node.blobs.size(repository, digest)
                return  # "blob already exists"
            except RegistryError:
                pass
        for _ in range(10):
            try:
                if self.rng.random() < 0.75:
                    await self.node.uploads.monolithic(repository, digest, chunks(data), len(data))
                else:
                    progress = await self.node.uploads.start(repository)
                    cut = self.rng.randrange(len(data) + 1)
                    await self.node.uploads.append(repository, progress.id, chunks(data[:cut]), start=0)
                    await self.node.uploads.complete(
                        repository, progress.id, digest, chunks(data[cut:]), start=cut
                    )
                return
            except RegistryError as error:
                self.tally.saw(error)
                if error.code != "BLOB_UPLOAD_UNKNOWN":
                    raise
                self.tally.upload_retries += 1
        raise AssertionError(f"blob {digest} could not be pushed in 10 attempts")

    async def mount_or_push(self, repository: str, data: bytes) -> None:
        source = self.rng.choice(REPOSITORIES)
        if await self.node.blobs.mount(repository, source, Digest.of(data)) is not None:
            self.tally.mounts += 1
            return
        self.tally.mount_refused += 1
        await self.push_blob(repository, data, head_first=False)

    async def push_image(self, repository: str, tag: str) -> None:
        layer, config = self.rng.sample(self.pool, 2)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
            }
        ).encode()
        for data in (config, layer):
            await self.push_blob(repository, data, head_first=True)
        for _ in range(10):
            try:
                await self.node.manifests.put(repository, tag, body, mt.OCI_MANIFEST)
                self.tally.pushes += 1
                return
            except RegistryError as error:
                self.tally.saw(error)
                if error.code not in ("MANIFEST_BLOB_UNKNOWN", "UNAVAILABLE"):
                    raise
                self.tally.manifest_retries += 1
                for data in (config, layer):  # the client pushes what the registry says is missing
                    await self.push_blob(repository, data, head_first=True)
        raise AssertionError(f"manifest for {repository}:{tag} could not be pushed in 10 attempts")

    async def untag(self, repository: str, tag: str) -> None:
        try:
            await self.node.manifests.delete(repository, tag)
            self.tally.untags += 1
        except RegistryError as error:
            if error.code != "MANIFEST_UNKNOWN":
                raise

    async def act(self) -> None:
        """One client operation: push an image, push a blob again, mount one, or untag."""
        repository, tag = self.rng.choice(REPOSITORIES), self.rng.choice(TAGS)
        choice = self.rng.random()
        if choice < 0.5:
            await self.push_image(repository, tag)
        elif choice < 0.65:
            self.tally.repushes += 1
            await self.push_blob(repository, self.rng.choice(self.pool), head_first=False)
        elif choice < 0.8:
            await self.mount_or_push(repository, self.rng.choice(self.pool))
        else:
            await self.untag(repository, tag)


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


async def check_everything(checker: Node, memory: MemoryDriver) -> int:
    """The invariants, read straight from the database and storage; returns the tags pulled."""
    async with checker.db.read() as conn:
        active = {
            row.digest: row.size
            for row in await conn.execute(select(blobs.c.digest, blobs.c.size).where(blobs.c.state == ACTIVE))
        }
        stored = (
            await conn.execute(select(manifests.c.id, manifests.c.repository_id, manifests.c.digest))
        ).all()
        refs = (
            await conn.execute(
                select(
                    manifest_references.c.manifest_id,
                    manifest_references.c.kind,
                    manifest_references.c.digest,
                )
            )
        ).all()
        links = set(
            (
                await conn.execute(
                    select(repositories.c.name, repository_blobs.c.repository_id, blobs.c.digest)
                    .select_from(repository_blobs.join(blobs).join(repositories))
                    .where(blobs.c.state == ACTIVE)
                )
            ).all()
        )
        tagged = (
            await conn.execute(
                select(repositories.c.name, tags.c.name, manifests.c.digest, manifests.c.payload).select_from(
                    tags.join(manifests, tags.c.manifest_id == manifests.c.id).join(repositories)
                )
            )
        ).all()
    for (
        digest,
        size,
    ) in active.items():  # the database never says a blob exists whose bytes are gone (or wrong)
        data = memory._objects.get(blob_path(parse_digest(digest)))
        assert data is not None, f"active blob {digest} has no bytes"
        assert len(data[0]) == size and "sha256:" + hashlib.sha256(data[0]).hexdigest() == digest
    by_id = {row.id: row for row in stored}
    in_repo = {(row.repository_id, row.digest) for row in stored}
    linked_by_id = {(row.repository_id, row.digest) for row in links}
    for row in stored:  # a stored manifest never points at missing bytes
        assert row.digest in active, f"manifest {row.digest} has no active payload blob"
    for ref in refs:
        owner = by_id[ref.manifest_id]
        if ref.kind == "blob":
            assert (owner.repository_id, ref.digest) in linked_by_id, (
                f"{owner.digest} references missing {ref.digest}"
            )
        else:
            assert (owner.repository_id, ref.digest) in in_repo, f"{owner.digest} names missing {ref.digest}"
    linked_by_name = {(row.name, row.digest) for row in links}
    for repository, tag, digest, payload in tagged:  # pull everything tagged and re-hash it
        assert "sha256:" + hashlib.sha256(payload).hexdigest() == digest, (
            f"{repository}:{tag} payload corrupt"
        )
        manifest = json.loads(payload)
        for item in [manifest["config"], *manifest["layers"]]:
            assert (repository, item["digest"]) in linked_by_name, f"{repository}:{tag} lost {item['digest']}"
            data = memory._objects[blob_path(parse_digest(item["digest"]))][0]
            assert (
                "sha256:" + hashlib.sha256(data).hexdigest() == item["digest"] and len(data) == item["size"]
            )
    return len(tagged)


async def leave_an_orphan(checker: Node, memory: MemoryDriver, data: bytes) -> None:
    """What a crashed import or an old registry leaves: bytes under a blob key that no row knows."""
    digest = Digest.of(data)
    async with checker.db.read() as conn:
        if (await conn.execute(select(blobs.c.id).where(blobs.c.digest == str(digest)))).first() is None:
            await memory.put(blob_path(digest), data)


class _Free(Scheduler):
    """A scheduler whose gates never stop anyone: for the checks between rounds."""

    async def gate(self, actor: str) -> None:
        return None


async def world(url: str, seed: int, rounds: int) -> tuple[Tally, int, int]:
    """``rounds`` interleavings on one database: returns what happened, the steps and the tag pulls."""
    rng = random.Random(seed)
    memory = MemoryDriver()
    scheduler = Scheduler(rng)
    gc_node, node_a, node_b = (node(url, memory, scheduler, name) for name in ("gc", "a", "b"))
    checker = node(url, memory, _Free(rng), "checker")
    pool = [os.urandom(rng.randint(1, 300)) for _ in range(POOL)]
    tally = Tally()
    tags_checked = 0
    try:
        for round_number in range(rounds):
            if rng.random() < 0.2:
                await leave_an_orphan(checker, memory, rng.choice(pool))
            future_cutoff = rng.random() < 0.5
            options = GcOptions(
                grace=timedelta(0), delete_untagged=rng.random() < 0.3, sweep_orphans=rng.random() < 0.3
            )

            def clock(shift: bool = future_cutoff) -> datetime:
                return datetime.now(UTC) + (timedelta(days=1) if shift else timedelta(0))

            collector = GarbageCollector(gc_node.db, gc_node.storage, options, clock=clock)

            async def gc(collector: GarbageCollector = collector) -> None:
                report = await collector.run()
                tally.gc_blobs += len(report.blobs)
                tally.gc_manifests += len(report.manifests)
                tally.gc_orphans += report.orphans

            await scheduler.run(
                {
                    "gc": gc(),
                    "a": Client(node_a, rng, pool, tally).act(),
                    "b": Client(node_b, rng, pool, tally).act(),
                }
            )
            try:
                tags_checked += await check_everything(checker, memory)
            except AssertionError as error:
                raise AssertionError(f"round {round_number} (seed {seed}): {error}") from None
    finally:
        for each in (gc_node, node_a, node_b, checker):
            await each.db.dispose()
    return tally, scheduler.steps, tags_checked


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_randomized_interleavings_lose_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """ROUNDS interleavings per backend, split over independent worlds (one database each) run side
    by side, so PostgreSQL's round trips overlap; each world's schedule is deterministic by its seed."""
    worlds = 1 if backend == "sqlite" else 4
    urls = []
    if backend == "sqlite":
        for index in range(worlds):
            path = tmp_path / f"world{index}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            urls.append(f"sqlite:///{path}")
    else:
        admin: str = request.getfixturevalue("postgres_admin_url")
        template: str = request.getfixturevalue("postgres_template")
        names = [f"moorage_gc_race_{uuid.uuid4().hex[:8]}" for _ in range(worlds)]
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        request.addfinalizer(lambda: _drop(admin, names))
        urls = [f"{admin.rsplit('/', 1)[0]}/{name}" for name in names]
    started = time.monotonic()
    share = -(-ROUNDS // worlds)
    results = await asyncio.gather(*(world(url, SEED + index, share) for index, url in enumerate(urls)))
    elapsed = time.monotonic() - started
    tally = Tally()
    for each, _, _ in results:
        for name in (
            "pushes",
            "repushes",
            "mounts",
            "mount_refused",
            "untags",
            "manifest_retries",
            "upload_retries",
            "gc_blobs",
            "gc_manifests",
            "gc_orphans",
        ):
            setattr(tally, name, getattr(tally, name) + getattr(each, name))
        for code, count in each.codes.items():
            tally.codes[code] = tally.codes.get(code, 0) + count
    steps = sum(steps for _, steps, _ in results)
    pulls = sum(pulls for _, _, pulls in results)
    print(
        f"\n{share * worlds} interleavings ({steps} steps, {worlds} world(s)) in {elapsed:.1f} s on {backend}: "
        f"{tally}; {pulls} tag pulls re-hashed, 0 missing, 0 corrupt"
    )
    # The races were exercised, not avoided: GC deleted things and pushes had to be retried.
    assert tally.gc_blobs > 0 and tally.gc_manifests > 0 and tally.pushes > ROUNDS / 4
    assert tally.manifest_retries > 0 and tally.mount_refused > 0 and tally.mounts > 0 and tally.gc_orphans > 0


def _drop(admin: str, names: list[str]) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
