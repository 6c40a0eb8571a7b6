"""``/system/gc``: Harbor's garbage collection API (schedule, manual runs, history, logs).

System administrators only: a run deletes across every project, and its log names
repositories and digests of all of them. The work is :mod:`moorage.gc.executions`'s; an
execution's id is its ``gc.run`` job's id (also readable at ``/api/v2.0/jobs/{id}``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, CallerDep, Id, PageDep, paginate
from moorage.api.rest.deps import GcDep
from moorage.gc.executions import GcExecution, GcParameters, GcSchedule, ScheduleError

router = APIRouter(tags=["gc"])

_WHAT = "garbage collection"


class ScheduleIn(BaseModel):
    type: str = Field(max_length=16, description="None, Manual, Hourly, Daily, Weekly or Custom")
    cron: str | None = Field(default=None, max_length=255, description="5 fields, or Harbor's 6 with seconds 0")


class GcRequest(BaseModel):
    schedule: ScheduleIn
    parameters: dict[str, Any] | None = None
    job_parameters: str | None = Field(default=None, max_length=4000, description="Harbor's JSON string")


class ScheduleOut(BaseModel):
    type: str
    cron: str
    next_scheduled_time: datetime | None = None


class GcScheduleOut(BaseModel):
    job_name: str = "GARBAGE_COLLECTION"
    job_kind: str = "SCHEDULE"
    job_parameters: str
    schedule: ScheduleOut
    creation_time: datetime | None
    update_time: datetime | None


class GcSummary(BaseModel):
    manifests: int
    blobs: int
    bytes_freed: int


class GcHistoryOut(BaseModel):
    id: int
    job_name: str = "GARBAGE_COLLECTION"
    job_kind: str
    job_parameters: str
    job_status: str
    schedule: ScheduleOut
    deleted: bool = False
    creation_time: datetime
    update_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    summary: GcSummary


def _schedule_out(saved: GcSchedule | None) -> GcScheduleOut:
    if saved is None:
        return GcScheduleOut(
            job_parameters="{}", schedule=ScheduleOut(type="None", cron=""), creation_time=None, update_time=None
        )
    return GcScheduleOut(
        job_parameters=json.dumps(saved.parameters.as_json()),
        schedule=ScheduleOut(type=saved.type, cron=saved.cron, next_scheduled_time=saved.next_due(datetime.now(UTC))),
        creation_time=saved.created_at,
        update_time=saved.updated_at,
    )


def _history(execution: GcExecution) -> GcHistoryOut:
    manual = execution.trigger == "Manual"
    return GcHistoryOut(
        id=execution.id,
        job_kind="MANUAL" if manual else "SCHEDULE",
        job_parameters=json.dumps(execution.parameters),
        job_status=execution.status,
        schedule=ScheduleOut(type="Manual" if manual else "Custom", cron=""),
        creation_time=execution.created_at,
        update_time=execution.updated_at,
        start_time=execution.started_at,
        end_time=execution.ended_at,
        summary=GcSummary(manifests=execution.manifests, blobs=execution.blobs, bytes_freed=execution.bytes_freed),
    )


async def _apply(body: GcRequest, gc: GcDep, response: Response) -> None:
    try:
        parameters = GcParameters.parse(body.parameters, body.job_parameters)
        job_id = await gc.set_schedule(body.schedule.type, body.schedule.cron, parameters)
    except ScheduleError as exc:
        raise ApiError(400, f"{exc}; nothing was saved") from None
    if job_id is not None:
        response.headers["Location"] = f"/api/v2.0/system/gc/{job_id}"


@router.get("/system/gc/schedule", response_model=GcScheduleOut)
async def get_schedule(who: CallerDep, gc: GcDep) -> GcScheduleOut:
    """The GC schedule (type ``None`` when there is none)."""
    who.require_admin(_WHAT)
    return _schedule_out(await gc.schedule())


@router.post("/system/gc/schedule", status_code=201)
async def create_schedule(body: GcRequest, who: CallerDep, gc: GcDep, response: Response) -> None:
    """``Manual`` runs GC now (``Location`` names the execution); other types create the schedule
    (409 when one exists: change it with PUT)."""
    who.require_admin(_WHAT)
    if body.schedule.type not in ("Manual", "None") and await gc.schedule() is not None:
        raise ApiError(409, "a GC schedule exists already; change it with PUT /api/v2.0/system/gc/schedule")
    await _apply(body, gc, response)
    await who.audit("create", "gc", body.schedule.type)


@router.put("/system/gc/schedule")
async def update_schedule(body: GcRequest, who: CallerDep, gc: GcDep, response: Response) -> None:
    """Replace the schedule; type ``None`` removes it, ``Manual`` runs GC now."""
    who.require_admin(_WHAT)
    await _apply(body, gc, response)
    await who.audit("update", "gc", body.schedule.type)


@router.get("/system/gc", response_model=list[GcHistoryOut])
async def list_executions(
    request: Request, response: Response, who: CallerDep, gc: GcDep, page: PageDep
) -> list[GcHistoryOut]:
    """GC executions, newest first (``X-Total-Count``, ``Link``)."""
    who.require_admin(_WHAT)
    found, total = await gc.executions(page.offset, page.page_size)
    paginate(request, response, page, total)
    return [_history(execution) for execution in found]


async def _execution(gc: GcDep, gc_id: int) -> GcExecution:
    found = await gc.execution(gc_id)
    if found is None:
        raise ApiError(404, f"GC execution {gc_id} does not exist; list them with GET /api/v2.0/system/gc")
    return found


@router.get("/system/gc/{gc_id}", response_model=GcHistoryOut)
async def get_execution(gc_id: Id, who: CallerDep, gc: GcDep) -> GcHistoryOut:
    who.require_admin(_WHAT)
    return _history(await _execution(gc, gc_id))


class StopIn(BaseModel):
    """Harbor's stop takes no body; ``{"status": "Stop"}`` is accepted too (anything else is a 400)."""

    status: str | None = Field(default=None, max_length=16)


@router.put("/system/gc/{gc_id}", response_model=None)
async def stop_execution(gc_id: Id, who: CallerDep, gc: GcDep, body: StopIn | None = None) -> None:
    """Stop a GC execution (Harbor's ``stopGC``): a queued one at once, a running one at its next batch
    boundary (every batch is its own transaction: nothing is left half-deleted, the next run finishes
    what it marked). Its history then says ``Stopped``. Stopping an execution that ended changes nothing."""
    who.require_admin(_WHAT)
    if body is not None and body.status not in (None, "Stop", "stop"):
        raise ApiError(400, f"status: {body.status!r} is not an action; send {{\"status\": \"Stop\"}} or no body")
    state = await gc.stop(gc_id)
    if state is None:
        raise ApiError(404, f"GC execution {gc_id} does not exist; list them with GET /api/v2.0/system/gc")
    await who.audit("stop", "gc", f"execution {gc_id}")


@router.get(
    "/system/gc/{gc_id}/log",
    # Declared here, not as response_class: that would document the JSON errors as text/plain too.
    responses={200: {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def get_log(gc_id: Id, who: CallerDep, gc: GcDep) -> PlainTextResponse:
    """What the run deleted (or, for a dry run, would delete), one line each, then its summary."""
    who.require_admin(_WHAT)
    return PlainTextResponse((await _execution(gc, gc_id)).log)
