"""How GC is run through the API: the schedule, manual runs, and the record of every execution.

An execution *is* a ``gc.run`` job (its id is the job's id): the job table already makes one
execution cluster-wide and knows its state; ``gc_executions`` adds what only the run knows
(start, end, counts, the log), written by the handler when the run ends.

The schedule is one row. Every node's job runner calls :meth:`GcService.tick` on each poll;
the tick enqueues the latest due minute (within the last hour, not before the schedule was
saved) with the dedup key ``gc.schedule:<minute>``, so however many nodes tick at once, one
job per due minute exists, and whichever node claims it runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from moorage.db.jobs_tables import gc_executions, gc_schedule, jobs
from moorage.db.session import Database
from moorage.db.times import aware_or_none
from moorage.jobs.cron import Cron, CronError
from moorage.jobs.queue import JobQueue

__all__ = [
    "GC_RUN",
    "GcExecution",
    "GcParameters",
    "GcSchedule",
    "GcService",
    "ScheduleError",
    "record_execution",
]

GC_RUN = "gc.run"
#: Harbor's schedule types; ``None`` removes the schedule, ``Manual`` runs once now.
SCHEDULE_TYPES = ("None", "Manual", "Hourly", "Daily", "Weekly", "Custom")
#: Harbor's crons for the named types (6 fields, seconds first), used when the request has none.
DEFAULT_CRONS = {"Hourly": "0 0 * * * *", "Daily": "0 0 0 * * *", "Weekly": "0 0 0 * * 0"}
#: How far back a tick looks for a due minute it has not enqueued (nodes down, a slow poll).
_LOOKBACK = timedelta(hours=1)
_STATUS = {
    "queued": "Pending", "running": "Running", "succeeded": "Success", "failed": "Error", "stopped": "Stopped",
}


class ScheduleError(ValueError):
    """Bad schedule input; ``field`` is the request field to name in the 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class GcParameters:
    """What a run deletes, as Harbor's ``parameters`` / ``job_parameters`` carry it."""

    delete_untagged: bool = False
    dry_run: bool = False

    @classmethod
    def parse(cls, parameters: Mapping[str, Any] | None, job_parameters: str | None) -> GcParameters:
        """Merge Harbor's ``job_parameters`` (a JSON string) under ``parameters``; unknown keys
        (Harbor's ``workers``) are ignored, a non-boolean flag is a :class:`ScheduleError`."""
        merged: dict[str, Any] = {}
        if job_parameters:
            try:
                decoded = json.loads(job_parameters)
            except ValueError:
                raise ScheduleError("job_parameters", "is not a JSON object") from None
            if not isinstance(decoded, dict):
                raise ScheduleError("job_parameters", "is not a JSON object")
            merged.update(decoded)
        merged.update(parameters or {})
        flags: dict[str, bool] = {}
        for name in ("delete_untagged", "dry_run"):
            value = merged.get(name, False)
            if not isinstance(value, bool):
                raise ScheduleError(f"parameters.{name}", f"must be true or false, not {value!r}")
            flags[name] = value
        return cls(**flags)

    def as_json(self) -> dict[str, bool]:
        return {"delete_untagged": self.delete_untagged, "dry_run": self.dry_run}


@dataclass(frozen=True, slots=True)
class GcSchedule:
    type: str
    cron: str
    parameters: GcParameters
    created_at: datetime
    updated_at: datetime

    def next_due(self, now: datetime) -> datetime | None:
        return Cron.parse(self.cron).next_due(now)


@dataclass(frozen=True, slots=True)
class GcExecution:
    """One ``gc.run`` job and, once it ended, what it did."""

    id: int
    trigger: str  # "Manual" or "Schedule"
    parameters: dict[str, Any]
    status: str  # Harbor's: Pending, Running, Success, Error, Stopped
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    manifests: int
    blobs: int
    bytes_freed: int
    log: str


def parse_schedule(schedule_type: str, cron: str | None) -> tuple[str, str]:
    """The type and the cron to store (validated), or :class:`ScheduleError` naming the field."""
    if schedule_type not in SCHEDULE_TYPES:
        raise ScheduleError("schedule.type", f"must be one of {', '.join(SCHEDULE_TYPES)}, not {schedule_type!r}")
    if schedule_type in ("None", "Manual"):
        return schedule_type, ""
    text = (cron or "").strip() or DEFAULT_CRONS.get(schedule_type, "")
    if not text:
        raise ScheduleError("schedule.cron", "a Custom schedule needs a cron expression (e.g. '0 0 3 * * *')")
    try:
        Cron.parse(text)
    except CronError as exc:
        raise ScheduleError("schedule.cron", str(exc)) from None
    return schedule_type, text


class GcService:
    """The schedule, manual runs and execution history (every method is one short transaction)."""

    def __init__(self, db: Database, queue: JobQueue) -> None:
        self.db = db
        self.queue = queue

    async def schedule(self) -> GcSchedule | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(gc_schedule).where(gc_schedule.c.id == 1))).first()
        if row is None:
            return None
        return GcSchedule(
            type=row.schedule_type,
            cron=row.cron,
            parameters=GcParameters(**json.loads(row.parameters)),
            created_at=aware_or_none(row.created_at) or datetime.now(UTC),
            updated_at=aware_or_none(row.updated_at) or datetime.now(UTC),
        )

    async def set_schedule(self, schedule_type: str, cron: str | None, parameters: GcParameters) -> int | None:
        """Store (or with ``None`` remove) the schedule; ``Manual`` enqueues a run now and returns its id.

        Validation happens before any write: a :class:`ScheduleError` leaves everything as it was.
        """
        kind, text = parse_schedule(schedule_type, cron)
        if kind == "Manual":
            return await self.run_now(parameters)
        stamp = datetime.now(UTC)
        async with self.db.write() as conn:
            created = (await conn.execute(select(gc_schedule.c.created_at).where(gc_schedule.c.id == 1))).scalar()
            await conn.execute(delete(gc_schedule))
            if kind != "None":
                await conn.execute(
                    gc_schedule.insert().values(
                        id=1, schedule_type=kind, cron=text, parameters=json.dumps(parameters.as_json()),
                        created_at=created or stamp, updated_at=stamp,
                    )
                )
        return None

    async def run_now(self, parameters: GcParameters, *, trigger: str = "Manual", dedup_key: str | None = None) -> int:
        payload = {**parameters.as_json(), "sweep_orphans": False, "trigger": trigger}
        return await self.queue.enqueue(GC_RUN, payload, dedup_key=dedup_key, max_attempts=3)

    async def tick(self, now: datetime | None = None) -> int | None:
        """Enqueue the schedule's latest due minute, once cluster-wide; the job's id, or ``None``."""
        current = now or datetime.now(UTC)
        saved = await self.schedule()
        if saved is None:
            return None
        due = Cron.parse(saved.cron).last_due(current, max(saved.updated_at, current - _LOOKBACK))
        if due is None:
            return None
        key = f"gc.schedule:{due.astimezone(UTC):%Y-%m-%dT%H:%M}"
        return await self.run_now(saved.parameters, trigger="Schedule", dedup_key=key)

    async def stop(self, execution_id: int) -> str | None:
        """Ask a GC execution to stop (Harbor's ``PUT /system/gc/{id}``); its job state afterwards, or
        ``None`` when no GC execution has that id. Queued: stopped at once; running: at its next
        batch boundary, on whichever node runs it; ended: left as it is."""
        if await self.execution(execution_id) is None:
            return None
        return await self.queue.request_stop(execution_id)

    async def executions(self, offset: int, limit: int) -> tuple[list[GcExecution], int]:
        """A page of executions, newest first, and how many there are."""
        query = (
            select(jobs, gc_executions)
            .outerjoin(gc_executions, gc_executions.c.job_id == jobs.c.id)
            .where(jobs.c.kind == GC_RUN)
        )
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).where(jobs.c.kind == GC_RUN))).scalar_one()
            rows = (await conn.execute(query.order_by(jobs.c.id.desc()).offset(offset).limit(limit))).all()
        return [self._execution(row) for row in rows], int(total)

    async def execution(self, execution_id: int) -> GcExecution | None:
        query = (
            select(jobs, gc_executions)
            .outerjoin(gc_executions, gc_executions.c.job_id == jobs.c.id)
            .where(jobs.c.kind == GC_RUN, jobs.c.id == execution_id)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return self._execution(row) if row is not None else None

    @staticmethod
    def _execution(row: Any) -> GcExecution:
        payload = json.loads(row.payload)
        status = _STATUS.get(row.state, row.state)
        log = row.log if row.log is not None else ""
        if not log and row.last_error:  # the handler never ended (its node died, or stopped while queued)
            log = f"{'stopped' if row.state == 'stopped' else 'error'}: {row.last_error}\n"
        if not log:
            log = f"{status}: the run has not ended yet\n"
        return GcExecution(
            id=row.id,
            trigger=str(payload.get("trigger", "Manual")),
            parameters={k: payload[k] for k in ("delete_untagged", "dry_run") if k in payload},
            status=status,
            created_at=aware_or_none(row.created_at) or datetime.now(UTC),
            updated_at=aware_or_none(row.updated_at) or datetime.now(UTC),
            started_at=aware_or_none(row.started_at),
            ended_at=aware_or_none(row.ended_at) or aware_or_none(row.finished_at),
            manifests=row.manifests or 0,
            blobs=row.blobs or 0,
            bytes_freed=row.bytes_freed or 0,
            log=log,
        )


#: Lines of deleted items a log keeps; the summary line always follows.
_LOG_ITEMS = 10_000


def execution_log(
    manifests: Sequence[tuple[str, str]], blobs: Sequence[tuple[str, int]], summary: str, dry_run: bool
) -> str:
    """The text ``GET /system/gc/{id}/log`` returns: what was deleted (as ``--dry-run`` prints it), then the summary."""
    lines = [f"manifest {repository}@{digest}" for repository, digest in manifests]
    lines += [f"blob {digest} {size}" for digest, size in blobs]
    kept = lines[:_LOG_ITEMS]
    if len(lines) > len(kept):
        kept.append(f"... and {len(lines) - len(kept)} more")
    header = "dry run: nothing was deleted; a real run would delete:" if dry_run else "deleted:"
    return "\n".join([header, *kept, summary]) + "\n"


async def record_execution(
    db: Database, job_id: int, started: datetime, ended: datetime, counts: tuple[int, int, int], log: str
) -> None:
    """Write (or, for a retried job, replace) the execution's record."""
    manifests, blob_count, bytes_freed = counts
    async with db.write() as conn:
        await conn.execute(delete(gc_executions).where(gc_executions.c.job_id == job_id))
        await conn.execute(
            gc_executions.insert().values(
                job_id=job_id, started_at=started, ended_at=ended, manifests=manifests, blobs=blob_count,
                bytes_freed=bytes_freed, log=log,
            )
        )
