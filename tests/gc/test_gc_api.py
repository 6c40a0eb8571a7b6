"""Harbor's ``/api/v2.0/system/gc`` on SQLite and PostgreSQL: who may, manual runs and their records,
the schedule (bad input saves nothing), and a due schedule enqueued once by two nodes ticking at once."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from moorage.app import create_app
from moorage.db.jobs_tables import jobs
from moorage.db.tables import blobs
from moorage.gc.executions import GC_RUN, GcParameters, GcService
from moorage.jobs import JobRunner
from moorage.services import Services
from tests.gc.conftest import age_everything
from tests.integration.oci_client import push_blob, push_image
from tests.integration.test_identity_helpers import ADMIN_PASSWORD, Idp, basic, make_idp

ENDPOINTS = [
    ("GET", "/system/gc/schedule", None),
    ("PUT", "/system/gc/schedule", {"schedule": {"type": "Daily"}}),
    ("POST", "/system/gc/schedule", {"schedule": {"type": "Manual"}}),
    ("GET", "/system/gc", None),
    ("GET", "/system/gc/1", None),
    ("GET", "/system/gc/1/log", None),
]


@pytest.fixture
async def idp(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for made in make_idp(fresh_database_url, tmp_path / "data", MOORAGE_STORAGE__DELETE__ENABLED="true"):
        yield made


async def run_jobs(services: Services) -> None:
    runner = JobRunner(services.jobs, services.job_handlers, owner="test-node")
    while await runner.run_once():
        pass
    await runner.stop(grace=60)


async def blob_rows(services: Services) -> dict[str, int]:
    async with services.db.read() as conn:
        return {row.digest: row.size for row in (await conn.execute(select(blobs.c.digest, blobs.c.size))).all()}


async def test_only_system_administrators(idp: Idp) -> None:
    _, user = await idp.user()
    for method, path, body in ENDPOINTS:
        anonymous = await idp.api(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert "credentials" in anonymous.json()["errors"][0]["message"]
        refused = await idp.api(method, path, user, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "system administrator" in refused.json()["errors"][0]["message"]
    assert (await idp.api("GET", "/system/gc/schedule", idp.admin)).json()["schedule"]["type"] == "None"
    assert (await idp.api("GET", "/system/gc/schedule")).status_code == 401  # nothing changed by the refusals
    for method, path, body in ENDPOINTS:
        allowed = await idp.api(method, path, idp.admin, json=body)
        assert allowed.status_code in (200, 201), (method, path, allowed.text)


async def test_manual_run_then_history_detail_and_log(idp: Idp) -> None:
    project = await idp.project()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(idp.settings, idp.services)), base_url="http://registry.test", headers=basic("admin", ADMIN_PASSWORD)
    ) as client:
        name = f"{project}/app"
        await push_image(client, name, "v1", [os.urandom(1500)])
        await push_image(client, name, "v1", [os.urandom(1700)])  # the first image is now untagged
        stray = [await push_blob(client, name, os.urandom(size)) for size in (2000, 3000)]
    await age_everything(idp.services.db)
    before = await blob_rows(idp.services)

    dry = await idp.api("POST", "/system/gc/schedule", idp.admin,
                        json={"schedule": {"type": "Manual"}, "job_parameters": '{"delete_untagged": true, "dry_run": true}'})
    assert dry.status_code == 201, dry.text
    run = await idp.api("POST", "/system/gc/schedule", idp.admin,
                        json={"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": True, "workers": 1}})
    assert run.status_code == 201, run.text
    run_id = int(run.headers["Location"].rsplit("/", 1)[1])
    dry_id = int(dry.headers["Location"].rsplit("/", 1)[1])
    pending = (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json()
    assert pending["job_status"] == "Pending" and pending["job_kind"] == "MANUAL"
    await run_jobs(idp.services)

    after = await blob_rows(idp.services)
    gone = {digest: size for digest, size in before.items() if digest not in after}
    # the strays, the untagged manifest's payload and its layer (its config is the kept image's too)
    assert set(stray) <= set(gone) and len(gone) == 4

    history = await idp.api("GET", "/system/gc", idp.admin, params={"page_size": 1})
    assert history.status_code == 200 and history.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in history.headers["Link"]
    newest = history.json()[0]
    assert newest["id"] == run_id  # newest first
    assert newest["job_status"] == "Success" and json.loads(newest["job_parameters"]) == {
        "delete_untagged": True, "dry_run": False}
    assert newest["summary"] == {"manifests": 1, "blobs": len(gone), "bytes_freed": sum(gone.values())}
    assert newest["start_time"] and newest["end_time"] and newest["start_time"] <= newest["end_time"]
    assert (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json() == newest

    log = await idp.api("GET", f"/system/gc/{run_id}/log", idp.admin)
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    lines = log.text.splitlines()
    assert {line.split()[1] for line in lines if line.startswith("blob ")} == set(gone)
    assert len([line for line in lines if line.startswith(f"manifest {project}/app@")]) == 1
    assert lines[-1] == f"deleted 1 manifest(s) and {len(gone)} blob(s), {sum(gone.values()):,} bytes"

    # the dry run, which ran first, said exactly what the real run then deleted
    dry_record = (await idp.api("GET", f"/system/gc/{dry_id}", idp.admin)).json()
    assert dry_record["summary"] == newest["summary"]
    dry_log = (await idp.api("GET", f"/system/gc/{dry_id}/log", idp.admin)).text.splitlines()
    assert dry_log[1:-1] == lines[1:-1] and dry_log[-1].startswith("would delete 1 manifest(s)")

    assert (await idp.api("GET", "/system/gc/999999", idp.admin)).status_code == 404
    assert (await idp.api("GET", "/system/gc/999999/log", idp.admin)).status_code == 404
    other = await idp.services.jobs.enqueue("uploads.purge", {})
    assert (await idp.api("GET", f"/system/gc/{other}", idp.admin)).status_code == 404  # not a GC job


async def test_schedule_crud_and_bad_input_saves_nothing(idp: Idp) -> None:
    body = {"schedule": {"type": "Custom", "cron": "0 30 2 * * *"}, "parameters": {"delete_untagged": True}}
    assert (await idp.api("POST", "/system/gc/schedule", idp.admin, json=body)).status_code == 201
    assert (await idp.api("POST", "/system/gc/schedule", idp.admin, json=body)).status_code == 409
    saved = (await idp.api("GET", "/system/gc/schedule", idp.admin)).json()
    assert saved["schedule"]["type"] == "Custom" and saved["schedule"]["cron"] == "0 30 2 * * *"
    assert json.loads(saved["job_parameters"]) == {"delete_untagged": True, "dry_run": False}
    next_time = datetime.fromisoformat(saved["schedule"]["next_scheduled_time"])
    assert (next_time.hour, next_time.minute) == (2, 30)

    bad = [
        ({"schedule": {"type": "Custom", "cron": "0 61 * * * *"}}, "schedule.cron: the minute field"),
        ({"schedule": {"type": "Custom", "cron": "* * *"}}, "schedule.cron: a cron expression has 5 fields"),
        ({"schedule": {"type": "Custom"}}, "schedule.cron: a Custom schedule needs"),
        ({"schedule": {"type": "Sometimes"}}, "schedule.type: must be one of"),
        ({"schedule": {"type": "Daily"}, "parameters": {"dry_run": "yes"}}, "parameters.dry_run"),
        ({"schedule": {"type": "Daily"}, "job_parameters": "{not json"}, "job_parameters"),
    ]
    for request, message in bad:
        refused = await idp.api("PUT", "/system/gc/schedule", idp.admin, json=request)
        assert refused.status_code == 400, refused.text
        assert message in refused.json()["errors"][0]["message"] and "nothing was saved" in refused.text
        assert (await idp.api("GET", "/system/gc/schedule", idp.admin)).json() == saved
    refused = await idp.api("POST", "/system/gc/schedule", idp.admin,
                            json={"schedule": {"type": "Manual"}, "parameters": {"dry_run": 1}})
    assert refused.status_code == 400
    assert await idp.services.jobs.list(kind=GC_RUN) == []  # a bad manual run queues nothing

    weekly = await idp.api("PUT", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "Weekly"}})
    assert weekly.status_code == 200
    changed = (await idp.api("GET", "/system/gc/schedule", idp.admin)).json()
    assert changed["schedule"] == {**changed["schedule"], "type": "Weekly", "cron": "0 0 0 * * 0"}
    assert changed["creation_time"] == saved["creation_time"] and changed["update_time"] > saved["update_time"]
    assert datetime.fromisoformat(changed["schedule"]["next_scheduled_time"]).isoweekday() == 7

    assert (await idp.api("PUT", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "None"}})).status_code == 200
    assert (await idp.api("GET", "/system/gc/schedule", idp.admin)).json()["schedule"]["type"] == "None"
    assert await GcService(idp.services.db, idp.services.jobs).tick(datetime.now(UTC) + timedelta(days=8)) is None


async def test_a_due_schedule_is_enqueued_once_by_two_nodes(idp: Idp) -> None:
    other = Services.from_settings(idp.settings)  # a second node on the same database
    try:
        every_ten = {"schedule": {"type": "Custom", "cron": "*/10 * * * *"}, "parameters": {"dry_run": True}}
        assert (await idp.api("PUT", "/system/gc/schedule", idp.admin, json=every_ten)).status_code == 200
        saved_at = datetime.now(UTC)
        due = saved_at.replace(minute=saved_at.minute - saved_at.minute % 10, second=0, microsecond=0) + timedelta(
            minutes=10
        )
        one, two = GcService(idp.services.db, idp.services.jobs), GcService(other.db, other.jobs)
        assert await one.tick(due - timedelta(seconds=1)) is None  # not due yet (and not before it was saved)

        for now in (due + timedelta(seconds=5), due + timedelta(minutes=3)):
            ids = await asyncio.gather(*(node.tick(now) for node in (one, two, one, two)))
            assert len(set(ids)) == 1 and ids[0] is not None
        later = await asyncio.gather(one.tick(due + timedelta(minutes=10)), two.tick(due + timedelta(minutes=10)))
        assert len(set(later)) == 1 and later[0] != ids[0]

        async with idp.services.db.read() as conn:
            rows = (await conn.execute(select(jobs.c.dedup_key, jobs.c.payload).where(jobs.c.kind == GC_RUN))).all()
        assert sorted(row.dedup_key for row in rows) == [
            f"gc.schedule:{due:%Y-%m-%dT%H:%M}", f"gc.schedule:{due + timedelta(minutes=10):%Y-%m-%dT%H:%M}"
        ]
        assert all(json.loads(row.payload)["dry_run"] is True for row in rows)
        # what each node's runner polls includes the GC schedule (retention and replication tick too)
        for node in (idp.services, other):
            assert [t for t in node.job_ticks if isinstance(getattr(t, "__self__", None), GcService)]

        await run_jobs(other)
        listed = (await idp.api("GET", "/system/gc", idp.admin)).json()
        assert [item["job_kind"] for item in listed] == ["SCHEDULE", "SCHEDULE"]
        assert {item["job_status"] for item in listed} == {"Success"}
    finally:
        await other.aclose()



async def test_a_failed_attempt_is_recorded_with_its_error(idp: Idp) -> None:
    """A run refused by read-only mode: its execution says Pending (a retry is queued) and the log why."""
    read_only = idp.settings.model_copy(deep=True)
    read_only.storage.maintenance.readonly.enabled = True
    frozen = Services.from_settings(read_only)
    try:
        assert frozen.job_ticks == []  # a read-only node does not run the schedule
        run = await idp.api("POST", "/system/gc/schedule", idp.admin, json={"schedule": {"type": "Manual"}})
        run_id = int(run.headers["Location"].rsplit("/", 1)[1])
        runner = JobRunner(frozen.jobs, frozen.job_handlers, owner="ro-node")
        assert await runner.run_once() == 1
        await runner.stop(grace=30)
    finally:
        await frozen.aclose()
    record = (await idp.api("GET", f"/system/gc/{run_id}", idp.admin)).json()
    assert record["job_status"] == "Pending" and record["end_time"] is not None
    assert record["summary"] == {"manifests": 0, "blobs": 0, "bytes_freed": 0}
    log = (await idp.api("GET", f"/system/gc/{run_id}/log", idp.admin)).text
    assert log.startswith("attempt 1 failed:") and "read-only" in log


async def test_the_job_runner_ticks_the_schedule_on_its_poll(idp: Idp) -> None:
    ticked = asyncio.Event()

    async def tick() -> None:
        ticked.set()

    runner = JobRunner(idp.services.jobs, idp.services.job_handlers, owner="tick-node", poll_seconds=0.1,
                       ticks=[tick])
    runner.start()
    try:
        await asyncio.wait_for(ticked.wait(), 30)
    finally:
        await runner.stop(grace=30)


async def test_a_failing_tick_does_not_stop_the_node_claiming(idp: Idp) -> None:
    ticked = asyncio.Event()

    async def broken() -> None:
        ticked.set()
        raise RuntimeError("a schedule that cannot be read")

    job_id = await GcService(idp.services.db, idp.services.jobs).run_now(GcParameters(dry_run=True))
    runner = JobRunner(idp.services.jobs, idp.services.job_handlers, owner="tick-node", poll_seconds=0.1,
                       ticks=[broken])
    async def succeeded() -> None:
        while (job := await idp.services.jobs.get(job_id)) is not None and job.state != "succeeded":
            await asyncio.sleep(0.05)

    runner.start()
    try:
        await asyncio.wait_for(ticked.wait(), 30)
        await asyncio.wait_for(succeeded(), 60)  # the job was still claimed and run
    finally:
        await runner.stop(grace=30)
