"""``kill -9`` of a ``moorage gc run`` process in the middle of its sweep: the next run finishes
the work, nothing referenced is lost, and the database never lists a blob whose bytes are gone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator

from sqlalchemy import func, select

from moorage.config import Settings
from moorage.db.tables import blobs
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.gc_fence import ACTIVE
from moorage.registry.paths import blob_path
from moorage.services import Services
from tests.e2e.servers import moorage_command
from tests.gc.conftest import age_everything

#: Enough garbage (deleted two per transaction) that the sweep lasts long enough to be killed in.
GARBAGE = 300


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _gc_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MOORAGE_DATA_DIR": str(settings.data_dir),
        "MOORAGE_DATABASE_URL": settings.database_url,
        "MOORAGE_GC__BATCH_SIZE": "2",
    }
    return subprocess.Popen(
        [*moorage_command(), "gc", "run", "--grace-period", "1h"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _blob_files(settings: Settings) -> set[str]:
    return {path.parent.name for path in settings.data_dir.rglob("blobs/sha256/*/*/data")}


async def test_a_killed_run_is_finished_by_the_next(gc_settings: Settings, gc_services: Services) -> None:
    kept = [os.urandom(300 + i) for i in range(3)]
    for data in kept:
        await gc_services.uploads.monolithic("app/kept", Digest.of(data), _one(data), len(data))
    body = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
        + _descriptor(kept[0], "application/vnd.oci.image.config.v1+json")
        + b',"layers":['
        + b",".join(_descriptor(data, "application/vnd.oci.image.layer.v1.tar") for data in kept[1:])
        + b"]}"
    )
    await gc_services.manifests.put("app/kept", "v1", body, "application/vnd.oci.image.manifest.v1+json")
    garbage: set[Digest] = set()
    for index in range(GARBAGE):
        data = os.urandom(200) + index.to_bytes(4, "big")
        digest = Digest.of(data)
        await gc_services.uploads.monolithic("app/garbage", digest, _one(data), len(data))
        garbage.add(digest)
    await age_everything(gc_services.db)
    garbage_hex = {digest.hex for digest in garbage}
    before = _blob_files(gc_settings)
    assert garbage_hex <= before

    process = _gc_process(gc_settings)
    killed_mid_sweep = False
    while process.poll() is None:  # kill -9 once the sweep has deleted some garbage, not all
        left = len(garbage_hex & _blob_files(gc_settings))
        if 0 < left < GARBAGE:
            os.killpg(process.pid, signal.SIGKILL)
            killed_mid_sweep = True
            break
        await asyncio.sleep(0.002)
    process.wait(timeout=60)
    assert killed_mid_sweep, "the GC run ended before it could be killed in its sweep (make GARBAGE larger)"

    # Whatever the killed run left: active rows have their bytes, no garbage is visible.
    async with gc_services.db.read() as conn:
        active = {
            row.digest for row in await conn.execute(select(blobs.c.digest).where(blobs.c.state == ACTIVE))
        }
    for digest in active:
        stored = b"".join(
            [chunk async for chunk in gc_services.storage.read(blob_path(parse_digest(digest)))]
        )
        assert "sha256:" + hashlib.sha256(stored).hexdigest() == digest

    finished = _gc_process(gc_settings)
    assert finished.wait(timeout=120) == 0
    assert not garbage_hex & _blob_files(gc_settings)
    async with gc_services.db.read() as conn:
        left_rows = (await conn.execute(select(func.count()).select_from(blobs))).scalar_one()
    assert left_rows == len(kept) + 1  # the kept image's blobs and its manifest, nothing else
    manifest = await gc_services.manifests.get("app/kept", "v1")
    assert manifest.payload == body
    for data in kept:
        assert await gc_services.blobs.size("app/kept", Digest.of(data)) == len(data)


def _descriptor(data: bytes, media_type: str) -> bytes:
    return (
        f'{{"mediaType":"{media_type}","digest":"sha256:{hashlib.sha256(data).hexdigest()}","size":{len(data)}}}'
    ).encode()
