"""Prometheus metrics: requests by endpoint and status, their latency, and bytes moved.

A pure ASGI wrapper (cross-cutting concerns are wrappers). With several uvicorn workers the
counters must be summed across processes, so ``moorage serve`` points prometheus-client's
multiprocess mode at a per-run directory (``PROMETHEUS_MULTIPROC_DIR``) and ``/metrics``
aggregates every worker's samples.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MetricsMiddleware", "render_metrics"]

REQUESTS = Counter("moorage_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "moorage_http_request_duration_seconds",
    "Time to the end of the response",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BYTES_IN = Counter("moorage_http_request_bytes_total", "Request body bytes received", ["endpoint"])
BYTES_OUT = Counter("moorage_http_response_bytes_total", "Response body bytes sent", ["endpoint"])


def _endpoint(path: str) -> str:
    """A low-cardinality label: the API family and operation, never the repository name."""
    if not path.startswith("/v2/"):
        return path.split("/", 3)[1] if path.count("/") > 1 else path
    if path == "/v2/":
        return "v2_base"
    if path == "/v2/_catalog":
        return "catalog"
    for marker, label in (
        ("/blobs/uploads", "blob_upload"),
        ("/blobs/", "blob"),
        ("/manifests/", "manifest"),
        ("/tags/list", "tags"),
        ("/referrers/", "referrers"),
    ):
        if marker in path:
            return label
    return "other"


class MetricsMiddleware:
    """Counts every HTTP request passing through ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = _endpoint(scope["path"])
        method = scope["method"]
        started = time.perf_counter()
        status = 500
        received = sent = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            REQUESTS.labels(method, endpoint, str(status)).inc()
            LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
            if received:
                BYTES_IN.labels(endpoint).inc(received)
            if sent:
                BYTES_OUT.labels(endpoint).inc(sent)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
