"""A node that dies in the middle of a job: its job runs again on another node after the lease."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from moorage.db.session import Database
from moorage.jobs import HandlerRegistry, Job, JobQueue, JobRunner
from tests.e2e.servers import throwaway_postgres_database


async def test_killed_nodes_job_is_rerun_after_its_lease(postgres_admin_url: str, tmp_path: Path) -> None:
    from moorage.db.migrate import upgrade

    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_jobs") as url:
        upgrade(url)
        db = Database(url)
        marker = tmp_path / "claimed"
        worker = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "tests.ha.job_worker", url, "ha.kill", str(marker)],
            cwd=Path(__file__).resolve().parents[2], start_new_session=True,
        )
        try:
            queue = JobQueue(db, lease=timedelta(seconds=2))
            job_id = await queue.enqueue("ha.kill", {"what": "survive a dead node"})
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert worker.poll() is None, "the worker process died on its own"
                assert time.monotonic() < deadline, "the worker never claimed the job"
                await asyncio.sleep(0.05)
            assert marker.read_text() == str(job_id)
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            running = await queue.get(job_id)
            assert running is not None and running.state == "running" and running.lease_owner == "doomed-node"

            ran: list[Job] = []
            handlers = HandlerRegistry()

            async def record(job: Job) -> None:
                ran.append(job)

            handlers.register("ha.kill", record)
            survivor = JobRunner(queue, handlers, owner="survivor", poll_seconds=0.1)
            survivor.start()
            try:
                while True:
                    job = await queue.get(job_id)
                    assert job is not None
                    if job.state == "succeeded":
                        break
                    assert time.monotonic() < deadline + 60, job
                    await asyncio.sleep(0.1)
            finally:
                await survivor.stop()
            assert [j.id for j in ran] == [job_id]
            assert ran[0].attempts == 2 and ran[0].lease_owner == "survivor"
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            await db.dispose()
