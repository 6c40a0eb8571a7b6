"""The durable job queue: enqueue with a dedup key, claim under a lease, finish or fail.

Why a table and not a broker: the database is already the one thing every node shares and
trusts (DESIGN "Source of truth"), a job can be enqueued in the transaction that caused it,
and an operator can see every job with one query (``GET /api/v2.0/jobs``).

Claiming. On PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` lets many nodes claim at once
without waiting on each other or taking the same row. SQLite has no row locks; its write
transactions start with ``BEGIN IMMEDIATE`` (``Database.write``), so one claimer at a time
holds the database's write lock and the next sees the rows already marked ``running``.

Leases. A claimed job is ``running`` with ``lease_owner``/``lease_until``; the runner renews
the lease (:meth:`JobQueue.heartbeat`) while the handler works. A job whose node died keeps
its stale lease; once ``lease_until`` has passed any node claims it again (another attempt).
Finishing is fenced by the owner: a node that lost its lease cannot overwrite the state the
new owner writes. Handlers must therefore be idempotent (a job may run again after a crash).

Times are the nodes' wall clocks (UTC): keep them in sync (NTP); a skew of a few seconds
only shortens or lengthens a lease by that much.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.jobs_tables import JOB_STATES, job_stops, jobs
from moorage.db.prune import prune_rows
from moorage.db.session import Database
from moorage.db.times import aware_or_none
from moorage.db.upsert import insert_ignore

__all__ = ["Job", "JobQueue", "JobStopped"]


class JobStopped(Exception):
    """Raised by a handler that noticed a stop request at a batch boundary (its work so far stays)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the job table, as a handler or the API sees it."""

    id: int
    kind: str
    dedup_key: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Job:
        return cls(
            id=row.id,
            kind=row.kind,
            dedup_key=row.dedup_key,
            payload=json.loads(row.payload),
            state=row.state,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_after=aware_or_none(row.run_after) or _now(),
            lease_owner=row.lease_owner,
            lease_until=aware_or_none(row.lease_until),
            last_error=row.last_error,
            created_at=aware_or_none(row.created_at) or _now(),
            updated_at=aware_or_none(row.updated_at) or _now(),
            finished_at=aware_or_none(row.finished_at),
        )

    def as_json(self) -> dict[str, Any]:
        """The API's representation (ISO 8601 times)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "dedup_key": self.dedup_key,
            "payload": self.payload,
            "state": self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_after": iso(self.run_after),
            "lease_owner": self.lease_owner,
            "lease_until": iso(self.lease_until),
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
        }


class JobQueue:
    """Operations on the job table; every method is one short transaction."""

    def __init__(self, db: Database, *, lease: timedelta = timedelta(seconds=60)) -> None:
        self.db = db
        self.lease = lease

    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        dedup_key: str | None = None,
        run_after: datetime | None = None,
        max_attempts: int = 5,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Add a job and return its id; with ``dedup_key`` a second enqueue returns the first job's id.

        Pass ``conn`` to enqueue inside the caller's write transaction (the job then exists iff
        the event that caused it was committed). ``ValueError`` for an empty ``kind``.
        """
        if not kind or len(kind) > 64:
            raise ValueError("a job kind is 1 to 64 characters")
        stamp = _now()
        values = {
            "kind": kind,
            "dedup_key": dedup_key,
            "payload": json.dumps(payload or {}, sort_keys=True),
            "state": "queued",
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": run_after or stamp,
            "created_at": stamp,
            "updated_at": stamp,
        }
        if conn is not None:
            return await self._insert(conn, values)
        async with self.db.write() as own:
            return await self._insert(own, values)

    @staticmethod
    async def _insert(conn: AsyncConnection, values: dict[str, Any]) -> int:
        if values["dedup_key"] is None:
            return int((await conn.execute(jobs.insert().values(**values).returning(jobs.c.id))).scalar_one())
        dialect_insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
        statement = dialect_insert(jobs).values(**values).on_conflict_do_nothing(index_elements=["dedup_key"])
        inserted = (await conn.execute(statement.returning(jobs.c.id))).scalar_one_or_none()
        if inserted is not None:
            return int(inserted)
        existing = await conn.execute(select(jobs.c.id).where(jobs.c.dedup_key == values["dedup_key"]))
        return int(existing.scalar_one())

    async def claim(self, owner: str, limit: int = 1, kinds: Sequence[str] | None = None) -> list[Job]:
        """Take up to ``limit`` due jobs (queued, or running under an expired lease) for ``owner``.

        A job whose lease expired after its last allowed attempt is marked ``failed`` instead.
        """
        stamp = _now()
        due = or_(
            and_(jobs.c.state == "queued", jobs.c.run_after <= stamp),
            and_(jobs.c.state == "running", jobs.c.lease_until < stamp),
        )
        query = select(jobs.c.id, jobs.c.state, jobs.c.attempts, jobs.c.max_attempts).where(due)
        if kinds is not None:
            query = query.where(jobs.c.kind.in_(list(kinds)))
        query = query.order_by(jobs.c.run_after, jobs.c.id).limit(limit)
        async with self.db.write() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            exhausted = [r.id for r in rows if r.state == "running" and r.attempts >= r.max_attempts]
            claimable = [r.id for r in rows if r.id not in exhausted]
            if exhausted:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(exhausted))
                    .values(
                        state="failed",
                        last_error="the lease expired on the last attempt (its node died or hung)",
                        lease_owner=None,
                        lease_until=None,
                        updated_at=stamp,
                        finished_at=stamp,
                    )
                )
            if not claimable:
                return []
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(claimable))
                .values(
                    state="running",
                    lease_owner=owner,
                    lease_until=stamp + self.lease,
                    attempts=jobs.c.attempts + 1,
                    updated_at=stamp,
                )
            )
            claimed = (await conn.execute(select(jobs).where(jobs.c.id.in_(claimable)).order_by(jobs.c.id))).all()
        return [Job.from_row(row) for row in claimed]

    async def heartbeat(self, owner: str, job_ids: Sequence[int]) -> set[int]:
        """Renew ``owner``'s leases on ``job_ids``; returns the ids it still holds (others were lost)."""
        if not job_ids:
            return set()
        stamp = _now()
        async with self.db.write() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.lease_owner == owner, jobs.c.state == "running")
                .values(lease_until=stamp + self.lease, updated_at=stamp)
            )
            held = await conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_(list(job_ids)), jobs.c.lease_owner == owner, jobs.c.state == "running"
                )
            )
            return set(held.scalars())

    async def succeed(self, owner: str, job_id: int) -> bool:
        """Mark the job done; ``False`` when ``owner`` no longer held its lease (nothing written)."""
        stamp = _now()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.state == "running")
                .values(state="succeeded", lease_owner=None, lease_until=None, updated_at=stamp, finished_at=stamp)
            )
        return bool(result.rowcount)

    async def fail(self, owner: str, job_id: int, error: str, *, retry_in: timedelta | None = None) -> bool:
        """Record ``error``; queue another attempt after ``retry_in`` (default: backoff) unless exhausted."""
        stamp = _now()
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    select(jobs.c.attempts, jobs.c.max_attempts).where(
                        jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.state == "running"
                    )
                )
            ).first()
            if row is None:
                return False
            values: dict[str, Any] = {
                "last_error": error[:4000],
                "lease_owner": None,
                "lease_until": None,
                "updated_at": stamp,
            }
            if row.attempts >= row.max_attempts:
                values.update(state="failed", finished_at=stamp)
            else:
                delay = retry_in if retry_in is not None else timedelta(seconds=min(300, 2**row.attempts))
                values.update(state="queued", run_after=stamp + delay)
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        return True

    async def release(self, owner: str, job_ids: Sequence[int]) -> None:
        """Give jobs back without counting the attempt (a node shutting down cleanly)."""
        if not job_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.lease_owner == owner, jobs.c.state == "running")
                .values(
                    state="queued",
                    attempts=jobs.c.attempts - 1,
                    lease_owner=None,
                    lease_until=None,
                    run_after=_now(),
                    updated_at=_now(),
                )
            )

    async def request_stop(self, job_id: int) -> str | None:
        """Ask a job to stop; returns its state after the request, ``None`` when there is no such job.

        A queued job is ``stopped`` at once (no node will run it). A running one gets a stop
        request that its handler notices at its next batch boundary (:meth:`stop_requested`),
        on whichever node runs it. A finished job is left as it is. Asking twice is harmless.
        """
        stamp = _now()
        async with self.db.write() as conn:
            state = (await conn.execute(select(jobs.c.state).where(jobs.c.id == job_id))).scalar_one_or_none()
            if state == "queued":
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.state == "queued")
                    .values(state="stopped", last_error="stopped before it started", updated_at=stamp,
                            finished_at=stamp)
                )
                return "stopped"
            if state == "running":
                await insert_ignore(conn, job_stops, {"job_id": job_id, "requested_at": stamp}, ["job_id"])
            return None if state is None else str(state)

    async def stop_requested(self, job_id: int) -> bool:
        """Whether someone asked the job to stop (a handler's check at a batch boundary)."""
        async with self.db.read() as conn:
            found = await conn.execute(select(job_stops.c.job_id).where(job_stops.c.job_id == job_id))
            return found.first() is not None

    async def stopped(self, owner: str, job_id: int) -> bool:
        """Mark the job ``stopped`` (its handler stopped on request); ``False`` when ``owner`` lost it."""
        stamp = _now()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.state == "running")
                .values(state="stopped", last_error="stopped on request", lease_owner=None, lease_until=None,
                        updated_at=stamp, finished_at=stamp)
            )
        return bool(result.rowcount)

    async def get(self, job_id: int) -> Job | None:
        """One job, or ``None``."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        return Job.from_row(row) if row is not None else None

    async def list(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[Job]:
        """Newest first; ``before`` pages by id. ``ValueError`` for an unknown state."""
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"state must be one of {', '.join(JOB_STATES)}")
        query = select(jobs)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        if before is not None:
            query = query.where(jobs.c.id < before)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(jobs.c.id.desc()).limit(limit))).all()
        return [Job.from_row(row) for row in rows]

    async def backlog(self) -> builtins.list[tuple[str, str, int, datetime | None]]:
        """``(kind, state, count, oldest run_after)`` of queued and running jobs (the metrics' queue depth
        and age); finished jobs are left out, so the query stays on the state index however long the history."""
        query = (
            select(jobs.c.kind, jobs.c.state, func.count().label("n"), func.min(jobs.c.run_after).label("oldest"))
            .where(jobs.c.state.in_(("queued", "running")))
            .group_by(jobs.c.kind, jobs.c.state)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(r.kind), str(r.state), int(r.n), aware_or_none(r.oldest)) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, zero when none)."""
        async with self.db.read() as conn:
            result = await conn.execute(select(jobs.c.state, func.count().label("n")).group_by(jobs.c.state))
            found = {str(row.state): int(row.n) for row in result}
        return {state: found.get(state, 0) for state in JOB_STATES}

    async def rearm(self, dedup_key: str) -> bool:
        """Queue the job holding ``dedup_key`` again, now, if it has ended (succeeded or failed).

        A dedup key stays taken after its job ends, so enqueueing the same work again returns the
        old job; work that must be redone on demand (a site copy whose bytes went since) re-arms it.
        A queued or running job is left alone. Whether a job was re-armed.
        """
        async with self.db.write() as conn:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.dedup_key == dedup_key, jobs.c.state.in_(["failed", "succeeded"]))
                .values(state="queued", attempts=0, run_after=_now(), finished_at=None, last_error=None,
                        updated_at=_now())
            )
        return bool(result.rowcount)

    async def prune(self, before: datetime) -> int:
        """Delete jobs that finished (succeeded, failed, stopped) before ``before``; unfinished ones stay."""
        finished = jobs.c.state.in_(("succeeded", "failed", "stopped"))
        return await prune_rows(self.db, jobs, finished, jobs.c.finished_at < before)
