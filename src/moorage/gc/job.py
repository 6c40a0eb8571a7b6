"""GC as a job kind: any node may run it, the job table makes one execution per job cluster-wide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from moorage.cache import RegistryCache
from moorage.config import GcSettings, parse_duration
from moorage.db.session import Database
from moorage.gc.collector import GarbageCollector, GcOptions, GcReport, GcStopped
from moorage.gc.executions import GC_RUN, execution_log, record_execution
from moorage.jobs.queue import Job, JobQueue, JobStopped
from moorage.jobs.runner import HandlerRegistry
from moorage.registry.guard import WriteGuard
from moorage.storage import StorageDriver

__all__ = ["GC_RUN", "enqueue_gc", "options_from", "refuse_when_read_only", "register_gc"]

log = structlog.get_logger("moorage.gc")


def options_from(settings: GcSettings, payload: Mapping[str, Any]) -> GcOptions:
    """The run's options: the job's payload (``dry_run``, ``delete_untagged``, ``sweep_orphans``,
    ``grace_period``) over config."""
    return GcOptions(
        grace=parse_duration(str(payload.get("grace_period", settings.grace_period))),
        delete_untagged=bool(payload.get("delete_untagged", False)),
        dry_run=bool(payload.get("dry_run", False)),
        sweep_orphans=bool(payload.get("sweep_orphans", False)),
        batch_size=settings.batch_size,
    )


def refuse_when_read_only(guard: WriteGuard, dry_run: bool) -> None:
    """A real run deletes: not while the registry is read-only (a storage migration or a restore).

    The one write guard every entry point uses (:class:`moorage.registry.guard.WriteGuard`), so the
    refusal is the same ``ReadOnlyError`` as for a push or a REST delete; a dry run changes nothing.
    """
    if not dry_run:
        guard.writable()


def register_gc(
    registry: HandlerRegistry,
    settings: GcSettings,
    db: Database,
    storage: StorageDriver,
    cache: RegistryCache | None,
    *,
    guard: WriteGuard | None = None,
    queue: JobQueue | None = None,
    before_collect: Callable[[], Awaitable[list[str]]] | None = None,
) -> None:
    """Register the ``gc.run`` handler (the job's failure is retried; a rerun finishes a killed run's work).

    Each attempt records its execution (start, end, counts, log) for ``/api/v2.0/system/gc``; a
    failed attempt records the error, and the job's state says whether it will be retried. With
    ``queue``, the run asks at every batch boundary whether it was asked to stop
    (``PUT /system/gc/{id}``, ``moorage gc stop``); a stopped run records what it did and its
    job ends ``stopped``. ``before_collect`` runs first in a real run (the proxy cache's evictions,
    moorage.proxy.eviction): what it removed is collected by the same run, and its lines open the log.
    """

    async def run(job: Job) -> None:
        started = datetime.now(UTC)
        options = options_from(settings, job.payload)

        async def should_stop() -> bool:
            return queue is not None and await queue.stop_requested(job.id)

        note = ""
        try:
            refuse_when_read_only(guard or WriteGuard(), options.dry_run)
            if before_collect is not None and not options.dry_run:
                note = "".join(f"{line}\n" for line in await before_collect())
            collector = GarbageCollector(
                db,
                storage,
                options,
                invalidate=cache.invalidate if cache is not None else None,
                should_stop=should_stop,
            )
            report = await collector.run()
        except GcStopped as stopped:
            await _record(db, job.id, started, stopped.report, note + "stopped on request at a batch boundary; the "
                          "next run finishes what this one marked for deletion\n")
            raise JobStopped(str(stopped)) from None
        except Exception as exc:
            await record_execution(db, job.id, started, datetime.now(UTC), (0, 0, 0), note + f"attempt "
                                   f"{job.attempts} failed: {exc}\n")
            raise
        await _record(db, job.id, started, report, note)
        log.info("gc_job_finished", job=job.id, summary=report.summary())

    registry.register(GC_RUN, run)


async def _record(db: Database, job_id: int, started: datetime, report: GcReport, note: str = "") -> None:
    text = note + execution_log(report.manifests, report.blobs, report.summary(), report.dry_run)
    counts = (len(report.manifests), len(report.blobs), report.bytes_freed)
    await record_execution(db, job_id, started, datetime.now(UTC), counts, text)


async def enqueue_gc(
    queue: JobQueue,
    *,
    dry_run: bool = False,
    delete_untagged: bool = False,
    sweep_orphans: bool = False,
    grace_period: str | None = None,
) -> int:
    """Queue one GC run for whichever node claims it first; returns the job id."""
    payload: dict[str, object] = {
        "dry_run": dry_run,
        "delete_untagged": delete_untagged,
        "sweep_orphans": sweep_orphans,
    }
    if grace_period is not None:
        payload["grace_period"] = grace_period
    return await queue.enqueue(GC_RUN, payload, max_attempts=3)
