"""``GET /api/v2.0/jobs`` and ``GET /api/v2.0/jobs/{id}``: what the job table holds, as JSON.

Read-only on purpose: jobs are created by events and policies, not by API callers. Plain
Starlette routes, mounted before the REST sub-app so ``/api/v2.0/jobs`` always resolves here.

Job payloads and error texts name repositories, digests and storage paths of every project, so
with ``auth.mode: token`` only system administrators may read them (:func:`sysadmin_only`).
With ``auth.mode: none`` there are no accounts and anyone may already push, pull and delete
everything, so the routes stay open like the rest of that registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from moorage.auth.clients import client_of
from moorage.auth.identity import IdentityError
from moorage.auth.service import IdentityService, parse_authorization
from moorage.auth.sessions import SESSION_COOKIE, SessionTokens
from moorage.jobs.queue import JobQueue
from moorage.numbers import parse_decimal

__all__ = ["Guard", "job_routes", "sysadmin_only"]

_MAX_PAGE = 500
#: Job ids are 32-bit integers in the table; a larger id names no job (and must not reach the database).
_MAX_ID = 2**31 - 1

QueueGetter = Callable[[Request], JobQueue]
#: Decides whether a request may read jobs: ``None`` to go on, else the refusal to send.
Guard = Callable[[Request], Awaitable[Response | None]]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=headers)


def sysadmin_only(identity_of: Callable[[Request], IdentityService | None], trusted_proxies: Sequence[str]) -> Guard:
    """A :data:`Guard` admitting system administrators (Basic, Bearer or the UI's session cookie, as the REST
    API: the routes are read-only, so no CSRF header is needed); open in mode none."""

    async def guard(request: Request) -> Response | None:
        identity = identity_of(request)
        if identity is None:
            return None
        session = request.cookies.get(SESSION_COOKIE)
        try:
            if session and not request.headers.get("authorization"):  # the web UI's jobs screen
                subject = await SessionTokens.of(identity).subject(identity, session, request.method, None)
            else:
                credentials = parse_authorization(request.headers.get("authorization"))
                subject = await identity.from_credentials(credentials, client_of(request, trusted_proxies), api=True)
        except IdentityError as exc:
            if exc.kind == "throttled":
                return _error(429, "TOO_MANY_REQUESTS", exc.message)
            if exc.kind == "forbidden":
                return _error(403, "FORBIDDEN", exc.message)
            return _error(401, "UNAUTHORIZED", exc.message,
                          {} if request.headers.get("x-requested-with") == "XMLHttpRequest"
                          else {"WWW-Authenticate": 'Basic realm="moorage"'})
        if subject.anonymous:
            return _error(
                401, "UNAUTHORIZED", "the job list needs a system administrator's credentials: send Basic auth",
                {} if request.headers.get("x-requested-with") == "XMLHttpRequest"  # no browser dialog over the UI
                else {"WWW-Authenticate": 'Basic realm="moorage"'},
            )
        if not subject.sysadmin:
            return _error(403, "FORBIDDEN", f"reading jobs needs the system administrator role; {subject.name!r} "
                          "is not one")
        return None

    return guard


async def _open(request: Request) -> Response | None:
    return None


def _bad_request(message: str) -> Response:
    return JSONResponse({"errors": [{"code": "BAD_REQUEST", "message": message}]}, status_code=400)


def job_routes(queue_of: QueueGetter, guard: Guard = _open) -> list[Route]:
    """Routes over the queue that ``queue_of(request)`` returns (the app's, built in the lifespan).

    ``guard`` runs first on every request (:func:`sysadmin_only` in the application).
    """

    async def list_jobs(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
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
        if (refused := await guard(request)) is not None:
            return refused
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
