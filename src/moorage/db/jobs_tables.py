"""Tables of the durable job queue and of the cache fence, on the shared ``metadata``.

``jobs`` lives in the same database as everything else (DESIGN: "a job table in the same
database, claimed with row locks, so any node may run any job"): a job is enqueued in the
same place the event that caused it was committed, and every node can claim it.

``cache_state`` holds one row: the cache *generation*. A node that could not invalidate a
Redis entry after a delete bumps it, which makes every key written under the old generation
unreachable on every node (see ``moorage.cache.fence``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["JOB_STATES", "cache_state", "gc_executions", "gc_schedule", "job_stops", "jobs"]

#: ``queued`` → ``running`` → ``succeeded`` | ``failed`` (or back to ``queued`` for a retry);
#: ``stopped`` when an operator stopped it (queued: at once; running: at its next batch boundary).
JOB_STATES = ("queued", "running", "succeeded", "failed", "stopped")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    # One event creates one job whatever number of nodes saw it: every node enqueues with the
    # same key and the unique constraint keeps the first. NULL keys never conflict.
    Column("dedup_key", String(255), nullable=True, unique=True),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_after", TIMESTAMP, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", TIMESTAMP, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    Column("finished_at", TIMESTAMP, nullable=True),
    Index("ix_jobs_state_run_after", "state", "run_after"),
)

cache_state = Table(
    "cache_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

#: The GC schedule (one row, id 1, or none): Harbor's ``/system/gc/schedule`` (see docs/gc.md).
gc_schedule = Table(
    "gc_schedule",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schedule_type", String(16), nullable=False),
    Column("cron", String(255), nullable=False),
    Column("parameters", Text, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

#: What a ``gc.run`` job did, written by its handler when the run ends; the job row holds the state.
gc_executions = Table(
    "gc_executions",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("started_at", TIMESTAMP, nullable=True),
    Column("ended_at", TIMESTAMP, nullable=True),
    Column("manifests", Integer, nullable=False),
    Column("blobs", Integer, nullable=False),
    Column("bytes_freed", BigInteger, nullable=False),
    Column("log", Text, nullable=False),
)

#: Stop requests for running jobs (``moorage gc stop``, ``PUT /system/gc/{id}``): the handler polls
#: :meth:`moorage.jobs.queue.JobQueue.stop_requested` at its batch boundaries, whichever node runs it.
job_stops = Table(
    "job_stops",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("requested_at", TIMESTAMP, nullable=False),
)
