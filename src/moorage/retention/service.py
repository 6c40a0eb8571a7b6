"""Retention policies, their executions and tasks: stored, run as jobs, listed for the API.

An execution is a ``retention.run`` job (same id) plus a ``retention_executions`` row written
in the transaction that enqueues it, so listing a policy's executions is one indexed query
and a job never exists without its row. The job table makes one execution cluster-wide.

Schedules: every node's job runner calls :meth:`RetentionService.tick` on each poll; for each
policy with a cron it enqueues the latest due minute (within the last hour, not before the
policy was saved) with the dedup key ``retention.schedule:<policy>:<minute>``, so however many
nodes tick at once, one execution per due minute exists (the GC schedule's mechanism).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from moorage.db.jobs_tables import jobs
from moorage.db.retention_tables import retention_executions, retention_policies, retention_tasks
from moorage.db.session import Database
from moorage.db.times import aware_or_none
from moorage.db.upsert import insert_ignore
from moorage.jobs.cron import Cron, CronError
from moorage.jobs.queue import JobQueue
from moorage.retention.rules import InvalidPolicy, RetentionRule, parse_rules, rules_json

__all__ = [
    "RETENTION_RUN",
    "PolicyExists",
    "RetentionExecution",
    "RetentionPolicy",
    "RetentionService",
    "RetentionTask",
    "parse_cron",
]

RETENTION_RUN = "retention.run"
_LOOKBACK = timedelta(hours=1)
_STATUS = {
    "queued": "Pending", "running": "Running", "succeeded": "Success", "failed": "Error", "stopped": "Stopped",
}


def _now() -> datetime:
    return datetime.now(UTC)


class PolicyExists(Exception):
    """The project has a retention policy already (Harbor allows one per project)."""

    def __init__(self, policy_id: int) -> None:
        super().__init__(f"the project has retention policy {policy_id} already")
        self.policy_id = policy_id


def parse_cron(trigger: Any) -> str:
    """The cron of Harbor's ``trigger`` (``""``: manual runs only); :class:`InvalidPolicy` naming the field."""
    if trigger is None:
        return ""
    if not isinstance(trigger, Mapping):
        raise InvalidPolicy("trigger", 'must be an object like {"kind": "Schedule", "settings": {"cron": "0 0 0 * * *"}}')
    kind = trigger.get("kind") or "Schedule"
    if kind != "Schedule":
        raise InvalidPolicy("trigger.kind", f"{kind!r} is not supported; use 'Schedule'")
    settings = trigger.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise InvalidPolicy("trigger.settings", 'must be an object like {"cron": "0 0 0 * * *"}')
    cron = settings.get("cron") or ""
    if not isinstance(cron, str) or len(cron) > 255:
        raise InvalidPolicy("trigger.settings.cron", "must be a cron expression of at most 255 characters")
    cron = cron.strip()
    if cron:
        try:
            Cron.parse(cron)
        except CronError as exc:
            raise InvalidPolicy("trigger.settings.cron", f"{exc}; e.g. '0 0 3 * * *' (every day at 03:00 UTC)") from None
    return cron


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    id: int
    project_id: int
    algorithm: str
    rules: list[RetentionRule]
    cron: str
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        """Harbor's ``RetentionPolicy``."""
        return {
            "id": self.id,
            "algorithm": self.algorithm,
            "rules": rules_json(self.rules),
            "trigger": {"kind": "Schedule", "settings": {"cron": self.cron}, "references": {}},
            "scope": {"level": "project", "ref": self.project_id},
        }

    def next_due(self, now: datetime) -> datetime | None:
        return Cron.parse(self.cron).next_due(now) if self.cron else None


@dataclass(frozen=True, slots=True)
class RetentionExecution:
    id: int
    policy_id: int
    dry_run: bool
    trigger: str  # MANUAL or SCHEDULE
    status: str  # Harbor's: Pending, Running, Success, Error, Stopped
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class RetentionTask:
    id: int
    execution_id: int
    repository: str
    status: str
    total: int
    retained: int
    started_at: datetime
    ended_at: datetime | None
    log: str


def _policy(row: Any) -> RetentionPolicy:
    return RetentionPolicy(
        id=row.id, project_id=row.project_id, algorithm=row.algorithm, rules=parse_rules("or", json.loads(row.rules)),
        cron=row.cron, created_at=aware_or_none(row.created_at) or _now(), updated_at=aware_or_none(row.updated_at) or _now(),
    )


def _execution(row: Any) -> RetentionExecution:
    return RetentionExecution(
        id=row.job_id, policy_id=row.policy_id, dry_run=bool(row.dry_run), trigger=row.trigger,
        status=_STATUS.get(row.state, row.state), created_at=aware_or_none(row.created_at) or _now(),
        started_at=aware_or_none(row.started_at), ended_at=aware_or_none(row.ended_at) or aware_or_none(row.finished_at),
        error=row.last_error,
    )


def _task(row: Any) -> RetentionTask:
    return RetentionTask(
        id=row.id, execution_id=row.execution_id, repository=row.repository, status=row.status, total=row.total,
        retained=row.retained, started_at=aware_or_none(row.started_at) or _now(), ended_at=aware_or_none(row.ended_at),
        log=row.log,
    )


_EXECUTIONS = select(
    retention_executions, jobs.c.state, jobs.c.created_at, jobs.c.finished_at, jobs.c.last_error
).select_from(retention_executions.join(jobs, jobs.c.id == retention_executions.c.job_id))


class RetentionService:
    """Policies (one per project), manual and scheduled runs, executions and tasks."""

    def __init__(self, db: Database, queue: JobQueue) -> None:
        self.db = db
        self.queue = queue

    # -- policies ----------------------------------------------------------------------------
    @staticmethod
    def check(body: Mapping[str, Any]) -> tuple[list[RetentionRule], str]:
        """The rules and cron of a Harbor policy body; :class:`InvalidPolicy` (naming the field) before any write."""
        rules = parse_rules(body.get("algorithm"), body.get("rules"))
        return rules, parse_cron(body.get("trigger"))

    async def create(self, project_id: int, body: Mapping[str, Any]) -> RetentionPolicy:
        """Store the project's policy; :class:`InvalidPolicy` or :class:`PolicyExists`, nothing saved."""
        rules, cron = self.check(body)
        stamp = _now()
        try:
            async with self.db.write() as conn:
                existing = await self._of_project(conn, project_id)
                if existing is not None:
                    raise PolicyExists(existing)
                row = (
                    await conn.execute(
                        retention_policies.insert()
                        .values(project_id=project_id, algorithm="or", rules=json.dumps(rules_json(rules)), cron=cron,
                                created_at=stamp, updated_at=stamp)
                        .returning(retention_policies)
                    )
                ).one()
        except IntegrityError:  # a concurrent create for the same project won
            async with self.db.read() as read:
                winner = await self._of_project(read, project_id)
            raise PolicyExists(winner or 0) from None
        return _policy(row)

    @staticmethod
    async def _of_project(conn: Any, project_id: int) -> int | None:
        found = await conn.execute(select(retention_policies.c.id).where(retention_policies.c.project_id == project_id))
        value = found.scalar_one_or_none()
        return None if value is None else int(value)

    async def get(self, policy_id: int) -> RetentionPolicy | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(retention_policies).where(retention_policies.c.id == policy_id))).first()
        return None if row is None else _policy(row)

    async def of_project(self, project_id: int) -> RetentionPolicy | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(retention_policies).where(retention_policies.c.project_id == project_id))
            ).first()
        return None if row is None else _policy(row)

    async def update(self, policy: RetentionPolicy, body: Mapping[str, Any]) -> RetentionPolicy | None:
        """Replace the rules and trigger; ``None`` when the policy was deleted meanwhile."""
        rules, cron = self.check(body)
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(retention_policies)
                    .where(retention_policies.c.id == policy.id)
                    .values(rules=json.dumps(rules_json(rules)), cron=cron, updated_at=_now())
                    .returning(retention_policies)
                )
            ).first()
        return None if row is None else _policy(row)

    async def delete(self, policy: RetentionPolicy) -> bool:
        """Remove the policy with its execution history (the jobs stay in the job table)."""
        async with self.db.write() as conn:
            result = await conn.execute(delete(retention_policies).where(retention_policies.c.id == policy.id))
        return bool(result.rowcount)

    # -- runs --------------------------------------------------------------------------------
    async def run_now(
        self, policy: RetentionPolicy, *, dry_run: bool, trigger: str = "MANUAL", dedup_key: str | None = None
    ) -> int:
        """Queue one execution of the policy; returns its id (the job's). With ``dedup_key``, once."""
        async with self.db.write() as conn:
            job_id = await self.queue.enqueue(
                RETENTION_RUN, {"policy_id": policy.id, "dry_run": dry_run}, dedup_key=dedup_key, max_attempts=3,
                conn=conn,
            )
            await insert_ignore(
                conn, retention_executions,
                {"job_id": job_id, "policy_id": policy.id, "dry_run": dry_run, "trigger": trigger}, ["job_id"],
            )
        return job_id

    async def tick(self, now: datetime | None = None) -> list[int]:
        """Enqueue each scheduled policy's latest due minute, once cluster-wide; the executions' ids.

        Every node ticks every few seconds, so a due minute already enqueued is found with one read
        for all policies, and only a new one costs a write (on SQLite, the write lock).
        """
        current = now or _now()
        async with self.db.read() as conn:
            rows = (await conn.execute(select(retention_policies).where(retention_policies.c.cron != ""))).all()
        due: dict[str, RetentionPolicy] = {}
        for row in rows:
            policy = _policy(row)
            minute = Cron.parse(policy.cron).last_due(current, max(policy.updated_at, current - _LOOKBACK))
            if minute is not None:
                due[f"retention.schedule:{policy.id}:{minute.astimezone(UTC):%Y-%m-%dT%H:%M}"] = policy
        if not due:
            return []
        keys = sorted(due)
        queued: dict[str, int] = {}
        async with self.db.read() as conn:
            for start in range(0, len(keys), 500):  # SQLite builds before 3.32 allow 999 bound parameters
                chunk = keys[start:start + 500]
                found = await conn.execute(select(jobs.c.dedup_key, jobs.c.id).where(jobs.c.dedup_key.in_(chunk)))
                queued.update((str(row.dedup_key), int(row.id)) for row in found)
        for key, policy in due.items():
            if key not in queued:
                queued[key] = await self.run_now(policy, dry_run=False, trigger="SCHEDULE", dedup_key=key)
        return [queued[key] for key in due]

    async def stop(self, execution: RetentionExecution) -> str | None:
        """Ask the execution to stop (queued: at once; running: before its next repository)."""
        return await self.queue.request_stop(execution.id)

    # -- history -----------------------------------------------------------------------------
    async def executions(self, policy_id: int, offset: int, limit: int) -> tuple[list[RetentionExecution], int]:
        """A page of the policy's executions, newest first, and how many there are."""
        where = retention_executions.c.policy_id == policy_id
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(retention_executions).where(where))).scalar_one()
            rows = (
                await conn.execute(_EXECUTIONS.where(where).order_by(retention_executions.c.job_id.desc())
                                   .offset(offset).limit(limit))
            ).all()
        return [_execution(row) for row in rows], int(total)

    async def execution(self, policy_id: int, execution_id: int) -> RetentionExecution | None:
        query = _EXECUTIONS.where(
            retention_executions.c.policy_id == policy_id, retention_executions.c.job_id == execution_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _execution(row)

    async def policy_of(self, execution_id: int) -> tuple[RetentionPolicy, bool] | None:
        """The policy an execution runs and whether it is a dry run (``None``: the policy was deleted)."""
        query = (
            select(retention_policies, retention_executions.c.dry_run)
            .select_from(retention_executions.join(retention_policies))
            .where(retention_executions.c.job_id == execution_id)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (_policy(row), bool(row.dry_run))

    async def tasks(self, execution_id: int, offset: int, limit: int) -> tuple[list[RetentionTask], int]:
        where = retention_tasks.c.execution_id == execution_id
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(retention_tasks).where(where))).scalar_one()
            rows = (
                await conn.execute(select(retention_tasks).where(where).order_by(retention_tasks.c.id)
                                   .offset(offset).limit(limit))
            ).all()
        return [_task(row) for row in rows], int(total)

    async def task(self, execution_id: int, task_id: int) -> RetentionTask | None:
        query = select(retention_tasks).where(
            retention_tasks.c.execution_id == execution_id, retention_tasks.c.id == task_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _task(row)

    # -- what the job writes -----------------------------------------------------------------
    async def started(self, execution_id: int) -> None:
        """An attempt begins: its start time; a retried attempt's tasks start over."""
        async with self.db.write() as conn:
            await conn.execute(delete(retention_tasks).where(retention_tasks.c.execution_id == execution_id))
            await conn.execute(
                update(retention_executions)
                .where(retention_executions.c.job_id == execution_id)
                .values(started_at=_now(), ended_at=None)
            )

    async def record_task(
        self, execution_id: int, repository: str, status: str, counts: tuple[int, int], started: datetime, log: str
    ) -> None:
        total, retained = counts
        async with self.db.write() as conn:
            await conn.execute(
                retention_tasks.insert().values(
                    execution_id=execution_id, repository=repository, status=status, total=total, retained=retained,
                    started_at=started, ended_at=_now(), log=log,
                )
            )

    async def ended(self, execution_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(retention_executions).where(retention_executions.c.job_id == execution_id).values(ended_at=_now())
            )
