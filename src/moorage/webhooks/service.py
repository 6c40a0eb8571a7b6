"""Turning events into deliveries: one ``webhook.deliver`` job per event, policy and target.

Write order (STYLE.md): the operation commits first, then :meth:`WebhookService.emit` records a
delivery row and enqueues its job in one transaction. The job's dedup key is
``webhook:<policy>:<event id>:<target>``, the same triple the delivery row holds uniquely, so an
event enqueued twice (a retried emit) still makes one delivery, and the job table hands each
job to exactly one node (row locks on PostgreSQL), so every node may run deliveries and each
event reaches each target once (at least once if a node dies mid-request: receivers dedupe on
``X-Moorage-Event-Id``). A crash between the commit and the enqueue loses that event's webhook;
the operation itself is never failed or slowed by a webhook beyond this one short write.

Policies of a project are cached per process for :data:`CACHE_SECONDS`, so a pull in a project
with no policy for pulls costs no query most of the time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from moorage.db.prune import prune_rows
from moorage.db.session import Database
from moorage.db.tables import repositories
from moorage.db.times import aware
from moorage.db.webhook_tables import webhook_deliveries
from moorage.events import ArtifactEvent
from moorage.jobs.queue import JobQueue
from moorage.webhooks.events import (
    DELETE_ARTIFACT,
    PULL_ARTIFACT,
    PUSH_ARTIFACT,
    QUOTA_EXCEED,
    REPLICATION,
    WebhookEvent,
)
from moorage.webhooks.policies import Policy, PolicyStore

__all__ = ["CACHE_SECONDS", "DELIVER", "Delivery", "WebhookService"]

log = structlog.get_logger("moorage.webhooks")

DELIVER = "webhook.deliver"
CACHE_SECONDS = 2.0
#: The webhook event of each artifact operation (blob deletes have none, as in Harbor).
_EVENT_TYPES = {"pull": PULL_ARTIFACT, "push": PUSH_ARTIFACT, "delete": DELETE_ARTIFACT,
                "quota_exceeded": QUOTA_EXCEED, "replicated": REPLICATION}
#: Harbor's ``trigger_type`` of each replication trigger.
_TRIGGERS = {"manual": "MANUAL", "scheduled": "SCHEDULED", "event_based": "EVENT_BASED"}
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of a policy's delivery log (Harbor's ``WebhookJob``)."""

    id: int
    policy_id: int
    event_id: str
    target_index: int
    event_type: str
    notify_type: str
    status: str
    payload: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def delivery_of(row: Any) -> Delivery:
    return Delivery(row.id, row.policy_id, row.event_id, row.target_index, row.event_type, row.notify_type,
                    row.status, row.payload, row.attempts, row.last_error, aware(row.created_at),
                    aware(row.updated_at))


def _replication(event: ArtifactEvent) -> dict[str, Any]:
    """Harbor's ``event_data.replication`` for one finished replication task."""
    facts = event.attributes
    succeeded = facts.get("status") == "Succeed"
    started = facts.get("execution_started")

    def side(resource: str, registry: str) -> dict[str, str]:
        return {"registry_name": registry, "namespace": resource.split("/", 1)[0], "repository": resource}

    artifact = {"type": "image", "status": "Success" if succeeded else "Failure",
                "name_tag": f"{facts.get('src_resource', event.repository)}:{event.reference}"}
    return {
        "harbor_hostname": event.host or "",
        "job_status": "Success" if succeeded else "Failure",
        "artifact_type": "image",
        "override_mode": facts.get("override") == "true",
        "trigger_type": _TRIGGERS.get(event.operator, event.operator.upper()),
        "policy_name": facts.get("policy", ""),
        "operation": facts.get("operation", "copy"),
        "execution_timestamp": int(datetime.fromisoformat(started).timestamp()) if started else 0,
        "src_resource": side(facts.get("src_resource", ""), facts.get("src_registry", "")),
        "dest_resource": side(facts.get("dst_resource", ""), facts.get("dst_registry", "")),
        "successful_artifact" if succeeded else "failed_artifact": [artifact],
    }


class WebhookService:
    """Emits events of projects to their policies' targets, and reads the delivery log."""

    def __init__(self, db: Database, queue: JobQueue, policies: PolicyStore, *, max_attempts: int = 5,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self.queue = queue
        self.policies = policies
        self.max_attempts = max_attempts
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[int, bool, list[Policy]]]] = {}

    def forget(self) -> None:
        """Drop this node's cached policies (after this node changed one)."""
        self._cache.clear()

    async def _enabled(self, project: str) -> tuple[int, bool, list[Policy]]:
        now = time.monotonic()
        cached = self._cache.get(project)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self.policies.enabled_for(project)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[project] = (now + self.cache_seconds, found)
        return found

    async def emit(self, event_type: str, repository: str, *, operator: str, digest: str | None = None,
                   tag: str | None = None, host: str | None = None, custom: dict[str, str] | None = None,
                   replication: dict[str, Any] | None = None) -> int:
        """Record ``event_type`` on ``repository`` (``<project>/<name>``) for every enabled policy of its project
        that subscribes to it; returns the number of deliveries queued. Never raises: a failure is logged
        (the operation that caused the event already succeeded)."""
        project = repository.split("/", 1)[0]
        try:
            project_id, public, policies = await self._enabled(project)
            chosen = [p for p in policies if event_type in p.event_types]
            if not chosen:
                return 0
            created = await self._repository_created(repository)
            reference = f"@{digest}" if digest and not tag else f":{tag}" if tag else ""
            event = WebhookEvent(
                type=event_type, project_id=project_id, project=project, public=public, repository=repository,
                operator=operator, digest=digest, tag=tag, custom=custom or {}, repository_created=created,
                resource_url=f"{host}/{repository}{reference}" if host and reference else None,
                replication=replication,
            )
            return await self.enqueue(event, chosen)
        except Exception as exc:  # noqa: BLE001 - webhooks must never fail the push, pull or delete
            log.warning("webhook_emit_failed", event=event_type, repository=repository, error=str(exc))
            return 0

    async def on_artifact(self, event: ArtifactEvent) -> None:
        """The :class:`~moorage.events.ArtifactEvents` subscriber: each artifact event as its webhook event."""
        if event.operation == "replicated":
            await self.emit(REPLICATION, event.repository, operator=_TRIGGERS.get(event.operator, event.operator),
                            digest=event.digest, tag=event.tag, replication=_replication(event))
            return
        await self.emit(_EVENT_TYPES[event.operation], event.repository, operator=event.operator,
                        digest=event.digest, tag=event.tag, host=event.host,
                        custom={"Details": event.detail} if event.detail else None)

    async def _repository_created(self, repository: str) -> datetime | None:
        async with self.db.read() as conn:
            value = (await conn.execute(select(repositories.c.created_at).where(
                repositories.c.name == repository))).scalar_one_or_none()
        return aware(value) if value is not None else None

    async def enqueue(self, event: WebhookEvent, policies: list[Policy]) -> int:
        """One delivery row and job per policy target, in one transaction; duplicates are no-ops."""
        payload = json.dumps(event.payload(), separators=(",", ":"))
        stamp = datetime.now(UTC)
        queued = 0
        async with self.db.write() as conn:
            insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
            for policy in policies:
                for index, target in enumerate(policy.targets):
                    statement = insert(webhook_deliveries).values(
                        policy_id=policy.id, event_id=event.id, target_index=index, event_type=event.type,
                        notify_type=target.type, status="Pending", payload=payload, attempts=0,
                        created_at=stamp, updated_at=stamp,
                    ).on_conflict_do_nothing(index_elements=["policy_id", "event_id", "target_index"])
                    delivery_id = (await conn.execute(statement.returning(webhook_deliveries.c.id))).scalar()
                    if delivery_id is None:
                        continue  # this event was already recorded for this target
                    await self.queue.enqueue(
                        DELIVER, {"delivery_id": int(delivery_id)},
                        dedup_key=f"webhook:{policy.id}:{event.id}:{index}", max_attempts=self.max_attempts,
                        conn=conn,
                    )
                    queued += 1
        return queued

    async def deliveries(self, policy_id: int, *, statuses: list[str] | None = None, offset: int = 0,
                         limit: int = 100) -> tuple[int, list[Delivery]]:
        """A policy's delivery log (only ``statuses`` when given), newest first, and its total size."""
        where = [webhook_deliveries.c.policy_id == policy_id]
        if statuses:
            where.append(webhook_deliveries.c.status.in_(statuses))
        async with self.db.read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(webhook_deliveries)
                                            .where(*where))).scalar_one())
            rows = await conn.execute(select(webhook_deliveries).where(*where)
                                      .order_by(webhook_deliveries.c.id.desc()).offset(offset).limit(limit))
            return total, [delivery_of(row) for row in rows]

    async def prune(self, before: datetime) -> int:
        """Delete deliveries that ended (``Success``, ``Error``, ``Stopped``) before ``before``."""
        ended = webhook_deliveries.c.status.in_(("Success", "Error", "Stopped"))
        return await prune_rows(self.db, webhook_deliveries, ended, webhook_deliveries.c.updated_at < before)

    async def last_triggers(self, project_id: int, policies: list[Policy]) -> dict[int, datetime]:
        """When each policy last had an event (Harbor's ``lasttrigger``)."""
        ids = [p.id for p in policies if p.project_id == project_id]
        if not ids:
            return {}
        async with self.db.read() as conn:
            latest = func.max(webhook_deliveries.c.created_at).label("latest")
            rows = await conn.execute(select(webhook_deliveries.c.policy_id, latest)
                                      .where(webhook_deliveries.c.policy_id.in_(ids))
                                      .group_by(webhook_deliveries.c.policy_id))
            return {int(row.policy_id): aware(row.latest) for row in rows}
