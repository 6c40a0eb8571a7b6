"""Running a policy: plan the tasks, copy with bounded concurrency, record every outcome.

``replication.run`` jobs carry ``{"policy_id", "trigger", "event"?}``. Who enqueues them:

* a manual run (``POST /api/v2.0/replication/executions``): one job per request;
* a schedule (:meth:`ReplicationTrigger.tick`, called by every node's job runner): the dedup
  key ``replication:<policy>:cron:<minute>`` makes one job per due minute cluster-wide;
* a push or delete in this registry (:meth:`ReplicationTrigger.on_artifact`): the dedup key
  names the policy, the repository, the reference and the digest, so the event fires once
  whatever the number of nodes or sites on the database, and a client retrying the same ``PUT``
  does not copy twice.

The handler is idempotent (a job may run again after its node died): the execution is the
job's, planning inserts only new tasks, finished tasks are not run again, and the copier skips
what the destination already has. Transient failures (unreachable, 5xx, 429) are retried with
back-off inside the task; a refusal (401, 403, quota, invalid name) fails the task at once with
the destination's answer in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from moorage.events import ArtifactEvent, ArtifactEvents
from moorage.jobs.cron import Cron
from moorage.jobs.queue import Job, JobQueue
from moorage.jobs.runner import HandlerRegistry
from moorage.registry.names import InvalidNameError
from moorage.replication.adapters import PeerError, RegistryAdapter
from moorage.replication.copier import ArtifactCopier, Throttle
from moorage.replication.executions import PlannedTask, ReplicationExecutions, Task
from moorage.replication.naming import destination_name
from moorage.replication.policies import Policy, PolicyError, ReplicationPolicies

__all__ = ["REPLICATION_RUN", "ReplicationRunner", "ReplicationTrigger", "plan_tasks"]

log = structlog.get_logger("moorage.replication")

REPLICATION_RUN = "replication.run"
#: Attempts of one task on transient failures, and the first back-off (doubled each time).
TASK_ATTEMPTS = 4
FIRST_BACKOFF = 1.0
#: How far back a schedule looks for a due minute it has not run (a node restarted in between).
_LOOKBACK = timedelta(hours=1)

#: (endpoint id) -> an adapter for that remote registry, closed when the run ends.
RemoteFactory = Callable[[int], AbstractAsyncContextManager[RegistryAdapter]]


async def plan_tasks(policy: Policy, source: RegistryAdapter, event: Mapping[str, Any] | None) -> list[PlannedTask]:
    """The tasks of one run: the event's artifact, or every selected tag of every selected repository."""
    selection = policy.selection
    spec = policy.spec

    def planned(operation: str, repository: str, reference: str) -> PlannedTask:
        return PlannedTask(operation, "artifact", repository,
                           destination_name(repository, spec.dest_namespace, spec.dest_namespace_replace_count),
                           reference)

    if event is not None:
        repository, reference = str(event["repository"]), str(event["reference"])
        operation = "deletion" if event.get("operation") == "delete" else "copy"
        tagged = ":" not in reference
        if not selection.repository(repository) or (tagged and not selection.tag(reference)):
            return []
        if not tagged and selection.filters_tags:
            return []  # an untagged artifact is never selected by a tag filter
        if operation == "deletion" and not spec.replicate_deletion:
            return []
        return [planned(operation, repository, reference)]
    tasks: list[PlannedTask] = []
    async for repository in source.repositories():
        if not selection.repository(repository):
            continue
        for tag in await source.tags(repository):
            if selection.tag(tag):
                tasks.append(planned("copy", repository, tag))
    return tasks


class ReplicationRunner:
    """The ``replication.run`` handler (see the module docstring)."""

    def __init__(self, policies: ReplicationPolicies, executions: ReplicationExecutions,
                 local: RegistryAdapter, remote: RemoteFactory, *, backoff: float = FIRST_BACKOFF,
                 events: ArtifactEvents | None = None) -> None:
        """``events``: where each finished task is announced (``replicated``: Harbor's REPLICATION webhook)."""
        self.policies = policies
        self.executions = executions
        self.local = local
        self.remote = remote
        self.backoff = backoff
        self.events = events

    def register(self, handlers: HandlerRegistry) -> None:
        handlers.register(REPLICATION_RUN, self.run)

    async def run(self, job: Job) -> None:
        try:
            policy = await self.policies.get(int(job.payload["policy_id"]))
        except PolicyError:
            log.info("replication_policy_gone", job=job.id, policy=job.payload.get("policy_id"))
            return
        execution_id = await self.executions.open(policy.id, job.id, str(job.payload.get("trigger", "manual")))
        if await self.executions.stopped(execution_id):
            return
        try:
            async with self._sides(policy) as (source, destination):
                await self._execute(policy, execution_id, job, source, destination)
        except PeerError as exc:  # the remote side could not even be opened (endpoint deleted)
            await self.executions.fail(execution_id, str(exc))
            return
        status = await self.executions.finish(execution_id)
        log.info("replication_execution_done", execution=execution_id, policy=policy.id, status=status)

    async def _execute(self, policy: Policy, execution_id: int, job: Job, source: RegistryAdapter,
                       destination: RegistryAdapter) -> None:
        try:
            planned = await plan_tasks(policy, source, job.payload.get("event"))
        except (PeerError, InvalidNameError) as exc:
            await self.executions.fail(execution_id, f"listing {source.label} failed: {exc}")
            return
        await self.executions.plan(execution_id, planned)
        copier = ArtifactCopier(source, destination, override=policy.spec.override,
                                throttle=Throttle(policy.spec.speed_kb))
        limit = asyncio.Semaphore(policy.spec.concurrency)

        async def one(task: Task) -> None:
            async with limit:
                if await self.executions.stopped(execution_id):
                    return
                status = await self._task(copier, destination, task)
                await self._announce(policy, job, source, destination, task, status)

        await asyncio.gather(*(one(task) for task in await self.executions.unfinished(execution_id)))

    @contextlib.asynccontextmanager
    async def _sides(self, policy: Policy) -> AsyncIterator[tuple[RegistryAdapter, RegistryAdapter]]:
        async with self.remote(policy.endpoint_id) as remote:
            yield (self.local, remote) if policy.direction == "push" else (remote, self.local)

    async def _announce(self, policy: Policy, job: Job, source: RegistryAdapter, destination: RegistryAdapter,
                        task: Task, status: str) -> None:
        """Publish the ``replicated`` event of a finished task, named by this registry's side of it."""
        if self.events is None:
            return
        local = task.src_resource if policy.direction == "push" else task.dst_resource
        digest = task.reference if ":" in task.reference else None
        await self.events.publish(ArtifactEvent(
            "replicated", local, operator=str(job.payload.get("trigger", "manual")), digest=digest,
            tag=None if digest else task.reference, detail=status,
            attributes={"status": status, "operation": task.operation, "policy": policy.spec.name,
                        "override": str(policy.spec.override).lower(), "direction": policy.direction,
                        "src_resource": task.src_resource, "dst_resource": task.dst_resource,
                        "src_registry": source.label, "dst_registry": destination.label,
                        "execution_started": job.created_at.isoformat()},
        ))

    async def _task(self, copier: ArtifactCopier, destination: RegistryAdapter, task: Task) -> str:
        """Run one task (with its retries); returns its final status, ``Succeed`` or ``Failed``."""
        await self.executions.task_started(task.id)
        header = f"{task.operation} {task.src_resource}:{task.reference} -> {destination.label} {task.dst_resource}"
        lines: list[str] = [header]
        delay = self.backoff
        for attempt in range(1, TASK_ATTEMPTS + 1):
            try:
                if task.operation == "deletion":
                    await destination.delete_tag(task.dst_resource, task.reference)
                    lines.append("deleted")
                    await self.executions.task_finished(task.id, "Succeed", 0, "\n".join(lines))
                    return "Succeed"
                tag = task.reference if ":" not in task.reference else None
                result = await copier.copy(task.src_resource, task.reference, task.dst_resource, tag)
            except PeerError as exc:
                lines.append(f"attempt {attempt}: {exc}")
                if not exc.retryable or attempt == TASK_ATTEMPTS:
                    await self.executions.task_finished(task.id, "Failed", 0, "\n".join(lines))
                    return "Failed"
                await asyncio.sleep(delay)
                delay *= 2
                continue
            lines.extend(result.log)
            lines.append(f"blobs: {result.blobs_copied} copied, {result.blobs_mounted} mounted, "
                         f"{result.blobs_skipped} already there; {result.bytes} bytes")
            await self.executions.task_finished(task.id, "Succeed", result.bytes, "\n".join(lines))
            return "Succeed"
        return "Failed"  # not reached: the last attempt returns above


class ReplicationTrigger:
    """Turns manual requests, schedules and registry events into ``replication.run`` jobs.

    The job and its execution are written in one transaction, so the execution can be named to
    the caller at once, and a deduplicated event (same key) finds the execution already there.
    """

    def __init__(self, policies: ReplicationPolicies, queue: JobQueue, executions: ReplicationExecutions) -> None:
        self.policies = policies
        self.queue = queue
        self.executions = executions

    async def _start(self, policy: Policy, trigger: str, dedup_key: str | None,
                     event: Mapping[str, str] | None = None) -> int:
        payload: dict[str, Any] = {"policy_id": policy.id, "trigger": trigger}
        if event is not None:
            payload["event"] = dict(event)
        async with self.queue.db.write() as conn:
            job_id = await self.queue.enqueue(REPLICATION_RUN, payload, dedup_key=dedup_key, conn=conn)
            return await self.executions.open(policy.id, job_id, trigger, conn=conn)

    async def run_now(self, policy_id: int) -> int:
        """Run an existing policy now; the execution's id. :class:`PolicyError` when there is no such policy."""
        return await self._start(await self.policies.get(policy_id), "manual", None)

    async def tick(self, now: datetime | None = None) -> int:
        """Start each scheduled policy's latest due minute, once cluster-wide; how many were due."""
        current = now or datetime.now(UTC)
        due_count = 0
        for policy in await self.policies.triggered_by("scheduled"):
            if policy.spec.cron is None:
                continue
            due = Cron.parse(policy.spec.cron).last_due(current, max(policy.updated_at, current - _LOOKBACK))
            if due is None:
                continue
            await self._start(policy, "scheduled", f"replication:{policy.id}:cron:{due.astimezone(UTC):%Y-%m-%dT%H:%M}")
            due_count += 1
        return due_count

    async def on_artifact(self, operation: str, repository: str, reference: str, digest: str | None) -> None:
        """A push or delete in this registry: one execution per event-based policy that selects it."""
        if operation not in ("push", "delete"):
            return
        event = {"operation": operation, "repository": repository, "reference": reference}
        for policy in await self.policies.triggered_by("event_based"):
            if policy.direction != "push" or (operation == "delete" and not policy.spec.replicate_deletion):
                continue
            if not policy.selection.repository(repository):
                continue
            # names can be 255 characters: the event's identity is hashed to fit the key column
            identity = hashlib.sha256(f"{repository}\n{reference}\n{digest or ''}".encode()).hexdigest()
            await self._start(policy, "event_based", f"replication:{policy.id}:{operation}:{identity}", event)
