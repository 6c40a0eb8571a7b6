"""``/replication/policies`` and ``/replication/executions``: Harbor's replication API.

System administrators only (as in Harbor): a policy reads or writes any project. The work is
:mod:`moorage.replication`'s; this module only translates Harbor's JSON shapes. The local side
of a policy is ``null`` or ``{"id": 0}`` (Harbor's "this registry"); the other side is an
endpoint of ``/api/v2.0/registries``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, AsciiDigits, CallerDep, Id, PageDep, paginate, services_of
from moorage.replication.executions import Execution, ReplicationExecutions, Task
from moorage.replication.job import ReplicationTrigger
from moorage.replication.policies import Policy, PolicyError, PolicySpec, ReplicationPolicies
from moorage.replication.service import Replication

router = APIRouter(tags=["replication"])

_WHAT = "replication"
#: Integers are stored in 32-bit columns: larger ones are refused (422) before they reach the database.
_MAX_ID = 2_147_483_647


class RegistryRef(BaseModel):
    id: int = Field(ge=0, le=_MAX_ID, description="an endpoint id of /api/v2.0/registries; 0 is this registry")


class TriggerSettings(BaseModel):
    cron: str | None = Field(default=None, max_length=255)


class TriggerIn(BaseModel):
    type: str = Field(default="manual", max_length=16, description="manual, scheduled or event_based")
    trigger_settings: TriggerSettings | None = None


class FilterIn(BaseModel):
    type: str = Field(max_length=16)
    value: Any = None
    decoration: str | None = Field(default=None, max_length=16)


class PolicyIn(BaseModel):
    """Harbor's ``ReplicationPolicy``; ``copy_by_chunk`` and ``single_active_replication`` are accepted
    (uploads to a remote side are always chunked and resumable)."""

    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=4000)
    src_registry: RegistryRef | None = None
    dest_registry: RegistryRef | None = None
    dest_namespace: str | None = Field(default=None, max_length=255)
    dest_namespace_replace_count: int = Field(default=-1, ge=-_MAX_ID, le=_MAX_ID)
    trigger: TriggerIn | None = None
    filters: list[FilterIn] | None = Field(default=None, max_length=32)
    replicate_deletion: bool = False
    deletion: bool | None = None
    override: bool = True
    enabled: bool = True
    speed: int = Field(default=-1, ge=-_MAX_ID, le=_MAX_ID, description="KiB/s, -1 for no limit")
    concurrency: int = Field(default=2, ge=-_MAX_ID, le=_MAX_ID)
    copy_by_chunk: bool | None = None
    single_active_replication: bool | None = None


class PolicyOut(BaseModel):
    id: int
    name: str
    description: str
    src_registry: dict[str, Any] | None
    dest_registry: dict[str, Any] | None
    dest_namespace: str | None
    dest_namespace_replace_count: int
    trigger: dict[str, Any]
    filters: list[dict[str, Any]]
    replicate_deletion: bool
    deletion: bool
    override: bool
    enabled: bool
    speed: int
    concurrency: int
    copy_by_chunk: bool = True
    creation_time: datetime
    update_time: datetime


class ExecutionIn(BaseModel):
    policy_id: int = Field(ge=1, le=_MAX_ID)


class ExecutionStop(BaseModel):
    status: str | None = Field(default=None, max_length=16)


class ExecutionOut(BaseModel):
    id: int
    policy_id: int
    #: The ``replication.run`` job that runs it (``/api/v2.0/jobs/{job_id}``: node, lease, attempts).
    job_id: int | None
    status: str
    status_text: str
    trigger: str
    start_time: datetime
    end_time: datetime | None
    total: int
    failed: int
    succeed: int
    in_progress: int
    stopped: int


class TaskOut(BaseModel):
    id: int
    execution_id: int
    resource_type: str
    src_resource: str
    dst_resource: str
    operation: str
    reference: str
    status: str
    bytes: int
    attempts: int
    start_time: datetime | None
    end_time: datetime | None


def _replication(request: Request) -> Replication:
    replication = services_of(request).replication
    if replication is None:
        raise ApiError(501, "replication needs auth.mode: token and auth.secret_key (endpoint credentials are "
                            "sealed with it); set both and restart")
    return replication


def policies_of(request: Request) -> ReplicationPolicies:
    return _replication(request).policies


def executions_of(request: Request) -> ReplicationExecutions:
    return _replication(request).executions


def trigger_of(request: Request) -> ReplicationTrigger:
    return _replication(request).trigger


PoliciesDep = Annotated[ReplicationPolicies, Depends(policies_of)]
ExecutionsDep = Annotated[ReplicationExecutions, Depends(executions_of)]
TriggerDep = Annotated[ReplicationTrigger, Depends(trigger_of)]


def _policy_error(exc: PolicyError) -> ApiError:
    status = {"invalid": 400, "conflict": 409, "not_found": 404}[exc.kind]
    suffix = "; nothing was saved" if exc.kind != "not_found" else ""
    return ApiError(status, f"{exc}{suffix}")


def _side(ref: RegistryRef | None) -> int | None:
    return None if ref is None or ref.id == 0 else ref.id


def _spec(body: PolicyIn) -> PolicySpec:
    trigger = body.trigger or TriggerIn()
    return PolicySpec(
        name=body.name, description=body.description, src_registry_id=_side(body.src_registry),
        dest_registry_id=_side(body.dest_registry), dest_namespace=body.dest_namespace,
        dest_namespace_replace_count=body.dest_namespace_replace_count,
        filters=[item.model_dump(exclude_none=True) for item in body.filters or []],
        trigger_type=trigger.type, cron=trigger.trigger_settings.cron if trigger.trigger_settings else None,
        replicate_deletion=body.replicate_deletion or bool(body.deletion), override=body.override,
        enabled=body.enabled, speed_kb=body.speed, concurrency=body.concurrency,
    )


def _policy_out(policy: Policy) -> PolicyOut:
    spec = policy.spec

    def side(endpoint_id: int | None) -> dict[str, Any]:
        return {"id": endpoint_id or 0, "name": "Local" if endpoint_id is None else None}

    return PolicyOut(
        id=policy.id, name=spec.name, description=spec.description,
        src_registry=side(spec.src_registry_id), dest_registry=side(spec.dest_registry_id),
        dest_namespace=spec.dest_namespace, dest_namespace_replace_count=spec.dest_namespace_replace_count,
        trigger={"type": spec.trigger_type, "trigger_settings": {"cron": spec.cron or ""}},
        filters=spec.filters, replicate_deletion=spec.replicate_deletion, deletion=spec.replicate_deletion,
        override=spec.override, enabled=spec.enabled, speed=spec.speed_kb, concurrency=spec.concurrency,
        creation_time=policy.created_at, update_time=policy.updated_at,
    )


def _execution_out(execution: Execution) -> ExecutionOut:
    counts = execution.counts
    return ExecutionOut(
        id=execution.id, policy_id=execution.policy_id, job_id=execution.job_id, status=execution.status,
        status_text=execution.status_text, trigger=execution.trigger, start_time=execution.start_time,
        end_time=execution.end_time, total=counts.total, failed=counts.failed, succeed=counts.succeed,
        in_progress=counts.in_progress, stopped=counts.stopped,
    )


def _task_out(task: Task) -> TaskOut:
    return TaskOut(
        id=task.id, execution_id=task.execution_id, resource_type=task.resource_type,
        src_resource=task.src_resource, dst_resource=task.dst_resource, operation=task.operation,
        reference=task.reference, status=task.status, bytes=task.bytes, attempts=task.attempts,
        start_time=task.start_time, end_time=task.end_time,
    )


@router.get("/replication/policies", response_model=list[PolicyOut])
async def list_policies(request: Request, response: Response, who: CallerDep, policies: PoliciesDep,
                        page: PageDep, name: Annotated[str | None, Query(max_length=255)] = None) -> list[PolicyOut]:
    who.require_admin(_WHAT)
    found, total = await policies.listing(page.offset, page.page_size, name)
    paginate(request, response, page, total)
    return [_policy_out(policy) for policy in found]


@router.post("/replication/policies", status_code=201)
async def create_policy(body: PolicyIn, who: CallerDep, policies: PoliciesDep, response: Response) -> None:
    who.require_admin(_WHAT)
    try:
        policy = await policies.create(_spec(body))
    except PolicyError as exc:
        raise _policy_error(exc) from None
    response.headers["Location"] = f"/api/v2.0/replication/policies/{policy.id}"
    await who.audit("create", "replication_policy", policy.spec.name)


@router.get("/replication/policies/{policy_id}", response_model=PolicyOut)
async def get_policy(policy_id: Id, who: CallerDep, policies: PoliciesDep) -> PolicyOut:
    who.require_admin(_WHAT)
    try:
        return _policy_out(await policies.get(policy_id))
    except PolicyError as exc:
        raise _policy_error(exc) from None


@router.put("/replication/policies/{policy_id}")
async def update_policy(policy_id: Id, body: PolicyIn, who: CallerDep, policies: PoliciesDep) -> None:
    who.require_admin(_WHAT)
    try:
        policy = await policies.update(policy_id, _spec(body))
    except PolicyError as exc:
        raise _policy_error(exc) from None
    await who.audit("update", "replication_policy", policy.spec.name)


@router.delete("/replication/policies/{policy_id}")
async def delete_policy(policy_id: Id, who: CallerDep, policies: PoliciesDep) -> None:
    who.require_admin(_WHAT)
    try:
        await policies.delete(policy_id)
    except PolicyError as exc:
        raise _policy_error(exc) from None
    await who.audit("delete", "replication_policy", str(policy_id))


@router.get("/replication/executions", response_model=list[ExecutionOut])
async def list_executions(
    request: Request, response: Response, who: CallerDep, executions: ExecutionsDep, page: PageDep,
    policy_id: Annotated[int | None, Query(ge=1, le=_MAX_ID), AsciiDigits] = None,
    trigger: Annotated[str | None, Query(max_length=16)] = None,
) -> list[ExecutionOut]:
    who.require_admin(_WHAT)
    found, total = await executions.listing(page.offset, page.page_size, policy_id, trigger)
    paginate(request, response, page, total)
    return [_execution_out(execution) for execution in found]


@router.post("/replication/executions", status_code=201)
async def start_execution(body: ExecutionIn, who: CallerDep, trigger: TriggerDep, response: Response) -> None:
    """Run a policy now; ``Location`` names the execution."""
    who.require_admin(_WHAT)
    try:
        execution_id = await trigger.run_now(body.policy_id)
    except PolicyError as exc:
        raise _policy_error(exc) from None
    response.headers["Location"] = f"/api/v2.0/replication/executions/{execution_id}"
    await who.audit("create", "replication_execution", str(execution_id))


async def _execution(executions: ReplicationExecutions, execution_id: int) -> Execution:
    found = await executions.get(execution_id)
    if found is None:
        raise ApiError(404, f"replication execution {execution_id} does not exist; list them with "
                            "GET /api/v2.0/replication/executions")
    return found


@router.get("/replication/executions/{execution_id}", response_model=ExecutionOut)
async def get_execution(execution_id: Id, who: CallerDep, executions: ExecutionsDep) -> ExecutionOut:
    who.require_admin(_WHAT)
    return _execution_out(await _execution(executions, execution_id))


@router.put("/replication/executions/{execution_id}")
async def stop_execution(execution_id: Id, who: CallerDep, executions: ExecutionsDep,
                         body: ExecutionStop | None = None) -> None:
    """Stop a running execution (Harbor's PUT with an empty body): tasks not yet started are stopped."""
    who.require_admin(_WHAT)
    found = await _execution(executions, execution_id)
    if not await executions.stop(found.id):
        raise ApiError(412, f"execution {execution_id} is {found.status}, not running; nothing to stop")
    await who.audit("stop", "replication_execution", str(execution_id))


@router.get("/replication/executions/{execution_id}/tasks", response_model=list[TaskOut])
async def list_tasks(
    request: Request, response: Response, execution_id: Id, who: CallerDep, executions: ExecutionsDep,
    page: PageDep, status: Annotated[str | None, Query(max_length=16)] = None,
) -> list[TaskOut]:
    who.require_admin(_WHAT)
    await _execution(executions, execution_id)
    found, total = await executions.tasks(execution_id, page.offset, page.page_size, status)
    paginate(request, response, page, total)
    return [_task_out(task) for task in found]


@router.get(
    "/replication/executions/{execution_id}/tasks/{task_id}/log",
    responses={200: {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def get_task_log(execution_id: Id, task_id: Id, who: CallerDep, executions: ExecutionsDep) -> PlainTextResponse:
    """What the task did, step by step, and the other side's answer when it failed."""
    who.require_admin(_WHAT)
    log = await executions.task_log(execution_id, task_id)
    if log is None:
        raise ApiError(404, f"task {task_id} of execution {execution_id} does not exist; list them with "
                            f"GET /api/v2.0/replication/executions/{execution_id}/tasks")
    return PlainTextResponse(log)
