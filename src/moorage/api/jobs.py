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

__all__ = ["job_routes"]

_MAX_PAGE = 500

QueueGetter = Callable[[Request], JobQueue]


def _bad_request(message: str) -> Response:
    return JSONResponse({"errors": [{"code": "BAD_REQUEST", "message": message}]}, status_code=400)


def job_routes(queue_of: QueueGetter) -> list[Route]:
    """Routes over the queue that ``queue_of(request)`` returns (the app's, built in the lifespan)."""

    async def list_jobs(request: Request) -> Response:
        params = request.query_params
        limit_raw = params.get("limit", "100")
        before_raw = params.get("before")
        if not limit_raw.isdigit() or not 0 < int(limit_raw) <= _MAX_PAGE:
            return _bad_request(f"limit must be an integer from 1 to {_MAX_PAGE}")
        if before_raw is not None and not before_raw.isdigit():
            return _bad_request("before must be a job id")
        queue = queue_of(request)
        try:
            found = await queue.list(
                state=params.get("state"),
                kind=params.get("kind"),
                limit=int(limit_raw),
                before=int(before_raw) if before_raw else None,
            )
        except ValueError as exc:
            return _bad_request(str(exc))
        body: dict[str, object] = {"jobs": [job.as_json() for job in found], "counts": await queue.counts()}
        if len(found) == int(limit_raw):
            body["next_before"] = found[-1].id
        return JSONResponse(body)

    async def get_job(request: Request) -> Response:
        raw = request.path_params["job_id"]
        job = await queue_of(request).get(int(raw)) if raw.isdigit() else None
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
