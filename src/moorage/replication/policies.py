"""Replication policies: checked when saved, so a running policy never meets a bad field.

A policy copies between this registry and one endpoint (``registries``): push-based when the
destination is the endpoint, pull-based when the source is. Everything that can be wrong with
it — a filter that cannot compile, a cron that cannot parse, an endpoint that does not exist,
both sides local or both remote — is refused here with the field named (Harbor's JSON names)
and nothing stored. The REST API, the CLI and the jobs all go through :class:`ReplicationPolicies`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from moorage.db.proxy_tables import registries
from moorage.db.replication_tables import replication_executions, replication_policies
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.jobs.cron import Cron, CronError
from moorage.registry.names import InvalidNameError, check_repository
from moorage.replication.filters import FilterError, Selection, compile_filters

__all__ = ["TRIGGERS", "Policy", "PolicyError", "PolicySpec", "ReplicationPolicies", "check_spec"]

TRIGGERS = ("manual", "scheduled", "event_based")
MAX_CONCURRENCY = 32


class PolicyError(ValueError):
    """A policy refused (``invalid``: 400, ``conflict``: 409, ``not_found``: 404); ``field`` names the input."""

    def __init__(self, kind: Literal["invalid", "conflict", "not_found"], message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.kind = kind
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """What a caller asks for (Harbor's ``ReplicationPolicy`` fields)."""

    name: str
    description: str = ""
    src_registry_id: int | None = None
    dest_registry_id: int | None = None
    dest_namespace: str | None = None
    dest_namespace_replace_count: int = -1
    filters: list[dict[str, Any]] = field(default_factory=list)
    trigger_type: str = "manual"
    cron: str | None = None
    replicate_deletion: bool = False
    override: bool = True
    enabled: bool = True
    speed_kb: int = -1
    concurrency: int = 2


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    spec: PolicySpec
    created_at: datetime
    updated_at: datetime

    @property
    def direction(self) -> Literal["push", "pull"]:
        return "push" if self.spec.dest_registry_id is not None else "pull"

    @property
    def endpoint_id(self) -> int:
        """The remote side's endpoint."""
        remote = self.spec.dest_registry_id if self.direction == "push" else self.spec.src_registry_id
        if remote is None:  # check_spec guarantees one side is remote
            raise PolicyError("invalid", "the policy has no remote side")
        return remote

    @property
    def selection(self) -> Selection:
        return compile_filters(self.spec.filters)


def _invalid(field_name: str, message: str) -> PolicyError:
    return PolicyError("invalid", message, field_name)


def check_spec(spec: PolicySpec) -> PolicySpec:
    """``spec`` with its text normalised, or :class:`PolicyError` naming the first bad field."""
    name = spec.name.strip()
    if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise _invalid("name", "give a name of 1 to 255 printable characters")
    if (spec.src_registry_id is None) == (spec.dest_registry_id is None):
        raise _invalid("dest_registry", "exactly one side must be another registry: set dest_registry for a "
                                        "push-based policy or src_registry for a pull-based one")
    namespace = (spec.dest_namespace or "").strip().strip("/") or None
    if namespace is not None:
        try:
            check_repository(namespace)
        except InvalidNameError as exc:
            raise _invalid("dest_namespace", str(exc)) from None
    if spec.dest_namespace_replace_count < -1:
        raise _invalid("dest_namespace_replace_count", "use -1 (flatten all levels), 0 (none) or a positive count")
    try:
        compile_filters(spec.filters)
    except FilterError as exc:
        raise _invalid(exc.field, str(exc).partition(": ")[2]) from None
    if spec.trigger_type not in TRIGGERS:
        raise _invalid("trigger.type", f"unknown trigger {spec.trigger_type!r}; use one of {', '.join(TRIGGERS)}")
    cron = (spec.cron or "").strip() or None
    if spec.trigger_type == "scheduled":
        if cron is None:
            raise _invalid("trigger.trigger_settings.cron", "a scheduled policy needs a cron, e.g. '0 0 * * * *'")
        try:
            Cron.parse(cron)
        except CronError as exc:
            raise _invalid("trigger.trigger_settings.cron", str(exc)) from None
    elif spec.trigger_type == "event_based" and spec.src_registry_id is not None:
        raise _invalid("trigger.type", "event_based needs this registry as the source; a pull-based policy "
                                       "runs manually or on a schedule")
    if spec.speed_kb < -1 or spec.speed_kb == 0:
        raise _invalid("speed", "give the bandwidth limit in KiB/s, or -1 for no limit")
    if not 1 <= spec.concurrency <= MAX_CONCURRENCY:
        raise _invalid("concurrency", f"give 1 to {MAX_CONCURRENCY} artifacts copied at once")
    return replace(spec, name=name, dest_namespace=namespace,
                   cron=cron if spec.trigger_type == "scheduled" else None)


def _now() -> datetime:
    return datetime.now(UTC)


def _row_values(spec: PolicySpec) -> dict[str, Any]:
    return {
        "name": spec.name, "description": spec.description, "src_registry_id": spec.src_registry_id,
        "dest_registry_id": spec.dest_registry_id, "dest_namespace": spec.dest_namespace,
        "dest_namespace_replace_count": spec.dest_namespace_replace_count, "filters": json.dumps(spec.filters),
        "trigger_type": spec.trigger_type, "cron": spec.cron, "replicate_deletion": spec.replicate_deletion,
        "override": spec.override, "enabled": spec.enabled, "speed_kb": spec.speed_kb,
        "concurrency": spec.concurrency,
    }


def _policy(row: Any) -> Policy:
    spec = PolicySpec(
        name=row.name, description=row.description, src_registry_id=row.src_registry_id,
        dest_registry_id=row.dest_registry_id, dest_namespace=row.dest_namespace,
        dest_namespace_replace_count=row.dest_namespace_replace_count, filters=json.loads(row.filters),
        trigger_type=row.trigger_type, cron=row.cron, replicate_deletion=bool(row.replicate_deletion),
        override=bool(row.override), enabled=bool(row.enabled), speed_kb=row.speed_kb,
        concurrency=row.concurrency,
    )
    return Policy(row.id, spec, aware(row.created_at), aware(row.updated_at))


class ReplicationPolicies:
    """Create, change, delete and read policies (the one place that writes them)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _check_endpoints(self, conn: Any, spec: PolicySpec) -> None:
        for field_name, endpoint_id in (("src_registry", spec.src_registry_id), ("dest_registry", spec.dest_registry_id)):
            if endpoint_id is None:
                continue
            found = (await conn.execute(select(registries.c.id).where(registries.c.id == endpoint_id))).first()
            if found is None:
                raise PolicyError("invalid", f"registry endpoint {endpoint_id} does not exist; list them with "
                                             "GET /api/v2.0/registries", f"{field_name}.id")

    async def create(self, spec: PolicySpec) -> Policy:
        checked = check_spec(spec)
        now = _now()
        try:
            async with self.db.write() as conn:
                await self._check_endpoints(conn, checked)
                result = await conn.execute(
                    replication_policies.insert().values(**_row_values(checked), created_at=now, updated_at=now)
                    .returning(replication_policies.c.id)
                )
                policy_id = int(result.scalar_one())
        except IntegrityError:
            raise PolicyError("conflict", f"a policy named {checked.name!r} exists; choose another name", "name") from None
        return Policy(policy_id, checked, now, now)

    async def update(self, policy_id: int, spec: PolicySpec) -> Policy:
        checked = check_spec(spec)
        try:
            async with self.db.write() as conn:
                await self._check_endpoints(conn, checked)
                result = await conn.execute(
                    update(replication_policies).where(replication_policies.c.id == policy_id)
                    .values(**_row_values(checked), updated_at=_now())
                )
                if result.rowcount == 0:
                    raise self._missing(policy_id)
        except IntegrityError:
            raise PolicyError("conflict", f"a policy named {checked.name!r} exists; choose another name", "name") from None
        return await self.get(policy_id)

    async def delete(self, policy_id: int) -> None:
        """Delete a policy and its history; refused while one of its executions runs."""
        async with self.db.write() as conn:
            running = (await conn.execute(
                select(func.count()).select_from(replication_executions).where(
                    replication_executions.c.policy_id == policy_id,
                    replication_executions.c.status == "InProgress")
            )).scalar_one()
            if running:
                raise PolicyError("conflict", f"policy {policy_id} has a running execution; stop it first "
                                              "(PUT /api/v2.0/replication/executions/{id})")
            result = await conn.execute(delete(replication_policies).where(replication_policies.c.id == policy_id))
            if result.rowcount == 0:
                raise self._missing(policy_id)

    async def get(self, policy_id: int) -> Policy:
        async with self.db.read() as conn:
            row = (await conn.execute(select(replication_policies).where(replication_policies.c.id == policy_id))).first()
        if row is None:
            raise self._missing(policy_id)
        return _policy(row)

    async def listing(self, offset: int, limit: int, name: str | None = None) -> tuple[list[Policy], int]:
        query = select(replication_policies)
        if name:
            query = query.where(replication_policies.c.name.contains(name, autoescape=True))
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await conn.execute(query.order_by(replication_policies.c.id).offset(offset).limit(limit))).all()
        return [_policy(row) for row in rows], int(total)

    async def triggered_by(self, trigger_type: str) -> list[Policy]:
        """Enabled policies with this trigger (event and schedule dispatch)."""
        query = select(replication_policies).where(
            replication_policies.c.trigger_type == trigger_type, replication_policies.c.enabled.is_(True))
        async with self.db.read() as conn:
            return [_policy(row) for row in (await conn.execute(query.order_by(replication_policies.c.id))).all()]

    @staticmethod
    def _missing(policy_id: int) -> PolicyError:
        return PolicyError("not_found", f"replication policy {policy_id} does not exist; list them with "
                                        "GET /api/v2.0/replication/policies")
