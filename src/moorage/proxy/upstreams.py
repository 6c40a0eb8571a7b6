"""One :class:`~moorage.upstream.UpstreamClient` per endpoint in this process, and upstream failures
turned into OCI errors that name the upstream and what it answered (never a bare 404).

The client of an endpoint is kept while its connection (URL, credentials, TLS) stays the same: its
token cache, its bound on concurrent requests and its ``Retry-After`` memory are per endpoint.
"""

from __future__ import annotations

import asyncio
import math

from moorage.errors import RegistryError
from moorage.metrics import PROXY_STALE_SERVED, PROXY_UPSTREAM_REQUESTS
from moorage.net.tls import TrustStore
from moorage.proxy.bindings import ProxyTarget
from moorage.upstream import Connection, UpstreamClient, UpstreamError
from moorage.upstream.endpoints import EndpointError, Endpoints

__all__ = ["STALE_SERVED", "UPSTREAM_FETCHES", "UpstreamPool", "oci_error"]

#: Defined with every other metric in :mod:`moorage.metrics` (documented there and in docs/deploy.md).
STALE_SERVED = PROXY_STALE_SERVED
UPSTREAM_FETCHES = PROXY_UPSTREAM_REQUESTS


class UpstreamPool:
    """Clients per endpoint id, rebuilt when the endpoint's connection settings change."""

    def __init__(self, endpoints: Endpoints, *, timeout: float, concurrency: int, trust: TrustStore) -> None:
        self.endpoints = endpoints
        self.trust = trust
        self.timeout = timeout
        self.concurrency = concurrency
        self._clients: dict[int, tuple[Connection, UpstreamClient]] = {}
        self._lock = asyncio.Lock()

    async def client(self, target: ProxyTarget) -> UpstreamClient:
        """The client of the target's endpoint; ``UNAVAILABLE`` (502) naming it when it was deleted."""
        registry_id = target.binding.registry_id
        if registry_id is None:
            raise target.endpoint_gone()
        try:
            connection = await self.endpoints.connection(registry_id)
        except EndpointError:
            raise target.endpoint_gone() from None
        async with self._lock:
            known = self._clients.get(registry_id)
            if known is not None and known[0] == connection:
                return known[1]
            client = UpstreamClient(connection, timeout=self.timeout, concurrency=self.concurrency, trust=self.trust)
            self._clients[registry_id] = (connection, client)
        if known is not None:
            await known[1].aclose()
        return client

    async def aclose(self) -> None:
        for _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def oci_error(target: ProxyTarget, error: UpstreamError, what: str) -> RegistryError:
    """The client's answer when ``what`` (``manifest library/alpine:3.20``) is not cached and the upstream failed."""
    endpoint = target.binding.registry_name
    prefix = f"{what} is not in proxy cache {target.binding.project!r} and its upstream {endpoint!r} failed: "
    detail = {"upstream": endpoint, "upstreamStatus": error.status, "reason": error.kind}
    if error.kind == "not_found":
        code = "MANIFEST_UNKNOWN" if what.startswith("manifest") else "BLOB_UNKNOWN"
        return RegistryError(code, f"{what} does not exist upstream: {error.message}; check the name and tag",
                             detail, status=404)
    if error.kind == "rate_limited":
        headers = {"Retry-After": str(math.ceil(error.retry_after))} if error.retry_after else {}
        return RegistryError("TOOMANYREQUESTS", prefix + error.message + "; retry later", detail, headers=headers)
    if error.kind in ("unauthorized", "forbidden"):
        return RegistryError("UNAVAILABLE", prefix + error.message + "; an administrator must fix the endpoint's "
                             "credentials (PUT /api/v2.0/registries/<id>)", detail, status=502)
    status = 504 if error.kind == "timeout" else 502
    return RegistryError("UNAVAILABLE", prefix + error.message + "; retry when the upstream is back", detail,
                         status=status)
