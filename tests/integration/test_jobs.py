"""The durable job table on SQLite and PostgreSQL: dedup, claims, leases, retries, the API.

Each test uses its own job kind (``unique_name``), so tests sharing the session database never
claim each other's jobs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from moorage.db.jobs_tables import jobs
from moorage.db.session import Database
from moorage.jobs import HandlerRegistry, Job, JobQueue, JobRunner
from moorage.services import Services
from tests.integration.conftest import unique_name


def _kind() -> str:
    return unique_name("job").replace("/", "-")


async def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (async) until true; fail with a clear message at ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


async def test_one_event_one_job_whatever_number_of_nodes(database_url: str) -> None:
    nodes = [Database(database_url) for _ in range(3)]
    try:
        kind = _kind()
        ids = await asyncio.gather(
            *(JobQueue(db).enqueue(kind, {"n": 1}, dedup_key=f"{kind}:event-1") for db in nodes for _ in range(3))
        )
        assert len(set(ids)) == 1
        listed = await JobQueue(nodes[0]).list(kind=kind)
        assert [job.id for job in listed] == [ids[0]]
        assert listed[0].state == "queued" and listed[0].payload == {"n": 1}
        other = await JobQueue(nodes[0]).enqueue(kind, dedup_key=f"{kind}:event-2")
        assert other != ids[0]
    finally:
        for db in nodes:
            await db.dispose()


async def test_two_nodes_race_for_1000_jobs_each_runs_once(database_url: str) -> None:
    kind = _kind()
    first, second = Database(database_url), Database(database_url)
    runs: Counter[int] = Counter()
    runners_of: dict[int, set[str]] = {}

    def handler_for(owner: str):  # type: ignore[no-untyped-def]
        async def handle(job: Job) -> None:
            runs[job.id] += 1
            runners_of.setdefault(job.id, set()).add(owner)
            await asyncio.sleep(0)

        return handle

    try:
        queue = JobQueue(first)
        async with first.write() as conn:  # one transaction: enqueueing is not what is measured
            ids = [await queue.enqueue(kind, {"i": i}, conn=conn) for i in range(1000)]
        runners = []
        for owner, db in (("node-a", first), ("node-b", second)):
            handlers = HandlerRegistry()
            handlers.register(kind, handler_for(owner))
            runners.append(
                JobRunner(JobQueue(db), handlers, owner=owner, concurrency=16, poll_seconds=0.05)
            )
        for runner in runners:
            runner.start()

        async def all_done() -> bool:
            states = Counter(job.state for job in await queue.list(kind=kind, limit=2000))
            return states["succeeded"] == 1000

        await _wait_for(all_done, timeout=120)
        for runner in runners:
            await runner.stop()
        assert set(runs) == set(ids)
        assert all(count == 1 for count in runs.values()), [i for i, c in runs.items() if c != 1][:10]
        owners = Counter(next(iter(o)) for o in runners_of.values())
        assert set(owners) == {"node-a", "node-b"}, owners  # both really competed
    finally:
        await first.dispose()
        await second.dispose()


async def test_expired_lease_is_claimed_again_and_the_old_owner_is_fenced(database_url: str) -> None:
    db = Database(database_url)
    try:
        queue = JobQueue(db, lease=timedelta(seconds=1))
        kind = _kind()
        job_id = await queue.enqueue(kind)
        [claimed] = await queue.claim("dead-node", kinds=[kind])
        assert claimed.id == job_id and claimed.attempts == 1 and claimed.lease_owner == "dead-node"
        assert await queue.claim("live-node", kinds=[kind]) == []  # the lease still holds

        retaken: list[Job] = []

        async def reclaimed() -> bool:
            retaken.extend(await queue.claim("live-node", kinds=[kind]))
            return bool(retaken)

        await _wait_for(reclaimed)
        assert retaken[0].id == job_id and retaken[0].attempts == 2
        assert await queue.succeed("dead-node", job_id) is False  # fenced: it lost the lease
        assert await queue.heartbeat("dead-node", [job_id]) == set()
        assert await queue.succeed("live-node", job_id) is True
        done = await queue.get(job_id)
        assert done is not None and done.state == "succeeded" and done.finished_at is not None
    finally:
        await db.dispose()


async def test_failures_retry_then_fail_with_the_last_error(database_url: str) -> None:
    db = Database(database_url)
    try:
        queue = JobQueue(db)
        kind = _kind()
        job_id = await queue.enqueue(kind, max_attempts=2)
        for attempt in (1, 2):
            [job] = await queue.claim("n", kinds=[kind])
            assert job.attempts == attempt
            assert await queue.fail("n", job_id, f"boom {attempt}", retry_in=timedelta(0))
        job = await queue.get(job_id)
        assert job is not None and job.state == "failed" and job.last_error == "boom 2"
        assert await queue.claim("n", kinds=[kind]) == []
    finally:
        await db.dispose()


async def test_runner_retries_a_raising_handler_and_releases_on_stop(database_url: str) -> None:
    db = Database(database_url)
    try:
        queue = JobQueue(db)
        flaky, stuck = _kind(), _kind()
        calls: list[int] = []
        started = asyncio.Event()

        async def flaky_handler(job: Job) -> None:
            calls.append(job.attempts)
            if job.attempts == 1:
                raise RuntimeError("first attempt fails")

        async def stuck_handler(job: Job) -> None:
            started.set()
            await asyncio.Event().wait()

        handlers = HandlerRegistry()
        handlers.register(flaky, flaky_handler)
        handlers.register(stuck, stuck_handler)
        with pytest.raises(ValueError):
            handlers.register(flaky, flaky_handler)
        runner = JobRunner(queue, handlers, owner="runner", poll_seconds=0.05)
        flaky_id = await queue.enqueue(flaky)
        stuck_id = await queue.enqueue(stuck)
        runner.start()

        async def flaky_failed_once() -> bool:
            job = await queue.get(flaky_id)
            return job is not None and job.last_error is not None

        await _wait_for(flaky_failed_once)
        async with db.write() as conn:  # make the retry due now instead of after the backoff
            await conn.execute(update(jobs).where(jobs.c.id == flaky_id).values(run_after=jobs.c.created_at))

        async def flaky_done() -> bool:
            job = await queue.get(flaky_id)
            return job is not None and job.state == "succeeded"

        await _wait_for(flaky_done)
        await asyncio.wait_for(started.wait(), 30)
        await runner.stop(grace=0.1)
        assert calls == [1, 2]
        released = await queue.get(stuck_id)
        assert released is not None and released.state == "queued" and released.attempts == 0
        assert released.lease_owner is None
    finally:
        await db.dispose()


async def test_jobs_api_lists_state(client: httpx.AsyncClient, services: Services) -> None:
    kind = _kind()
    # The database is shared with other tests: the counts are compared with those just before.
    queued_before = (await client.get("/api/v2.0/jobs", params={"kind": kind})).json()["counts"].get("queued", 0)
    job_id = await services.jobs.enqueue(kind, {"repo": "x"})
    listed = await client.get("/api/v2.0/jobs", params={"kind": kind})
    assert listed.status_code == 200
    body = listed.json()
    assert [j["id"] for j in body["jobs"]] == [job_id]
    assert body["jobs"][0]["state"] == "queued" and body["jobs"][0]["payload"] == {"repo": "x"}
    assert body["counts"]["queued"] == queued_before + 1
    one = await client.get(f"/api/v2.0/jobs/{job_id}")
    assert one.status_code == 200 and one.json()["kind"] == kind
    assert (await client.get("/api/v2.0/jobs/999999999")).status_code == 404
    assert (await client.get("/api/v2.0/jobs", params={"state": "bogus"})).status_code == 400
    assert (await client.get("/api/v2.0/jobs", params={"limit": "0"})).status_code == 400


async def test_ping_and_health(client: httpx.AsyncClient) -> None:
    ping = await client.get("/api/v2.0/ping")
    assert ping.status_code == 200 and ping.text == "Pong"
    health = await client.get("/api/v2.0/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "healthy"
    assert {c["name"]: c["status"] for c in body["components"]} == {"database": "healthy", "storage": "healthy"}
    # A measured duration in milliseconds: a float, never negative (a clock mix-up would show here).
    assert all(isinstance(c["latency_ms"], float) and c["latency_ms"] >= 0 for c in body["components"]), body


async def test_rearm_queues_an_ended_job_again_and_leaves_a_live_one(database_url: str) -> None:
    db = Database(database_url)
    try:
        queue, kind = JobQueue(db), _kind()
        job_id = await queue.enqueue(kind, dedup_key=f"{kind}:work")
        assert await queue.rearm(f"{kind}:work") is False  # still queued: nothing to do
        async with db.write() as conn:
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="failed", attempts=5,
                                                                              last_error="source down"))
        assert await queue.enqueue(kind, dedup_key=f"{kind}:work") == job_id  # the key is still taken
        assert await queue.rearm(f"{kind}:work") is True
        job = await queue.get(job_id)
        assert job is not None
        assert (job.state, job.attempts, job.last_error, job.finished_at) == ("queued", 0, None, None)
        assert await queue.rearm(f"{kind}:other") is False
    finally:
        await db.dispose()
