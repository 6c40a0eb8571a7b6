"""``/api/v2.0/ping`` and ``/api/v2.0/health``: may a load balancer send traffic to this node?

``/api/v2.0/health`` checks each dependency with its own timeout and reports status and latency::

    {"status": "healthy", "components": [
        {"name": "database", "status": "healthy", "latency_ms": 1.2},
        {"name": "storage",  "status": "healthy", "latency_ms": 0.8},
        {"name": "redis",    "status": "unhealthy", "latency_ms": 500.3, "error": "..."}]}

The database and storage are required: either failing answers 503, so the balancer takes the
node out. Redis is optional by design (losing it only slows requests down), so by default a
Redis failure makes the node ``degraded`` and still answers 200 (so does another site's storage
failing, in a multi-site deployment: ``degraded_sites`` names it, docs/multi-site.md) — otherwise one Redis outage
would take *every* node out at once and turn a slowdown into an outage. ``?strict=true``
counts Redis as required (for monitoring that wants to page on it).

The storage probe writes, reads back and deletes ``_health/<node>/probe``, so a read-only or
full shared volume on one node is caught, not only an unreachable one. ``/health`` is anonymous
(load balancers call it), so the result is cached for ``cache_seconds`` (5 s) and shared by
every concurrent caller: however many requests arrive, a node probes its storage at most once
per window (before issue 10, each anonymous call wrote and deleted an object). ``/ping`` costs
nothing and stays the liveness check.

The checks themselves are :class:`moorage.health.HealthChecker` (no HTTP types there).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from moorage.health import HealthChecker

__all__ = ["health_routes"]


def health_routes(checker_of: Callable[[Request], HealthChecker]) -> list[Route]:
    """The two routes over the checker that ``checker_of(request)`` returns."""

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Pong")

    async def health(request: Request) -> Response:
        strict = request.query_params.get("strict", "").lower() in {"1", "true", "yes"}
        results = await checker_of(request).check(strict=strict)
        failed_required = any(not c.healthy and c.required for c in results)
        failed_optional = any(not c.healthy and not c.required for c in results)
        status = "unhealthy" if failed_required else "degraded" if failed_optional else "healthy"
        body: dict[str, object] = {"status": status, "components": [c.as_json() for c in results]}
        checker = checker_of(request)
        if checker.site is not None:  # multi-site: this node's site and the sites whose storage fails
            body["site"] = checker.site
            body["degraded_sites"] = sorted({c.site for c in results if c.site is not None and not c.healthy})
        return JSONResponse(
            body,
            status_code=503 if failed_required else 200,
            headers={"Cache-Control": "no-store"},
        )

    return [
        Route("/api/v2.0/ping", ping, methods=["GET", "HEAD"]),
        Route("/api/v2.0/health", health, methods=["GET"]),
    ]
