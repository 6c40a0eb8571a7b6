"""Pruning the history of finished work, so that job and delivery tables stop growing.

Every push, pull policy, site copy and periodic tick leaves a finished row behind (``jobs``,
``webhook_deliveries``); nothing else ever deletes them. ``jobs.history_days`` (default 30; 0
keeps everything) bounds them: a ``history.prune`` job, one per hour cluster-wide (the periodic
dedup key), removes rows that finished before the cutoff. Unfinished rows are never touched,
whatever their age. Rows go in small batches (:func:`moorage.db.prune.prune_rows`).

What goes with a job: its GC or retention execution and tasks (``ON DELETE CASCADE``); a
replication execution keeps its row and loses only the job link (``SET NULL``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from moorage.config import JobsSettings
from moorage.jobs.queue import Job
from moorage.jobs.runner import HandlerRegistry, Periodic

__all__ = ["HISTORY_PRUNE", "Pruner", "register_history"]

log = structlog.get_logger("moorage.jobs")

HISTORY_PRUNE = "history.prune"
#: How often the prune runs (one job per interval across all nodes).
INTERVAL = timedelta(hours=1)

#: Deletes what finished before the cutoff; returns how many rows went.
Pruner = Callable[[datetime], Awaitable[int]]


def register_history(registry: HandlerRegistry, settings: JobsSettings, pruners: Sequence[Pruner]) -> list[Periodic]:
    """Register ``history.prune``; returns its periodic schedule (none when history is kept forever)."""

    async def prune(job: Job) -> None:
        days = int(job.payload.get("days", settings.history_days))
        cutoff = datetime.now(UTC) - timedelta(days=days)
        removed = [await pruner(cutoff) for pruner in pruners]
        log.info("history_pruned", before=cutoff.isoformat(), rows=sum(removed))

    registry.register(HISTORY_PRUNE, prune)
    if settings.history_days <= 0:
        return []
    return [Periodic(HISTORY_PRUNE, INTERVAL, {"days": settings.history_days})]
