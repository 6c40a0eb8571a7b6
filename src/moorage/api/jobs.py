"""``GET /api/v2.0/jobs`` and ``GET /api/v2.0/jobs/{id}``: what the job table holds, as JSON.

Read-only on purpose: jobs are created by events and policies, not by API callers. Plain
Starlette routes, mounted before the REST sub-app so ``/api/v2.0/jobs`` always resolves here.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from moorage.jobs.queue import JobQueue
from moorage.numbers import parse_decimal

__all__ = ["job_routes"]

_MAX_PAGE = 500
#: Job ids are 32-bit integers in the table; a larger id names no job (and must not reach the database).
_MAX_ID = 2**31 - 1

QueueGetter = Callable[[Request], JobQueue]


def _bad_request(message: str) -> Response:
    return JSONResponse({"errors": [{"code": "BAD_REQUEST", "message": message}]}, status_code=400)


def job_routes(queue_of: QueueGetter) -> list[Route]:
    """Routes over the queue that ``queue_of(request)`` returns (the app's, built in the lifespan)."""

    async def list_jobs(request: Request) -> Response:
        params = request.query_params
        before_raw = params.get("before")
        try:
            limit = parse_decimal(params.get("limit", "100"), maximum=_MAX_PAGE)
        except ValueError:
            limit = 0
        if limit == 0:
            return _bad_request(f"limit must be an integer from 1 to {_MAX_PAGE} (ASCII digits)")
        try:
            before = parse_decimal(before_raw, maximum=_MAX_ID) if before_raw else None
        except ValueError:
            return _bad_request("before must be a job id (ASCII digits)")
        queue = queue_of(request)
        try:
            found = await queue.list(
                state=params.get("state"),
                kind=params.get("kind"),
                limit=limit,
                before=before,
            )
        except ValueError as exc:
            return _bad_request(str(exc))
        body: dict[str, object] = {"jobs": [job.as_json() for job in found], "counts": await queue.counts()}
        if len(found) == limit:
            body["next_before"] = found[-1].id
        return JSONResponse(body)

    async def get_job(request: Request) -> Response:
        raw = request.path_params["job_id"]
        try:
            job_id: int | None = parse_decimal(raw, maximum=_MAX_ID)
        except ValueError:
            job_id = None
        job = await queue_of(request).get(job_id) if job_id is not None else None
        if job is None:
            return JSONResponse(
                {"errors": [{"code": "NOT_FOUND", "message": f"job {raw} does not exist; list them at /api/v2.0/jobs"}]},
                status_code=404,
            )
        return JSONResponse(job.as_json())

    return [
        Route("/api/v2.0/jobs", list_jobs, methods=["GET"]),
        Route("/api/v2.0/jobs/{job_id}", get_job, methods=["GET"]),
    ]
