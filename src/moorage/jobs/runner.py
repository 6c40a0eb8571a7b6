"""The job runner every node starts in its lifespan: claim, run the kind's handler, renew, finish.

Handlers are registered by job kind (:class:`HandlerRegistry`); a job of an unregistered kind
is left alone (``claim`` is filtered by the registered kinds), so a rolling upgrade where only
new nodes know a kind never fails that kind's jobs on old nodes.

Shutdown (``stop``): the claim loop ends first, in-flight handlers get ``grace`` seconds to
finish, and whatever is still running then is cancelled and released back to the queue
without counting the attempt, so the next node picks it up at once instead of after a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from moorage.jobs.queue import Job, JobQueue, JobStopped

__all__ = ["HandlerRegistry", "JobHandler", "JobRunner", "Periodic", "Tick", "node_id"]

log = structlog.get_logger("moorage.jobs")

JobHandler = Callable[[Job], Awaitable[None]]
"""Runs one job; raising marks the attempt failed (retried until ``max_attempts``)."""

Tick = Callable[[], Awaitable[object]]
"""Called on every poll before claiming: a schedule kept in the database enqueues what is due
(with a dedup key, so every node may tick at once), e.g. :meth:`moorage.gc.executions.GcService.tick`."""


def node_id() -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job every node schedules every ``interval``; the dedup key makes it one job per interval."""

    kind: str
    interval: timedelta
    payload: dict[str, object] = field(default_factory=dict)

    def dedup_key(self, epoch_seconds: float) -> str:
        slot = int(epoch_seconds // max(1, self.interval.total_seconds()))
        return f"periodic:{self.kind}:{slot}"


class HandlerRegistry:
    """Job kind → handler. Registering a kind twice is a programming error (``ValueError``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}

    def register(self, kind: str, handler: JobHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def get(self, kind: str) -> JobHandler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds())


class JobRunner:
    """Claims and runs jobs of the registered kinds until :meth:`stop`."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: HandlerRegistry,
        *,
        owner: str | None = None,
        concurrency: int = 4,
        poll_seconds: float = 2.0,
        periodic: list[Periodic] | None = None,
        ticks: list[Tick] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = handlers
        self.owner = owner or node_id()
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.periodic = periodic or []
        self.ticks = ticks or []
        self._running: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Start the claim loop and the heartbeat in the running event loop."""
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"jobs-claim-{self.owner}")
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"jobs-heartbeat-{self.owner}")

    def wake(self) -> None:
        """Claim now instead of at the next poll (after enqueueing locally)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim what fits and start it; returns the number of jobs started (tests and ``drain``)."""
        free = self.concurrency - len(self._running)
        kinds = self.handlers.kinds()
        if free <= 0 or not kinds:
            return 0
        claimed = await self.queue.claim(self.owner, limit=free, kinds=kinds)
        for job in claimed:
            self._running[job.id] = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        return len(claimed)

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._schedule_periodic()
                started = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable; keep polling
                log.warning("jobs_claim_failed", error=str(exc))
                started = 0
            if started and len(self._running) < self.concurrency:
                continue  # more may be due: claim again without waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _schedule_periodic(self) -> None:
        for task in self.periodic:
            await self.queue.enqueue(task.kind, dict(task.payload), dedup_key=task.dedup_key(time.time()))
        for tick in self.ticks:
            try:
                await tick()
            except Exception as exc:  # noqa: BLE001 - a broken schedule must not stop this node claiming jobs
                log.warning("jobs_tick_failed", error=str(exc))

    async def _heartbeat_loop(self) -> None:
        interval = max(0.5, self.queue.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._running)
            try:
                held = await self.queue.heartbeat(self.owner, ids)
            except Exception as exc:  # noqa: BLE001
                log.warning("jobs_heartbeat_failed", error=str(exc))
                continue
            for lost in set(ids) - held:
                # Another node took it after our lease expired (we were too slow to renew):
                # stop our copy so two executions do not keep running side by side.
                task = self._running.get(lost)
                if task is not None and not task.done():
                    log.warning("jobs_lease_lost", job=lost)
                    task.cancel()

    async def _run(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:  # pragma: no cover - claim is filtered by the registered kinds
                await self.queue.fail(self.owner, job.id, f"no handler for job kind {job.kind!r}")
                return
            try:
                await handler(job)
            except asyncio.CancelledError:
                raise
            except JobStopped:
                log.info("job_stopped", job=job.id, kind=job.kind)
                await self.queue.stopped(self.owner, job.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("job_failed", job=job.id, kind=job.kind, attempt=job.attempts, error=str(exc))
                detail = "".join(traceback.format_exception_only(exc)).strip()
                await self.queue.fail(self.owner, job.id, detail)
            else:
                await self.queue.succeed(self.owner, job.id)
        finally:
            self._running.pop(job.id, None)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running jobs finish for ``grace`` seconds, release the rest."""
        for task in (self._loop_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        pending = list(self._running.values())
        if pending:
            await asyncio.wait(pending, timeout=grace)
        unfinished = {job_id: task for job_id, task in self._running.items() if not task.done()}
        leftover = list(unfinished)
        for task in unfinished.values():
            task.cancel()
        if leftover:
            await asyncio.gather(*unfinished.values(), return_exceptions=True)
            try:
                await self.queue.release(self.owner, leftover)
            except Exception as exc:  # noqa: BLE001 - the lease will expire and another node re-runs them
                log.warning("jobs_release_failed", error=str(exc), jobs=leftover)
