"""Stopping a running GC (Harbor's ``PUT /system/gc/{id}``, ``moorage gc stop``) on SQLite and PostgreSQL.

The run notices the request at its next batch boundary and stops with nothing half-done: every
row is ``active`` with its bytes, ``deleting`` (invisible; the next run sweeps it) or gone with
its bytes; what is tagged still pulls and re-hashes; the next run finishes, and both runs
together deleted exactly what a dry run listed. Its history says ``Stopped``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from moorage.app import create_app
from moorage.cli import app as cli_app
from moorage.db.tables import blobs
from moorage.gc.collector import GarbageCollector, GcOptions, GcStopped
from moorage.gc.executions import GC_RUN
from moorage.gc.job import register_gc
from moorage.jobs import HandlerRegistry, JobQueue, JobRunner
from moorage.registry.digests import parse_digest
from moorage.registry.gc_fence import ACTIVE
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage import PathNotFoundError, StorageDriver
from tests.gc.conftest import age_everything, collect
from tests.gc.test_gc_rules import pull_all
from tests.integration.oci_client import push_blob, push_image
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, Idp, basic, make_idp


async def rows(services: Services) -> dict[str, str]:
    async with services.db.read() as conn:
        return {row.digest: row.state for row in await conn.execute(select(blobs.c.digest, blobs.c.state))}


async def active_rows_have_bytes(services: Services) -> None:
    for digest, state in (await rows(services)).items():
        if state == ACTIVE:
            try:
                await services.storage.stat(blob_path(parse_digest(digest)))
            except PathNotFoundError:
                pytest.fail(f"active blob {digest} lost its bytes")


async def garbage(client: httpx.AsyncClient, name: str, count: int) -> list[str]:
    return [await push_blob(client, name, os.urandom(300 + i)) for i in range(count)]


async def test_a_stopped_run_leaves_nothing_half_done_and_the_next_run_finishes(
    gc_client: httpx.AsyncClient, gc_services: Services
) -> None:
    await push_image(gc_client, "keep/app", "v1", [os.urandom(2000)])
    strays = await garbage(gc_client, "keep/app", 7)
    await age_everything(gc_services.db)
    listed = {digest for digest, _ in (await collect(gc_services, dry_run=True, batch_size=2)).blobs}
    assert listed == set(strays)

    asked = 0

    async def stop_after_one_sweep() -> bool:  # boundaries: 4 mark batches, then one per sweep batch
        nonlocal asked
        asked += 1
        return asked > 6

    collector = GarbageCollector(gc_services.db, gc_services.storage, GcOptions(batch_size=2),
                                 should_stop=stop_after_one_sweep)
    with pytest.raises(GcStopped) as stopped:
        await collector.run()
    first = {digest for digest, _ in stopped.value.report.blobs}
    assert 0 < len(first) < len(strays)
    states = await rows(gc_services)
    assert {states[d] for d in set(strays) - first} == {"deleting"}  # marked, invisible, left to the next run
    await active_rows_have_bytes(gc_services)
    await pull_all(gc_client, "keep/app", "v1")

    second = {digest for digest, _ in (await collect(gc_services, batch_size=2)).blobs}
    assert first | second == listed and not first & second
    assert not set(strays) & set(await rows(gc_services))
    await pull_all(gc_client, "keep/app", "v1")


@pytest.fixture
async def idp(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for made in make_idp(fresh_database_url, tmp_path / "data", MOORAGE_STORAGE__DELETE__ENABLED="true",
                               MOORAGE_GC__BATCH_SIZE="2"):
        yield made


async def run_jobs(services: Services) -> None:
    runner = JobRunner(services.jobs, services.job_handlers, owner="test-node")
    while await runner.run_once():
        pass
    await runner.stop(grace=60)


async def test_put_stops_a_running_execution_and_its_history_says_stopped(idp: Idp) -> None:
    project = await idp.project()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(idp.settings, idp.services)),
                                 base_url="http://registry.test", headers=basic("admin", ADMIN_PASSWORD)) as client:
        await push_image(client, f"{project}/app", "v1", [os.urandom(1000)])
        strays = await garbage(client, f"{project}/app", 6)
    await age_everything(idp.services.db)
    run = await idp.api("POST", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "Manual"}})
    run_id = int(run.headers["Location"].rsplit("/", 1)[1])

    # The operator's stop arrives while the first sweep batch deletes bytes (a real request, mid-run):
    # this node's gc.run handler gets a storage that sends it after its first delete_many. On SQLite
    # the request's write waits for the sweep's transaction, so it is a task, and the run's next
    # stop check (the real query) first waits for that request to be answered.
    answers: list[asyncio.Task[httpx.Response]] = []

    class StopAfterFirstBatch:
        async def delete_many(self, keys: Sequence[str]) -> None:
            await idp.services.storage.delete_many(keys)
            if not answers:
                answers.append(asyncio.create_task(
                    idp.api("PUT", f"/system/gc/{run_id}", idp.admin, json={"status": "Stop"})))

    class AnsweredFirst(JobQueue):
        async def stop_requested(self, job_id: int) -> bool:
            if answers:
                await answers[0]
            return await super().stop_requested(job_id)

    handlers = HandlerRegistry()
    register_gc(handlers, idp.settings.gc, idp.services.db, cast(StorageDriver, StopAfterFirstBatch()), None,
                queue=AnsweredFirst(idp.services.db))
    runner = JobRunner(idp.services.jobs, handlers, owner="test-node")
    while await runner.run_once():
        pass
    await runner.stop(grace=60)
    assert [task.result().status_code for task in answers] == [200]
    record = (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json()
    assert record["job_status"] == "Stopped" and record["end_time"] is not None
    assert record["summary"]["blobs"] == 2  # one sweep batch
    log = (await idp.api("GET", f"/system/gc/{run_id}/log", idp.admin)).text
    assert log.startswith("stopped on request at a batch boundary; the next run finishes")
    assert (await idp.services.jobs.get(run_id)).state == "stopped"  # type: ignore[union-attr]

    again = await idp.api("POST", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "Manual"}})
    again_id = int(again.headers["Location"].rsplit("/", 1)[1])
    await run_jobs(idp.services)
    finished = (await idp.api("GET", f"/system/gc/{again_id}", idp.admin)).json()
    assert finished["job_status"] == "Success"
    assert record["summary"]["blobs"] + finished["summary"]["blobs"] == len(strays)
    assert not set(strays) & set(await rows(idp.services))
    assert (await idp.api("PUT", f"/system/gc/{again_id}", idp.admin)).status_code == 200  # ended: no change
    assert (await idp.services.jobs.get(again_id)).state == "succeeded"  # type: ignore[union-attr]


async def test_stop_refusals_and_a_queued_execution_stops_at_once(idp: Idp) -> None:
    _, user = await idp.user()
    assert (await idp.api("PUT", "/system/gc/1")).status_code == 401
    assert (await idp.api("PUT", "/system/gc/1", user)).status_code == 403
    assert (await idp.api("PUT", "/system/gc/999999", idp.admin)).status_code == 404
    other = await idp.services.jobs.enqueue("uploads.purge", {})
    assert (await idp.api("PUT", f"/system/gc/{other}", idp.admin)).status_code == 404  # not a GC job
    run = await idp.api("POST", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "Manual"}})
    run_id = int(run.headers["Location"].rsplit("/", 1)[1])
    bad = await idp.api("PUT", f"/system/gc/{run_id}", idp.admin, json={"status": "Pause"})
    assert bad.status_code == 400 and "status" in bad.text
    assert (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json()["job_status"] == "Pending"

    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["gc", "stop"], env={
        "MOORAGE_DATABASE_URL": idp.settings.database_url, "MOORAGE_DATA_DIR": str(idp.settings.data_dir)})
    assert result.exit_code == 0, result.output
    assert f"GC execution {run_id}: stopped" in result.output
    assert (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json()["job_status"] == "Stopped"
    assert await idp.services.jobs.list(kind=GC_RUN, state="queued") == []
