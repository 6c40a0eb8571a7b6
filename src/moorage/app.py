"""The ASGI application: routes mounted over the services built at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from moorage.api.health import health_routes
from moorage.api.http import UrlBuilder
from moorage.api.jobs import job_routes, sysadmin_only
from moorage.api.oci.routes import OciApi
from moorage.api.rest import rest_mount
from moorage.auth.token_endpoint import token_routes
from moorage.config import Settings, load_settings
from moorage.jobs import JobRunner
from moorage.logging import configure_logging
from moorage.metrics import JobQueueCollector, JobStat, MetricsMiddleware, render_metrics
from moorage.services import Services
from moorage.web import web_routes

__all__ = ["app_from_environment", "create_app"]

log = structlog.get_logger("moorage.app")


class _OciRoute(Route):
    """``/v2`` or every path under it, for any method: the OCI API answers all of them itself.

    Starlette's ``{path:path}`` is ``.*`` without DOTALL, so a path holding an encoded newline
    (``/v2/a%0A/tags/list``) matched nothing, and a method outside the route's list (``OPTIONS``)
    got Starlette's 405: both were plain text where the spec wants its JSON error envelope.
    """

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__(path, endpoint)
        self.methods = None  # Route would default a function endpoint to GET/HEAD
        subtree = path.endswith("/{path:path}")
        regex = "^/v2/(?P<path>.*)\\Z" if subtree else "^/v2\\Z"
        self.path_regex = re.compile(regex, re.DOTALL)


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """The application for ``settings``; ``services`` may be injected by tests."""

    def install(app: Starlette, built: Services) -> None:
        app.state.services = built
        app.state.oci = OciApi(
            blobs=built.blobs,
            uploads=built.uploads,
            manifests=built.manifests,
            access=built.access,
            urls=UrlBuilder(settings.http),
            page_max=settings.limits.page_max,
            on_event=built.identity.oci_event if built.identity is not None else None,
            events=built.events,
            pulls=built.pull_times,
            proxy=built.proxy,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:  # injected (tests): already installed, owned by the caller
            yield
            return
        built = Services.from_settings(settings)
        install(app, built)
        if built.identity is not None:  # shared signing key and initial admin, before the first request
            await built.identity.start()
        runner: JobRunner | None = None
        if settings.jobs.enabled:
            runner = JobRunner(
                built.jobs,
                built.job_handlers,
                concurrency=settings.jobs.concurrency,
                poll_seconds=settings.jobs.poll_seconds,
                periodic=built.periodic_jobs,
                ticks=built.job_ticks,
            )
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            await built.aclose()

    async def oci(request: Request) -> Response:
        api: OciApi = request.app.state.oci
        return await api(request)

    async def metrics(request: Request) -> Response:
        built: Services = request.app.state.services
        try:
            backlog = await built.jobs.backlog()
        except Exception as exc:  # noqa: BLE001 - the database may be down: the other metrics still answer
            log.warning("metrics_job_backlog_failed", error=str(exc))
            collector = None
        else:
            stats = [JobStat(kind, state, count, oldest) for kind, state, count, oldest in backlog]
            collector = JobQueueCollector(stats, datetime.now(UTC))
        body, content_type = render_metrics(collector)
        return Response(body, media_type=content_type)

    routes = [
        _OciRoute("/v2", oci),
        _OciRoute("/v2/{path:path}", oci),
        # Before the REST sub-app: these must answer even when identity or the UI cannot.
        *health_routes(lambda request: request.app.state.services.health),
        *job_routes(
            lambda request: request.app.state.services.jobs,
            sysadmin_only(lambda request: request.app.state.services.identity, settings.http.trusted_proxies),
        ),
        *token_routes(lambda request: request.app.state.services.identity, settings.http.trusted_proxies),
    ]
    middleware = []
    if settings.metrics.enabled:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
        middleware.append(Middleware(MetricsMiddleware))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    # After /api/v2.0/ping, /health and /jobs above, so those answer without identity.
    app.router.routes.append(rest_mount(lambda: app.state.services))
    # The web UI last: its paths (/, /projects…, /static, /c/login) shadow none of the APIs'.
    app.router.routes.extend(web_routes(lambda request: request.app.state.services))
    if services is not None:
        install(app, services)
    return app


def app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory``: every worker reads the same file (``MOORAGE_CONFIG``) and env."""
    settings = load_settings(os.environ.get("MOORAGE_CONFIG") or None)
    configure_logging(settings.log)
    return create_app(settings)
