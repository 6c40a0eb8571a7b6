"""The management REST API, ``/api/v2.0`` (Harbor-compatible where sensible; see docs/identity.md).

A FastAPI sub-application mounted by :func:`moorage.app.create_app` after the health and job
routes; its OpenAPI document (``/api/v2.0/openapi.json``) is the contract schemathesis checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from moorage.api.rest import (
    additions,
    artifacts,
    browse,
    gc,
    immutability,
    logs,
    projects,
    quotas,
    registries,
    replication,
    retention,
    robots,
    search,
    usergroups,
    users,
    webhooks,
)
from moorage.api.rest.common import ERROR_RESPONSES, ApiError
from moorage.services import Services

__all__ = ["rest_api", "rest_mount"]


def rest_api(get_services: Callable[[], Services]) -> FastAPI:
    app = FastAPI(
        title="Moorage management API",
        version="2.0",
        description="Projects, members, users, robot accounts, repositories, artifacts, tags and the audit log. "
        "Authenticate with Basic (user:password or robot$name:secret) or a Bearer token from /service/token.",
        responses=ERROR_RESPONSES,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.get_services = get_services

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = exc.response()
        if request.headers.get("x-requested-with") == "XMLHttpRequest" and "www-authenticate" in response.headers:
            # The web UI: a Basic challenge would open the browser's own login dialog over the page.
            del response.headers["www-authenticate"]
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors()[:5]:
            location = ".".join(str(part) for part in error.get("loc", ()))
            parts.append(f"{location}: {error.get('msg', 'invalid')}")
        return ApiError(400, "invalid request: " + "; ".join(parts)).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing misses (404, 405) in Harbor's envelope too, so every answer matches the document.
        hint = "; see /api/v2.0/openapi.json for the paths and methods" if exc.status_code in (404, 405) else ""
        error = ApiError(exc.status_code, f"{exc.detail}{hint}", dict(exc.headers or {}))
        return error.response()

    for module in (projects, users, robots, artifacts, additions, browse, logs, search, immutability, gc, usergroups,
                   webhooks, retention, quotas, registries, replication):
        app.include_router(module.router)
    return app


def rest_mount(get_services: Callable[[], Services]) -> Mount:
    """``/api/v2.0`` → :func:`rest_api`, matching paths with any character.

    Starlette's mount pattern ``.*`` stops at a newline, so ``/api/v2.0/projects/a%0A`` would fall
    through to the outer app's plain-text 404; with DOTALL every such path reaches the API and
    gets its JSON error.
    """
    mount = Mount("/api/v2.0", app=rest_api(get_services))
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount
