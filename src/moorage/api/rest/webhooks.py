"""``/projects/{project_name_or_id}/webhook/…``: Harbor's webhook policy API and its delivery log.

Shapes are Harbor's ``WebhookPolicy`` (``targets[].type/address/auth_header/skip_cert_verify/
payload_format``, ``event_types``, ``enabled``) and ``WebhookJob``. Moorage adds one write-only
target field, ``secret``: bodies are then signed (``X-Moorage-Signature-256``); reads show only
``has_secret``. Project admins (and system administrators) change policies; maintainers may read
them (:meth:`moorage.auth.policy.Policy.webhook_denial`). A bad field is a 400 naming it
(``targets[0].address: … has no scheme``) and nothing is saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, Caller, CallerDep, Id, PageDep, paginate, project_rights
from moorage.api.rest.deps import WebhooksDep
from moorage.auth.identity import Project
from moorage.webhooks import WebhookService
from moorage.webhooks.events import EVENT_TYPES, PAYLOAD_FORMATS
from moorage.webhooks.policies import NOTIFY_TYPES, InvalidPolicy, Policy, Target

router = APIRouter(tags=["webhook"])


class TargetIn(BaseModel):
    type: str = Field(default="http", max_length=32)
    address: str = Field(max_length=2048)
    auth_header: str | None = Field(default=None, max_length=4096)
    skip_cert_verify: bool = False
    payload_format: str | None = Field(default=None, max_length=32)
    #: Moorage extension: HMAC-SHA256 key for ``X-Moorage-Signature-256``; omitted on update keeps the old one.
    secret: str | None = Field(default=None, max_length=256)


class PolicyIn(BaseModel):
    """Harbor's ``WebhookPolicy``; ``id``, ``project_id``, ``creator`` and the times are accepted and ignored."""

    id: int | None = None
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=4096)
    project_id: int | None = None
    targets: list[TargetIn] | None = Field(default=None, max_length=20)
    event_types: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=32)
    creator: str | None = None
    creation_time: str | None = None
    update_time: str | None = None
    enabled: bool | None = None


class TargetOut(BaseModel):
    type: str
    address: str
    auth_header: str
    skip_cert_verify: bool
    payload_format: str
    has_secret: bool


class PolicyOut(BaseModel):
    id: int
    name: str
    description: str
    project_id: int
    targets: list[TargetOut]
    event_types: list[str]
    creator: str
    creation_time: datetime
    update_time: datetime
    enabled: bool


class JobOut(BaseModel):
    """Harbor's ``WebhookJob``: one event sent to one target; ``job_detail`` is the payload sent."""

    id: int
    policy_id: int
    event_type: str
    notify_type: str
    status: str
    job_detail: str
    creation_time: datetime
    update_time: datetime
    attempts: int
    last_error: str | None


class PayloadFormats(BaseModel):
    notify_type: str
    formats: list[str]


class SupportedEvents(BaseModel):
    event_type: list[str]
    notify_type: list[str]
    payload_formats: list[PayloadFormats]


class LastTrigger(BaseModel):
    policy_name: str
    event_type: str
    enabled: bool
    creation_time: datetime
    last_trigger_time: datetime | None


def _out(policy: Policy) -> PolicyOut:
    return PolicyOut(
        id=policy.id, name=policy.name, description=policy.description, project_id=policy.project_id,
        targets=[TargetOut(type=t.type, address=t.address, auth_header=t.auth_header,
                           skip_cert_verify=t.skip_cert_verify, payload_format=t.payload_format,
                           has_secret=bool(t.secret)) for t in policy.targets],
        event_types=list(policy.event_types), creator=policy.creator, creation_time=policy.created_at,
        update_time=policy.updated_at, enabled=policy.enabled,
    )


def _targets(body: PolicyIn) -> list[Target]:
    return [Target(address=t.address.strip(), type=t.type, auth_header=t.auth_header or "",
                   skip_cert_verify=t.skip_cert_verify, payload_format=t.payload_format or "Default",
                   secret=t.secret or "") for t in body.targets or []]


def _invalid(exc: InvalidPolicy) -> ApiError:
    return ApiError(exc.status, f"{exc.field}: {exc.message}; nothing was saved")


async def _project(who: Caller, name_or_id: str, *, change: bool) -> Project:
    if change:
        who.require_login()
    rights = await project_rights(who, name_or_id)
    denial = who.identity.policy.webhook_denial(who.subject, rights, change=change)
    if denial is not None:
        raise ApiError.of(denial.error())
    if rights.project is None:  # visible means it exists; kept for the type checker
        raise ApiError(404, who.identity.policy.hidden_message(rights.project_name))
    return rights.project


async def _policy(webhooks: WebhookService, project: Project, policy_id: int) -> Policy:
    policy = await webhooks.policies.get(project.id, policy_id)
    if policy is None:
        raise ApiError(404, f"webhook policy {policy_id} is not a policy of project {project.name!r}; list them with "
                            f"GET /api/v2.0/projects/{project.name}/webhook/policies")
    return policy


def _describe(policy: Policy) -> str:
    addresses = ", ".join(t.address for t in policy.targets)
    return f"{policy.name!r}: {', '.join(policy.event_types)} -> {addresses}{'' if policy.enabled else ' (disabled)'}"


@router.get("/projects/{project_name_or_id}/webhook/policies", response_model=list[PolicyOut])
async def list_policies(request: Request, response: Response, project_name_or_id: str, who: CallerDep,
                        page: PageDep, webhooks: WebhooksDep) -> list[PolicyOut]:
    project = await _project(who, project_name_or_id, change=False)
    found = await webhooks.policies.of_project(project.id)
    paginate(request, response, page, len(found))
    return [_out(p) for p in found[page.offset: page.offset + page.page_size]]


@router.post("/projects/{project_name_or_id}/webhook/policies", status_code=201, response_model=None)
async def create_policy(request: Request, response: Response, project_name_or_id: str, body: PolicyIn,
                        who: CallerDep, webhooks: WebhooksDep) -> None:
    project = await _project(who, project_name_or_id, change=True)
    try:
        policy = await webhooks.policies.create(
            project.id, name=(body.name or "").strip(), description=body.description or "",
            enabled=True if body.enabled is None else body.enabled, event_types=body.event_types or [],
            targets=_targets(body), creator=who.subject.name,
        )
    except InvalidPolicy as exc:
        raise _invalid(exc) from None
    webhooks.forget()
    await who.audit("create", "webhook_policy", f"policy {policy.id}", project.name, detail=_describe(policy))
    response.headers["Location"] = f"{request.url.path}/{policy.id}"


@router.get("/projects/{project_name_or_id}/webhook/policies/{webhook_policy_id}", response_model=PolicyOut)
async def get_policy(project_name_or_id: str, webhook_policy_id: Id, who: CallerDep,
                     webhooks: WebhooksDep) -> PolicyOut:
    project = await _project(who, project_name_or_id, change=False)
    return _out(await _policy(webhooks, project, webhook_policy_id))


@router.put("/projects/{project_name_or_id}/webhook/policies/{webhook_policy_id}", response_model=None)
async def update_policy(project_name_or_id: str, webhook_policy_id: Id, body: PolicyIn, who: CallerDep,
                        webhooks: WebhooksDep) -> None:
    """Harbor sends the whole policy; fields left out keep their value (``{"enabled": false}`` alone works)."""
    project = await _project(who, project_name_or_id, change=True)
    policy = await _policy(webhooks, project, webhook_policy_id)
    try:
        after = await webhooks.policies.update(
            policy, name=(body.name if body.name is not None else policy.name).strip(),
            description=body.description if body.description is not None else policy.description,
            enabled=body.enabled if body.enabled is not None else policy.enabled,
            event_types=body.event_types if body.event_types is not None else list(policy.event_types),
            targets=_targets(body) if body.targets is not None else list(policy.targets),
        )
    except InvalidPolicy as exc:
        raise _invalid(exc) from None
    if after is None:
        raise ApiError(404, f"webhook policy {policy.id} of project {project.name!r} was deleted meanwhile")
    webhooks.forget()
    await who.audit("update", "webhook_policy", f"policy {policy.id}", project.name,
                    detail=f"{_describe(policy)} -> {_describe(after)}")


@router.delete("/projects/{project_name_or_id}/webhook/policies/{webhook_policy_id}", response_model=None)
async def delete_policy(project_name_or_id: str, webhook_policy_id: Id, who: CallerDep,
                        webhooks: WebhooksDep) -> None:
    project = await _project(who, project_name_or_id, change=True)
    policy = await _policy(webhooks, project, webhook_policy_id)
    if not await webhooks.policies.delete(policy):
        raise ApiError(404, f"webhook policy {policy.id} of project {project.name!r} was deleted meanwhile")
    webhooks.forget()
    await who.audit("delete", "webhook_policy", f"policy {policy.id}", project.name, detail=_describe(policy))


@router.get("/projects/{project_name_or_id}/webhook/jobs", response_model=list[JobOut])
async def list_jobs(request: Request, response: Response, project_name_or_id: str, who: CallerDep,
                    page: PageDep, webhooks: WebhooksDep,
                    policy_id: Annotated[int, Query(ge=1, le=2_147_483_647,
                                                    description="The policy whose deliveries to list")],
                    status: Annotated[list[str] | None, Query(max_length=8)] = None) -> list[JobOut]:
    """A policy's delivery log, newest first (Harbor's ``WebhookJob`` list)."""
    project = await _project(who, project_name_or_id, change=False)
    policy = await _policy(webhooks, project, policy_id)
    # Harbor's clients send several statuses comma-separated (harborapi) or repeated (the UI).
    wanted = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
    total, found = await webhooks.deliveries(policy.id, statuses=wanted, offset=page.offset, limit=page.page_size)
    paginate(request, response, page, total)
    return [JobOut(id=d.id, policy_id=d.policy_id, event_type=d.event_type, notify_type=d.notify_type,
                   status=d.status, job_detail=d.payload, creation_time=d.created_at, update_time=d.updated_at,
                   attempts=d.attempts, last_error=d.last_error) for d in found]


@router.get("/projects/{project_name_or_id}/webhook/events", response_model=SupportedEvents)
async def supported_events(project_name_or_id: str, who: CallerDep) -> SupportedEvents:
    """The event types, notify types and payload formats a policy may use here."""
    await _project(who, project_name_or_id, change=False)
    return SupportedEvents(event_type=list(EVENT_TYPES), notify_type=list(NOTIFY_TYPES),
                           payload_formats=[PayloadFormats(notify_type=n, formats=list(PAYLOAD_FORMATS))
                                            for n in NOTIFY_TYPES])


@router.get("/projects/{project_name_or_id}/webhook/lasttrigger", response_model=list[LastTrigger])
async def last_trigger(project_name_or_id: str, who: CallerDep, webhooks: WebhooksDep) -> list[LastTrigger]:
    project = await _project(who, project_name_or_id, change=False)
    policies = await webhooks.policies.of_project(project.id)
    latest = await webhooks.last_triggers(project.id, policies)
    return [LastTrigger(policy_name=p.name, event_type=",".join(p.event_types), enabled=p.enabled,
                        creation_time=p.created_at, last_trigger_time=latest.get(p.id)) for p in policies]
