"""A node's job runner in its own process, for the kill -9 test: ``python -m tests.ha.job_worker URL KIND MARKER``.

Its handler writes the job id to MARKER and then hangs, as a node would when it dies mid-job.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from moorage.db.session import Database
from moorage.jobs import HandlerRegistry, Job, JobQueue, JobRunner


async def main(database_url: str, kind: str, marker: Path) -> None:
    db = Database(database_url)
    handlers = HandlerRegistry()

    async def hang(job: Job) -> None:
        marker.write_text(str(job.id))
        await asyncio.Event().wait()

    handlers.register(kind, hang)
    runner = JobRunner(JobQueue(db, lease=timedelta(seconds=2)), handlers, owner="doomed-node", poll_seconds=0.1)
    runner.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
