"""The management REST API, ``/api/v2.0`` (Harbor-compatible where sensible; see docs/identity.md).

A FastAPI sub-application mounted by :func:`moorage.app.create_app` after the health and job
routes; its OpenAPI document (``/api/v2.0/openapi.json``) is the contract schemathesis checks.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from moorage.api.rest import artifacts, logs, projects, robots, users
from moorage.api.rest.common import ERROR_RESPONSES, ApiError
from moorage.services import Services

__all__ = ["rest_api"]


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
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors()[:5]:
            location = ".".join(str(part) for part in error.get("loc", ()))
            parts.append(f"{location}: {error.get('msg', 'invalid')}")
        return ApiError(400, "invalid request: " + "; ".join(parts)).response()

    for module in (projects, users, robots, artifacts, logs):
        app.include_router(module.router)
    return app
