"""``history.prune``: finished jobs and webhook deliveries older than ``jobs.history_days`` go, the rest stays.

Runs through the registered handler on a real job runner (SQLite and PostgreSQL), with a real webhook
delivery to a local receiver; rows are backdated with an UPDATE, the only way to make them old.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from moorage.db.jobs_tables import gc_executions, jobs
from moorage.db.webhook_tables import webhook_deliveries
from moorage.jobs import JobRunner
from moorage.jobs.history import HISTORY_PRUNE
from tests.integration.oci_client import push_image
from tests.integration.test_identity_helpers import Idp, make_idp
from tests.integration.webhook_receiver import Receiver


@pytest.fixture
async def idp(database_url: str, tmp_path: Path) -> AsyncIterator[Idp]:
    async for value in make_idp(database_url, tmp_path, MOORAGE_WEBHOOKS__ALLOW_NETWORKS="[127.0.0.1/32]"):
        runner = JobRunner(value.services.jobs, value.services.job_handlers, poll_seconds=0.05)
        runner.start()
        try:
            yield value
        finally:
            await runner.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


async def _finished(idp: Idp, job_id: int) -> str:
    for _ in range(600):  # a bound, not a timing assertion: the runner polls every 50 ms
        job = await idp.services.jobs.get(job_id)
        assert job is not None
        if job.state in ("succeeded", "failed"):
            return job.state
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def test_old_finished_rows_are_pruned_and_everything_else_is_kept(idp: Idp, receiver: Receiver) -> None:
    project = await idp.project()
    r = await idp.api("POST", f"/projects/{project}/webhook/policies", idp.admin, json={
        "name": "ci", "description": "", "enabled": True, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": receiver.url, "skip_cert_verify": False}]})
    assert r.status_code == 201, r.text
    policy_id = int(r.headers["Location"].rsplit("/", 1)[1])
    idp.http.headers.update(idp.admin)
    try:
        await push_image(idp.http, f"{project}/app", "v1", [b"old"])
        await push_image(idp.http, f"{project}/app", "v2", [b"new"])
    finally:
        del idp.http.headers["Authorization"]
    for _ in range(600):
        if len(receiver.snapshot()) >= 2:
            break
        await asyncio.sleep(0.05)
    db, queue = idp.services.db, idp.services.jobs
    async with db.read() as conn:
        delivered = sorted(row.id for row in await conn.execute(
            select(webhook_deliveries.c.id).where(webhook_deliveries.c.policy_id == policy_id,
                                                  webhook_deliveries.c.status == "Success")))
    assert len(delivered) == 2
    old_delivery, new_delivery = delivered

    kind = f"prune-test-{policy_id}"
    old_done, old_failed, old_queued, new_done = [await queue.enqueue(kind) for _ in range(4)]
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with db.write() as conn:
        await conn.execute(update(jobs).where(jobs.c.id.in_([old_done, new_done])).values(
            state="succeeded", finished_at=datetime.now(UTC)))
        await conn.execute(update(jobs).where(jobs.c.id == old_failed).values(state="failed"))
        # Old and finished: done and failed; old but never run (a far-future run_after keeps it queued).
        await conn.execute(update(jobs).where(jobs.c.id.in_([old_done, old_failed])).values(finished_at=long_ago,
                                                                                          created_at=long_ago))
        await conn.execute(update(jobs).where(jobs.c.id == old_queued).values(
            created_at=long_ago, run_after=datetime.now(UTC) + timedelta(days=1)))
        await conn.execute(insert(gc_executions).values(job_id=old_done, manifests=0, blobs=0, bytes_freed=0, log=""))
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == old_delivery)
                           .values(updated_at=long_ago))
        # Ended long ago by its timestamp but still waiting for a retry: not finished, kept.
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == new_delivery)
                           .values(updated_at=long_ago, status="Scheduled"))

    prune = await queue.enqueue(HISTORY_PRUNE, {"days": 30})
    assert await _finished(idp, prune) == "succeeded"

    async with db.read() as conn:
        kept_jobs = {row.id for row in await conn.execute(select(jobs.c.id).where(jobs.c.kind == kind))}
        kept_deliveries = {row.id for row in await conn.execute(
            select(webhook_deliveries.c.id).where(webhook_deliveries.c.policy_id == policy_id))}
        executions = (await conn.execute(select(gc_executions.c.job_id).where(gc_executions.c.job_id == old_done))).all()
    assert kept_jobs == {old_queued, new_done}
    assert kept_deliveries == {new_delivery}
    assert executions == []  # went with its job


async def test_history_days_zero_schedules_no_prune(database_url: str, tmp_path: Path) -> None:
    async for value in make_idp(database_url, tmp_path, MOORAGE_JOBS__HISTORY_DAYS="0"):
        assert HISTORY_PRUNE not in {p.kind for p in value.services.periodic_jobs}
    async for value in make_idp(database_url, tmp_path / "default"):
        assert [p.payload for p in value.services.periodic_jobs if p.kind == HISTORY_PRUNE] == [{"days": 30}]
