"""``/quotas``: Harbor's project quota API (``GET /quotas``, ``GET/PUT /quotas/{id}``).

A quota's id is its project's id. ``hard`` and ``used`` are maps of ``storage`` (bytes, each blob
counted once per project) and ``count`` (artifacts); ``-1`` is unlimited. System administrators
read and change every quota; a project's members read its quota
(:meth:`moorage.auth.policy.Policy.quota_denial`). The usage is kept by the domain
(:mod:`moorage.registry.quota`); nothing here counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, AsciiDigits, Caller, CallerDep, Id, PageDep, paginate
from moorage.api.rest.deps import QuotasDep
from moorage.registry.quota import RESOURCES, InvalidLimit
from moorage.registry.quota_service import Quota

router = APIRouter(tags=["quota"])


class QuotaRef(BaseModel):
    id: int
    name: str
    owner_name: str | None


class QuotaOut(BaseModel):
    """Harbor's ``Quota``."""

    id: int
    ref: QuotaRef
    creation_time: datetime
    update_time: datetime
    hard: dict[str, int]
    used: dict[str, int]


class QuotaUpdateReq(BaseModel):
    """Harbor's ``QuotaUpdateReq``: the limits to set, e.g. ``{"hard": {"storage": 10737418240}}``."""

    hard: dict[str, Any] | None = Field(default=None, description="storage (bytes) and/or count; -1 is unlimited")


def _out(quota: Quota) -> QuotaOut:
    return QuotaOut(
        id=quota.project_id,
        ref=QuotaRef(id=quota.project_id, name=quota.project_name, owner_name=quota.owner_name),
        creation_time=quota.created_at,
        update_time=quota.updated_at,
        hard={"storage": quota.limits.storage, "count": quota.limits.count},
        used={"storage": quota.storage_used, "count": quota.count_used},
    )


def _missing(quota_id: int) -> ApiError:
    return ApiError(404, f"quota {quota_id} does not exist (a quota's id is its project's id); list them with "
                         "GET /api/v2.0/quotas")


async def _allowed(who: Caller, quota_id: int, *, write: bool) -> None:
    """Raise the policy's refusal unless the caller may read (or change) the quota of project ``quota_id``."""
    who.require_login()
    rights = await who.identity.policy.rights(who.subject, quota_id)
    denial = who.identity.policy.quota_denial(who.subject, rights, write=write)
    if denial is not None:
        raise ApiError.of(denial.error())


def _describe(quota: Quota) -> str:
    return f"storage {quota.limits.storage}, count {quota.limits.count}"


@router.get("/quotas", response_model=list[QuotaOut])
async def list_quotas(
    request: Request, response: Response, who: CallerDep, page: PageDep, quotas: QuotasDep,
    reference: Annotated[str | None, Query(max_length=64, description="only 'project'")] = None,
    reference_id: Annotated[int | None, Query(ge=1, le=2_147_483_647), AsciiDigits] = None,
    sort: Annotated[str | None, Query(max_length=64, description="id, creation_time, update_time, "
                                      "hard.storage or used.storage; '-' prefix for descending")] = None,
) -> list[QuotaOut]:
    """The quotas the caller may read: every one for system administrators, else those of his projects."""
    who.require_login()
    if reference is not None and reference != "project":
        raise ApiError(400, f"reference: {reference[:64]!r} is not supported; quotas belong to projects "
                            "(reference=project)")
    visible = who.identity.policy.quota_projects(who.subject)
    try:
        found, total = await quotas.list(visible, page.offset, page.page_size, project_id=reference_id, sort=sort)
    except ValueError as exc:
        raise ApiError(400, f"sort: {exc}") from None
    paginate(request, response, page, total)
    return [_out(quota) for quota in found]


@router.get("/quotas/{id}", response_model=QuotaOut)
async def get_quota(id: Id, who: CallerDep, quotas: QuotasDep) -> QuotaOut:
    await _allowed(who, id, write=False)
    quota = await quotas.get(id)
    if quota is None:
        raise _missing(id)
    return _out(quota)


def _limits(body: QuotaUpdateReq) -> dict[str, Any]:
    """The body's limits by resource; 400 naming the field for anything else (nothing is saved)."""
    if body.hard is None:
        raise ApiError(400, 'hard: required, e.g. {"hard": {"storage": 10737418240}} (bytes; -1 for unlimited)')
    if not body.hard:
        raise ApiError(400, f"hard: give at least one of {', '.join(RESOURCES)}")
    unknown = sorted(set(body.hard) - set(RESOURCES))
    if unknown:
        raise ApiError(400, f"hard.{unknown[0][:64]}: unknown resource; quotas limit 'storage' (bytes) and "
                            "'count' (artifacts); nothing was saved")
    return body.hard


@router.put("/quotas/{id}", response_model=None)
async def update_quota(id: Id, body: QuotaUpdateReq, who: CallerDep, quotas: QuotasDep) -> None:
    """Sets the limits given; a limit below the current usage is accepted (further pushes are refused)."""
    await _allowed(who, id, write=True)
    limits = _limits(body)
    before = await quotas.get(id)
    if before is None:
        raise _missing(id)
    try:
        after = await quotas.update(id, limits)
    except InvalidLimit as exc:
        raise ApiError(400, f"{exc}; nothing was saved") from None
    if after is None:
        raise _missing(id)
    await who.audit("update", "quota", f"quota {id}", after.project_name,
                    detail=f"{_describe(before)} -> {_describe(after)}")

