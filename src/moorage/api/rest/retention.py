"""``/retentions``: Harbor's tag retention API (policies, runs, executions, tasks and their logs).

The body is Harbor's ``RetentionPolicy`` (see :mod:`moorage.retention.rules`); the scope is a
project (``{"level": "project", "ref": <project id>}``), one policy per project. Project admins
and system administrators change and run a policy; maintainers may read it and its history
(:meth:`moorage.auth.policy.Policy.retention_denial`). A run is a ``retention.run`` job: the
``Location`` of ``POST …/executions`` names it, and it is also at ``/api/v2.0/jobs/{id}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, Caller, CallerDep, Id, PageDep, paginate, project_rights
from moorage.api.rest.deps import GuardDep, RetentionDep, registry_error
from moorage.auth.identity import Project
from moorage.errors import RegistryError
from moorage.retention.rules import TEMPLATE_NAMES, TEMPLATES, InvalidPolicy
from moorage.retention.service import (
    PolicyExists,
    RetentionExecution,
    RetentionPolicy,
    RetentionService,
    RetentionTask,
)

router = APIRouter(tags=["retention"])


class ScopeIn(BaseModel):
    level: str = Field(default="project", max_length=16)
    ref: int | None = Field(default=None, ge=1, le=2_147_483_647)


class PolicyIn(BaseModel):
    """Harbor's ``RetentionPolicy``; rules are checked by the domain, which names the bad field."""

    id: int | None = None
    algorithm: str | None = Field(default=None, max_length=16)
    rules: list[dict[str, Any]] | None = Field(default=None, max_length=100)
    trigger: dict[str, Any] | None = None
    scope: ScopeIn | None = None


class PolicyOut(BaseModel):
    id: int
    algorithm: str
    rules: list[dict[str, Any]]
    trigger: dict[str, Any]
    scope: dict[str, Any]
    next_scheduled_time: datetime | None = None


class RunIn(BaseModel):
    dry_run: bool = False


class ActionIn(BaseModel):
    action: str = Field(max_length=16)


class ExecutionOut(BaseModel):
    id: int
    policy_id: int
    start_time: datetime | None
    end_time: datetime | None
    status: str
    trigger: str
    dry_run: bool


class TaskOut(BaseModel):
    id: int
    execution_id: int
    repository: str
    job_id: str
    status: str
    status_code: int = 0
    status_revision: int = 0
    start_time: datetime
    end_time: datetime | None
    total: int
    retained: int


class MetadataOut(BaseModel):
    templates: list[dict[str, Any]]
    scope_selectors: list[dict[str, Any]]
    tag_selectors: list[dict[str, Any]]


def _policy_out(policy: RetentionPolicy) -> PolicyOut:
    return PolicyOut(**policy.as_json(), next_scheduled_time=policy.next_due(datetime.now(UTC)))


def _execution_out(execution: RetentionExecution) -> ExecutionOut:
    return ExecutionOut(
        id=execution.id, policy_id=execution.policy_id, start_time=execution.started_at,
        end_time=execution.ended_at, status=execution.status, trigger=execution.trigger, dry_run=execution.dry_run,
    )


def _task_out(task: RetentionTask) -> TaskOut:
    return TaskOut(
        id=task.id, execution_id=task.execution_id, repository=task.repository, job_id=str(task.execution_id),
        status=task.status, start_time=task.started_at, end_time=task.ended_at, total=task.total,
        retained=task.retained,
    )


async def _project(who: Caller, project_id: int, *, change: bool) -> Project:
    """The project once the caller may read (or change and run) its retention policy."""
    who.require_login()
    rights = await project_rights(who, str(project_id))
    denial = who.identity.policy.retention_denial(who.subject, rights, change=change)
    if denial is not None:
        raise ApiError.of(denial.error())
    if rights.project is None:  # visible means it exists; kept for the type checker
        raise ApiError(404, who.identity.policy.hidden_message(rights.project_name))
    return rights.project


async def _policy(who: Caller, retention: RetentionService, policy_id: int, *,
                  change: bool) -> tuple[RetentionPolicy, Project]:
    missing = ApiError(404, f"retention policy {policy_id} does not exist; a project's policy is at "
                            "GET /api/v2.0/projects/{project_name_or_id}/retention")
    policy = await retention.get(policy_id)
    if policy is None:
        who.require_login()
        raise missing
    return policy, await _project(who, policy.project_id, change=change)


def _invalid(exc: InvalidPolicy) -> ApiError:
    return ApiError(400, f"{exc.field}: {exc.message}; nothing was saved")


def _body(body: PolicyIn) -> dict[str, Any]:
    return {"algorithm": body.algorithm, "rules": body.rules if body.rules is not None else [],
            "trigger": body.trigger}


@router.get("/retentions/metadatas", response_model=MetadataOut)
async def metadatas(who: CallerDep) -> MetadataOut:
    """The rule templates and selectors this registry supports (Harbor's ``RetentionMetadata``)."""
    who.require_login()
    templates = [
        {"rule_template": name, "display_text": TEMPLATE_NAMES[name], "action": "retain",
         "params": [{"type": "int", "unit": "DAYS" if name.startswith("nDays") else "COUNT", "required": True}]
         if parameter else []}
        for name, parameter in TEMPLATES.items()
    ]
    return MetadataOut(
        templates=templates,
        scope_selectors=[{"display_text": "Repositories", "kind": "doublestar",
                          "decorations": ["repoMatches", "repoExcludes"]}],
        tag_selectors=[{"display_text": "Tags", "kind": "doublestar", "decorations": ["matches", "excludes"]}],
    )


@router.get("/projects/{project_name_or_id}/retention", response_model=PolicyOut)
async def project_policy(project_name_or_id: str, who: CallerDep, retention: RetentionDep) -> PolicyOut:
    """The project's policy (a Moorage addition: Harbor puts its id in the project's ``retention_id``)."""
    who.require_login()
    rights = await project_rights(who, project_name_or_id)
    denial = who.identity.policy.retention_denial(who.subject, rights, change=False)
    if denial is not None:
        raise ApiError.of(denial.error())
    if rights.project is None:
        raise ApiError(404, who.identity.policy.hidden_message(rights.project_name))
    policy = await retention.of_project(rights.project.id)
    if policy is None:
        raise ApiError(404, f"project {rights.project.name!r} has no retention policy; create one with "
                            "POST /api/v2.0/retentions")
    return _policy_out(policy)


@router.post("/retentions", status_code=201, response_model=None)
async def create_policy(body: PolicyIn, who: CallerDep, retention: RetentionDep, response: Response) -> None:
    """Create the project's policy (``scope.ref`` is the project id); 409 when it has one."""
    if body.scope is None or body.scope.ref is None:
        who.require_login()
        raise ApiError(400, 'scope.ref: required, the project id: {"scope": {"level": "project", "ref": 1}}')
    if body.scope.level != "project":
        raise ApiError(400, f"scope.level: {body.scope.level!r} is not supported; policies belong to a 'project'")
    project = await _project(who, body.scope.ref, change=True)
    try:
        policy = await retention.create(project.id, _body(body))
    except InvalidPolicy as exc:
        raise _invalid(exc) from None
    except PolicyExists as exc:
        raise ApiError(409, f"project {project.name!r} has retention policy {exc.policy_id} already; change it with "
                            f"PUT /api/v2.0/retentions/{exc.policy_id}") from None
    await who.audit("create", "retention", f"policy {policy.id}", project.name)
    response.headers["Location"] = f"/api/v2.0/retentions/{policy.id}"


@router.get("/retentions/{policy_id}", response_model=PolicyOut)
async def get_policy(policy_id: Id, who: CallerDep, retention: RetentionDep) -> PolicyOut:
    policy, _ = await _policy(who, retention, policy_id, change=False)
    return _policy_out(policy)


@router.put("/retentions/{policy_id}", response_model=None)
async def update_policy(policy_id: Id, body: PolicyIn, who: CallerDep, retention: RetentionDep) -> None:
    """Replace the rules and trigger (Harbor sends the whole policy); the scope cannot change."""
    policy, project = await _policy(who, retention, policy_id, change=True)
    if body.scope is not None and body.scope.ref not in (None, policy.project_id):
        raise ApiError(400, f"scope.ref: policy {policy.id} belongs to project {project.id}; it cannot move")
    try:
        after = await retention.update(policy, _body(body))
    except InvalidPolicy as exc:
        raise _invalid(exc) from None
    if after is None:
        raise ApiError(404, f"retention policy {policy.id} was deleted meanwhile")
    await who.audit("update", "retention", f"policy {policy.id}", project.name)


@router.delete("/retentions/{policy_id}", response_model=None)
async def delete_policy(policy_id: Id, who: CallerDep, retention: RetentionDep) -> None:
    policy, project = await _policy(who, retention, policy_id, change=True)
    if not await retention.delete(policy):
        raise ApiError(404, f"retention policy {policy.id} was deleted meanwhile")
    await who.audit("delete", "retention", f"policy {policy.id}", project.name)


@router.post("/retentions/{policy_id}/executions", status_code=201, response_model=None)
async def run_policy(policy_id: Id, who: CallerDep, retention: RetentionDep, guard: GuardDep,
                     response: Response, body: RunIn | None = None) -> None:
    """Run the policy now (``{"dry_run": true}`` lists what would go and removes nothing)."""
    policy, project = await _policy(who, retention, policy_id, change=True)
    dry_run = body.dry_run if body is not None else False
    if not dry_run:
        try:
            guard.deletable()
        except RegistryError as exc:
            raise registry_error(exc) from None
    execution_id = await retention.run_now(policy, dry_run=dry_run)
    await who.audit("create", "retention_execution", f"execution {execution_id}", project.name,
                    detail="dry run" if dry_run else None)
    response.headers["Location"] = f"/api/v2.0/retentions/{policy.id}/executions/{execution_id}"


@router.get("/retentions/{policy_id}/executions", response_model=list[ExecutionOut])
async def list_executions(request: Request, response: Response, policy_id: Id, who: CallerDep,
                          retention: RetentionDep, page: PageDep) -> list[ExecutionOut]:
    """The policy's executions, newest first (``X-Total-Count``, ``Link``)."""
    policy, _ = await _policy(who, retention, policy_id, change=False)
    found, total = await retention.executions(policy.id, page.offset, page.page_size)
    paginate(request, response, page, total)
    return [_execution_out(e) for e in found]


async def _execution(retention: RetentionService, policy: RetentionPolicy, execution_id: int) -> RetentionExecution:
    found = await retention.execution(policy.id, execution_id)
    if found is None:
        raise ApiError(404, f"execution {execution_id} is not an execution of retention policy {policy.id}; list "
                            f"them with GET /api/v2.0/retentions/{policy.id}/executions")
    return found


@router.get("/retentions/{policy_id}/executions/{execution_id}", response_model=ExecutionOut)
async def get_execution(policy_id: Id, execution_id: Id, who: CallerDep, retention: RetentionDep) -> ExecutionOut:
    policy, _ = await _policy(who, retention, policy_id, change=False)
    return _execution_out(await _execution(retention, policy, execution_id))


@router.patch("/retentions/{policy_id}/executions/{execution_id}", response_model=None)
async def stop_execution(policy_id: Id, execution_id: Id, body: ActionIn, who: CallerDep,
                         retention: RetentionDep) -> None:
    """``{"action": "stop"}``: a queued execution stops at once, a running one before its next repository."""
    policy, project = await _policy(who, retention, policy_id, change=True)
    if body.action.lower() != "stop":
        raise ApiError(400, f"action: {body.action!r} is not supported; send {{\"action\": \"stop\"}}")
    execution = await _execution(retention, policy, execution_id)
    await retention.stop(execution)
    await who.audit("stop", "retention_execution", f"execution {execution_id}", project.name)


@router.get("/retentions/{policy_id}/executions/{execution_id}/tasks", response_model=list[TaskOut])
async def list_tasks(request: Request, response: Response, policy_id: Id, execution_id: Id, who: CallerDep,
                     retention: RetentionDep, page: PageDep) -> list[TaskOut]:
    """One task per repository the execution evaluated, in the order it did them."""
    policy, _ = await _policy(who, retention, policy_id, change=False)
    execution = await _execution(retention, policy, execution_id)
    found, total = await retention.tasks(execution.id, page.offset, page.page_size)
    paginate(request, response, page, total)
    return [_task_out(t) for t in found]


@router.get(
    "/retentions/{policy_id}/executions/{execution_id}/tasks/{task_id}",
    responses={200: {"description": "The task's log", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def get_task_log(policy_id: Id, execution_id: Id, task_id: Id, who: CallerDep,
                       retention: RetentionDep) -> PlainTextResponse:
    """The task's log: one line per artifact (RETAIN, REMOVE for a dry run, REMOVED, KEPT with why)."""
    policy, _ = await _policy(who, retention, policy_id, change=False)
    execution = await _execution(retention, policy, execution_id)
    task = await retention.task(execution.id, task_id)
    if task is None:
        raise ApiError(404, f"task {task_id} is not a task of execution {execution.id}; list them with GET "
                            f"/api/v2.0/retentions/{policy.id}/executions/{execution.id}/tasks")
    return PlainTextResponse(task.log)
