"""Prometheus metrics of the registry's own work, all defined here (docs/deploy.md "Metrics" lists them).

One module holds every metric so that the documentation, the Grafana dashboard
(``deploy/grafana/moorage.json``, whose queries ``tests/unit/test_dashboard.py`` checks against
this registry) and the code cannot drift apart. It imports nothing else of Moorage, so any layer
may record into it (storage, the cache, uploads, jobs, webhooks) without an upward import.

* HTTP: requests by route *template* (``/v2/{name}/manifests/{reference}``,
  ``/api/v2.0/projects/{project_name_or_id}``: never a repository name, so cardinality stays
  bounded), method and status; latency; body bytes in and out.
* Blob uploads: time from the session's start to its completion, and size.
* Storage: every driver call's latency and outcome by driver and operation (a wrapper,
  :mod:`moorage.storage.middleware.metrics`).
* Redis cache: lookups by kind and result (hit, miss, unavailable).
* Webhooks: delivery attempts by outcome.
* Proxy cache: requests to upstreams, and answers served stale while an upstream failed.
* Jobs: depth and age of the queue, read from the shared job table at scrape time
  (:class:`JobQueueCollector`); every node reports the same cluster-wide values.

With several uvicorn workers the counters must be summed across processes, so ``moorage serve``
points prometheus-client's multiprocess mode at a per-run directory (``PROMETHEUS_MULTIPROC_DIR``)
and ``/metrics`` aggregates every worker's samples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BLOB_UPLOAD_BYTES",
    "BLOB_UPLOAD_SECONDS",
    "CACHE_LOOKUPS",
    "LATENCY",
    "PROXY_STALE_SERVED",
    "PROXY_UPSTREAM_REQUESTS",
    "REQUESTS",
    "ROUTE_SCOPE_KEY",
    "STORAGE_OPERATIONS",
    "STORAGE_SECONDS",
    "WEBHOOK_DELIVERIES",
    "JobQueueCollector",
    "JobStat",
    "MetricsMiddleware",
    "render_metrics",
]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUESTS = Counter("moorage_http_requests_total", "HTTP requests by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("moorage_http_request_duration_seconds", "Time to the end of the response",
                    ["route", "method"], buckets=_SECONDS)
BYTES_IN = Counter("moorage_http_request_bytes_total", "Request body bytes received", ["route"])
BYTES_OUT = Counter("moorage_http_response_bytes_total", "Response body bytes sent", ["route"])

BLOB_UPLOAD_SECONDS = Histogram(
    "moorage_blob_upload_duration_seconds",
    "Time from the start of a blob upload (POST) to its verified completion (PUT), across nodes",
    ["kind"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
BLOB_UPLOAD_BYTES = Counter("moorage_blob_upload_bytes_total", "Bytes of completed blob uploads", ["kind"])

STORAGE_SECONDS = Histogram("moorage_storage_operation_duration_seconds",
                            "Storage driver call latency (for reads: to the first chunk)",
                            ["driver", "operation"], buckets=_SECONDS)
STORAGE_OPERATIONS = Counter("moorage_storage_operations_total",
                             "Storage driver calls by outcome: ok, not_found or error",
                             ["driver", "operation", "outcome"])

CACHE_LOOKUPS = Counter("moorage_cache_lookups_total",
                        "Redis cache lookups by kind (manifest, blob) and result (hit, miss, unavailable)",
                        ["kind", "result"])

WEBHOOK_DELIVERIES = Counter("moorage_webhook_deliveries_total",
                             "Webhook delivery attempts by event type and outcome (success, retry, error, refused)",
                             ["event_type", "outcome"])

#: Pulls answered from the proxy cache because the upstream could not be asked (down, 5xx, 429, timeout).
PROXY_STALE_SERVED = Counter("moorage_proxy_stale_served_total",
                             "Proxy-cache answers served stale because the upstream failed", ["endpoint", "reason"])
#: Requests sent upstream by kind (manifest_head, manifest_get, blob) and outcome (ok or a failure kind).
PROXY_UPSTREAM_REQUESTS = Counter("moorage_proxy_upstream_requests_total", "Proxy-cache requests to upstreams",
                                  ["endpoint", "kind", "outcome"])

#: Where the ``/v2`` router leaves the template of the route it matched (Starlette routes use ``scope["route"]``).
ROUTE_SCOPE_KEY = "moorage.route"


def route_template(scope: Scope) -> str:
    """The matched route's template, after the app handled the request; ``unmatched`` when none did."""
    explicit = scope.get(ROUTE_SCOPE_KEY)
    if explicit:
        return str(explicit)
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return "unmatched"
    if getattr(route, "routes", None) is not None:  # a Mount (static files, or no inner route matched)
        return f"{path}/{{path}}"
    return f"{scope.get('root_path', '')}{path}"


class MetricsMiddleware:
    """Counts every HTTP request passing through ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            elif message["type"] == "http.response.zerocopysend":  # a blob sent with sendfile (moorage.api.files)
                sent += message.get("count") or 0
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = route_template(scope)
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(time.perf_counter() - started)
            if received:
                BYTES_IN.labels(route).inc(received)
            if sent:
                BYTES_OUT.labels(route).inc(sent)


@dataclass(frozen=True, slots=True)
class JobStat:
    """Jobs of one kind in one state, and when the oldest of them became due (``run_after``)."""

    kind: str
    state: str
    count: int
    oldest_due: datetime | None


class JobQueueCollector(Collector):
    """Job queue depth by kind and state, and the age of the oldest due job by kind, from ``stats``.

    Built per scrape from rows read just before (the job table is shared, so these are cluster-wide
    figures: aggregate them across nodes with ``max``, not ``sum``).
    """

    def __init__(self, stats: Sequence[JobStat], now: datetime) -> None:
        self.stats = stats
        self.now = now

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("moorage_jobs", "Jobs in the shared job table by kind and state",
                                  labels=["kind", "state"])
        age = GaugeMetricFamily("moorage_jobs_oldest_due_age_seconds",
                                "Seconds since the oldest queued job of a kind became due (0: none waiting)",
                                labels=["kind"])
        for stat in self.stats:
            depth.add_metric([stat.kind, stat.state], stat.count)
            if stat.state == "queued":
                waited = (self.now - stat.oldest_due).total_seconds() if stat.oldest_due is not None else 0.0
                age.add_metric([stat.kind], max(0.0, waited))
        yield depth
        yield age


def render_metrics(extra: Collector | None = None) -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode, plus ``extra``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    if extra is not None:
        own = CollectorRegistry()
        own.register(extra)
        body += generate_latest(own)
    return body, CONTENT_TYPE_LATEST
