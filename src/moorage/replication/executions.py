"""Executions and tasks of replication policies: the record an operator reads, and the resume point.

An execution is opened by the job that runs it (:meth:`ReplicationExecutions.open`, keyed by
the job id), so a job claimed again after its node died finds the same execution, the same
planned tasks, and runs only the ones not yet done. Counters are counted from the tasks when
read. Stopping (``PUT /executions/{id}``) marks the execution ``Stopped``; the job checks
:meth:`ReplicationExecutions.stopped` between tasks and leaves the rest ``Stopped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.replication_tables import replication_executions, replication_tasks
from moorage.db.session import Database
from moorage.db.times import aware, aware_or_none
from moorage.db.upsert import insert_ignore

__all__ = ["Execution", "ExecutionCounts", "PlannedTask", "ReplicationExecutions", "Task"]

#: Longest task log kept (the head and the tail survive; the middle is elided).
MAX_LOG = 64 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One unit of work found by planning: copy (or delete) one artifact."""

    operation: str
    resource_type: str
    src_resource: str
    dst_resource: str
    reference: str


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    execution_id: int
    operation: str
    resource_type: str
    src_resource: str
    dst_resource: str
    reference: str
    status: str
    bytes: int
    attempts: int
    start_time: datetime | None
    end_time: datetime | None


@dataclass(frozen=True, slots=True)
class ExecutionCounts:
    total: int = 0
    succeed: int = 0
    failed: int = 0
    in_progress: int = 0
    stopped: int = 0


@dataclass(frozen=True, slots=True)
class Execution:
    id: int
    policy_id: int
    job_id: int | None
    trigger: str
    status: str
    status_text: str
    start_time: datetime
    end_time: datetime | None
    counts: ExecutionCounts


def _task(row: Any) -> Task:
    return Task(row.id, row.execution_id, row.operation, row.resource_type, row.src_resource, row.dst_resource,
                row.reference, row.status, int(row.bytes), row.attempts, aware_or_none(row.start_time),
                aware_or_none(row.end_time))


_COUNTS = select(
    replication_tasks.c.execution_id,
    func.count().label("total"),
    func.sum(case((replication_tasks.c.status == "Succeed", 1), else_=0)).label("succeed"),
    func.sum(case((replication_tasks.c.status == "Failed", 1), else_=0)).label("failed"),
    func.sum(case((replication_tasks.c.status.in_(("Pending", "InProgress")), 1), else_=0)).label("in_progress"),
    func.sum(case((replication_tasks.c.status == "Stopped", 1), else_=0)).label("stopped"),
).group_by(replication_tasks.c.execution_id).subquery()


def _execution(row: Any) -> Execution:
    counts = ExecutionCounts(int(row.total or 0), int(row.succeed or 0), int(row.failed or 0),
                             int(row.in_progress or 0), int(row.stopped or 0))
    return Execution(row.id, row.policy_id, row.job_id, row.trigger, row.status, row.status_text,
                     aware(row.start_time), aware_or_none(row.end_time), counts)


def _trimmed(log: str) -> str:
    if len(log) <= MAX_LOG:
        return log
    half = MAX_LOG // 2
    return f"{log[:half]}\n… {len(log) - MAX_LOG} characters elided …\n{log[-half:]}"


class ReplicationExecutions:
    """The executions and tasks store (the one place that writes them)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, policy_id: int, job_id: int, trigger: str, *, conn: AsyncConnection | None = None) -> int:
        """The execution of ``job_id``, created with the job (pass its ``conn``) or on its first attempt."""
        if conn is None:
            async with self.db.write() as own:
                return await self._open(own, policy_id, job_id, trigger)
        return await self._open(conn, policy_id, job_id, trigger)

    @staticmethod
    async def _open(conn: AsyncConnection, policy_id: int, job_id: int, trigger: str) -> int:
        await insert_ignore(conn, replication_executions, {
            "policy_id": policy_id, "job_id": job_id, "trigger": trigger, "status": "InProgress",
            "status_text": "", "start_time": _now(),
        }, ["job_id"])
        row = (await conn.execute(select(replication_executions.c.id)
                                  .where(replication_executions.c.job_id == job_id))).one()
        return int(row.id)

    async def plan(self, execution_id: int, tasks: Sequence[PlannedTask]) -> None:
        """Record the tasks found; ones already planned (a re-run of the same job) are kept as they are."""
        async with self.db.write() as conn:
            for task in tasks:
                await insert_ignore(conn, replication_tasks, {
                    "execution_id": execution_id, "operation": task.operation, "resource_type": task.resource_type,
                    "src_resource": task.src_resource, "dst_resource": task.dst_resource,
                    "reference": task.reference, "status": "Pending", "bytes": 0, "attempts": 0, "log": "",
                }, ["execution_id", "operation", "src_resource", "reference"])

    async def unfinished(self, execution_id: int) -> list[Task]:
        """Tasks still to run: pending, or in progress when the previous attempt's node died."""
        query = select(replication_tasks).where(
            replication_tasks.c.execution_id == execution_id,
            replication_tasks.c.status.in_(("Pending", "InProgress")),
        ).order_by(replication_tasks.c.id)
        async with self.db.read() as conn:
            return [_task(row) for row in (await conn.execute(query)).all()]

    async def task_started(self, task_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(replication_tasks).where(replication_tasks.c.id == task_id).values(
                status="InProgress", start_time=_now(), attempts=replication_tasks.c.attempts + 1))

    async def task_finished(self, task_id: int, status: str, bytes_copied: int, log: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(replication_tasks).where(replication_tasks.c.id == task_id).values(
                status=status, bytes=bytes_copied, log=_trimmed(log), end_time=_now()))

    async def stopped(self, execution_id: int) -> bool:
        async with self.db.read() as conn:
            status = (await conn.execute(select(replication_executions.c.status)
                                         .where(replication_executions.c.id == execution_id))).scalar_one_or_none()
        return status == "Stopped"

    async def stop(self, execution_id: int) -> bool:
        """Ask a running execution to stop; whether it was running."""
        async with self.db.write() as conn:
            result = await conn.execute(update(replication_executions).where(
                replication_executions.c.id == execution_id, replication_executions.c.status == "InProgress",
            ).values(status="Stopped", status_text="stopped by request", end_time=_now()))
            await conn.execute(update(replication_tasks).where(
                replication_tasks.c.execution_id == execution_id, replication_tasks.c.status == "Pending",
            ).values(status="Stopped", end_time=_now()))
        return bool(result.rowcount)

    async def finish(self, execution_id: int, status_text: str = "") -> str:
        """Close the execution from its tasks' outcome (a stopped one stays stopped); its status."""
        async with self.db.write() as conn:
            failed = (await conn.execute(select(func.count()).select_from(replication_tasks).where(
                replication_tasks.c.execution_id == execution_id, replication_tasks.c.status == "Failed"),
            )).scalar_one()
            status = "Failed" if failed else "Succeed"
            await conn.execute(update(replication_executions).where(
                replication_executions.c.id == execution_id, replication_executions.c.status == "InProgress",
            ).values(status=status, status_text=status_text or (f"{failed} task(s) failed; read their logs"
                                                                if failed else ""), end_time=_now()))
            row = (await conn.execute(select(replication_executions.c.status)
                                      .where(replication_executions.c.id == execution_id))).one()
        return str(row.status)

    async def fail(self, execution_id: int, reason: str) -> None:
        """Close the execution as failed before any task could run (the reason is its status text)."""
        async with self.db.write() as conn:
            await conn.execute(update(replication_executions).where(
                replication_executions.c.id == execution_id, replication_executions.c.status == "InProgress",
            ).values(status="Failed", status_text=reason, end_time=_now()))

    async def get(self, execution_id: int) -> Execution | None:
        query = (select(replication_executions, _COUNTS)
                 .outerjoin(_COUNTS, _COUNTS.c.execution_id == replication_executions.c.id)
                 .where(replication_executions.c.id == execution_id))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _execution(row) if row is not None else None

    async def listing(self, offset: int, limit: int, policy_id: int | None = None,
                      trigger: str | None = None) -> tuple[list[Execution], int]:
        conditions = []
        if policy_id is not None:
            conditions.append(replication_executions.c.policy_id == policy_id)
        if trigger is not None:
            conditions.append(replication_executions.c.trigger == trigger)
        where = and_(*conditions) if conditions else None
        query = (select(replication_executions, _COUNTS)
                 .outerjoin(_COUNTS, _COUNTS.c.execution_id == replication_executions.c.id))
        count = select(func.count()).select_from(replication_executions)
        if where is not None:
            query, count = query.where(where), count.where(where)
        async with self.db.read() as conn:
            total = (await conn.execute(count)).scalar_one()
            rows = (await conn.execute(query.order_by(replication_executions.c.id.desc())
                                       .offset(offset).limit(limit))).all()
        return [_execution(row) for row in rows], int(total)

    async def tasks(self, execution_id: int, offset: int, limit: int,
                    status: str | None = None) -> tuple[list[Task], int]:
        where = replication_tasks.c.execution_id == execution_id
        if status is not None:
            where = and_(where, replication_tasks.c.status == status)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(replication_tasks).where(where))).scalar_one()
            rows = (await conn.execute(select(replication_tasks).where(where).order_by(replication_tasks.c.id)
                                       .offset(offset).limit(limit))).all()
        return [_task(row) for row in rows], int(total)

    async def task_log(self, execution_id: int, task_id: int) -> str | None:
        query = select(replication_tasks.c.log).where(replication_tasks.c.id == task_id,
                                                      replication_tasks.c.execution_id == execution_id)
        async with self.db.read() as conn:
            log = (await conn.execute(query)).scalar_one_or_none()
        return None if log is None else str(log)
