"""Settings and authentication of the ``swift`` driver: v1 (tempauth/RGW) and Keystone v3.

v1 differs between the two servers the driver supports (seen on Swift 2.30.1 and RGW 16.2.15):

* OpenStack Swift's tempauth answers only on ``/auth/v1.0``, with **200**;
* Ceph RGW answers on any ``/auth…`` path with **204**, and only to ``X-Auth-User`` /
  ``X-Auth-Key`` (``X-Storage-User``/``X-Storage-Pass`` get 401).

So the driver sends only the ``X-Auth-*`` pair, accepts any 2xx, and when an ``authurl`` such
as ``http://host/auth`` is refused with 404/412 it retries on ``<authurl>/v1.0``.

Keystone v3 (password auth, project scope, ``object-store`` endpoint from the catalog) is
covered only by tests against a small local HTTP server that answers like Keystone's
``POST /v3/auth/tokens``: no Keystone runs in this project's CI.

HTTP goes through aiohttp: measured against httpx and python-swiftclient in docs/storage.md.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from moorage.storage.driver import StorageUnavailableError

__all__ = ["HTTP_ERRORS", "SwiftAuth", "SwiftSettings", "authenticate", "describe"]

#: What aiohttp raises when a request does not get an answer (refused, reset, timed out).
HTTP_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def describe(exc: BaseException) -> str:
    """One short line for an aiohttp error (its repr spells out the whole connection key)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class SwiftSettings(BaseModel):
    """``storage.swift``: CNCF Distribution's keys plus ``storageurl`` and ``tempurldigest``.

    The three timeouts are Moorage additions. ``storageurl`` replaces the ``X-Storage-Url`` the auth service advertises: behind a proxy
    it often names the internal scheme, host or port. ``tempurldigest`` picks the TempURL
    HMAC: ``auto`` reads ``/info`` (Swift lists ``allowed_digests``; RGW Pacific does not and
    accepts only SHA-1).
    """

    model_config = ConfigDict(extra="forbid")

    authurl: str
    username: str
    password: str
    container: str
    tenant: str | None = None
    tenantid: str | None = None
    domain: str | None = None
    domainid: str | None = None
    tenantdomain: str | None = None
    tenantdomainid: str | None = None
    trustid: str | None = None
    region: str | None = None
    authversion: int = Field(default=0, ge=0, le=3)
    insecureskipverify: bool = False
    cabundle: str | None = None
    chunksize: int = Field(default=20 * 1024 * 1024, ge=1024 * 1024)
    prefix: str = ""
    tempurlcontainerkey: bool = False
    tempurlmethods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"])
    secretkey: str | None = None
    accesskey: str | None = None
    endpointtype: Literal["public", "internal", "admin"] = "public"
    storageurl: str | None = None
    tempurldigest: Literal["auto", "sha1", "sha256", "sha512"] = "auto"
    #: Seconds to open a connection.
    connecttimeout: float = Field(default=10, gt=0)
    #: Seconds a request may wait for its next byte.
    readtimeout: float = Field(default=60, gt=0)
    #: Seconds a whole request may take (auth, HEAD, a segment PUT, a listing page); a blob read
    #: gets this long for its headers and again for every MiB of its body, so a server that
    #: trickles bytes cannot hold a request forever however long the blob is.
    timeout: float = Field(default=300, gt=0)

    def version(self) -> int:
        """The auth protocol: as configured, else guessed from the URL like Distribution does."""
        if self.authversion:
            return self.authversion
        return 3 if "/v3" in self.authurl else 1


@dataclass(frozen=True, slots=True)
class SwiftAuth:
    """A token and the storage URL it is valid for."""

    token: str
    storage_url: str
    advertised_url: str


def _unavailable(message: str) -> StorageUnavailableError:
    return StorageUnavailableError(message, driver="swift")


async def authenticate(client: aiohttp.ClientSession, settings: SwiftSettings) -> SwiftAuth:
    """Log in; raises :class:`StorageUnavailableError` saying which setting to check."""
    version = settings.version()
    if version == 1:
        token, advertised = await _v1(client, settings)
    elif version == 3:
        token, advertised = await _v3(client, settings)
    else:
        raise _unavailable("Keystone v2 is not supported; set storage.swift.authversion to 1 or 3")
    storage_url = (settings.storageurl or advertised).rstrip("/")
    return SwiftAuth(token, storage_url, advertised)


async def _v1(client: aiohttp.ClientSession, settings: SwiftSettings) -> tuple[str, str]:
    headers = {"X-Auth-User": settings.username, "X-Auth-Key": settings.password}
    urls = [settings.authurl]
    if not settings.authurl.rstrip("/").endswith("/v1.0"):
        urls.append(settings.authurl.rstrip("/") + "/v1.0")  # OpenStack Swift's only v1 path
    last = ""
    for url in urls:
        try:
            async with client.get(url, headers=headers) as response:
                status = response.status
                token = response.headers.get("X-Auth-Token")
                storage_url = response.headers.get("X-Storage-Url")
        except HTTP_ERRORS as exc:
            raise _unavailable(
                f"cannot reach the Swift auth URL {url}: {describe(exc)}; check storage.swift.authurl"
            ) from None
        if status in (401, 403):
            raise _unavailable(
                f"{url} refused the credentials ({status}); check storage.swift.username "
                "(account:user for tempauth) and password"
            )
        if 200 <= status < 300 and token and storage_url:
            return token, storage_url
        last = f"{url} answered {status}"
    raise _unavailable(f"v1 auth failed: {last}; check storage.swift.authurl (Swift: .../auth/v1.0)")


def _v3_body(settings: SwiftSettings) -> dict[str, Any]:
    user: dict[str, Any] = {"name": settings.username, "password": settings.password}
    if settings.domainid:
        user["domain"] = {"id": settings.domainid}
    else:
        user["domain"] = {"name": settings.domain or "Default"}
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if settings.trustid:
        auth["scope"] = {"OS-TRUST:trust": {"id": settings.trustid}}
    elif settings.tenantid:
        auth["scope"] = {"project": {"id": settings.tenantid}}
    elif settings.tenant:
        project_domain: dict[str, str]
        if settings.tenantdomainid or settings.domainid:
            project_domain = {"id": settings.tenantdomainid or settings.domainid or ""}
        else:
            project_domain = {"name": settings.tenantdomain or settings.domain or "Default"}
        auth["scope"] = {"project": {"name": settings.tenant, "domain": project_domain}}
    return {"auth": auth}


def storage_url_from_catalog(catalog: list[dict[str, Any]], settings: SwiftSettings) -> str:
    """The ``object-store`` endpoint of ``endpointtype`` (and ``region``, when set) in a v3 catalog."""
    for service in catalog:
        if service.get("type") != "object-store":
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") != settings.endpointtype:
                continue
            if settings.region and settings.region not in (endpoint.get("region"), endpoint.get("region_id")):
                continue
            return str(endpoint["url"])
    region = f" in region {settings.region!r}" if settings.region else ""
    raise _unavailable(
        f"the Keystone catalog has no {settings.endpointtype} object-store endpoint{region}; check "
        "storage.swift.region/endpointtype, or set storage.swift.storageurl"
    )


async def _v3(client: aiohttp.ClientSession, settings: SwiftSettings) -> tuple[str, str]:
    url = settings.authurl.rstrip("/")
    url = url if url.endswith("/auth/tokens") else url + "/auth/tokens"
    try:
        async with client.post(url, json=_v3_body(settings)) as response:
            status = response.status
            token = response.headers.get("X-Subject-Token")
            body = await response.read()
    except HTTP_ERRORS as exc:
        raise _unavailable(
            f"cannot reach Keystone at {url}: {describe(exc)}; check storage.swift.authurl"
        ) from None
    if status in (401, 403):
        raise _unavailable(
            f"Keystone refused the credentials ({status}); check storage.swift.username, "
            "password, domain and tenant"
        )
    if not 200 <= status < 300 or not token:
        raise _unavailable(f"Keystone at {url} answered {status}: {body[:200].decode(errors='replace')}")
    if settings.storageurl:
        return token, settings.storageurl
    try:
        catalog = json.loads(body).get("token", {}).get("catalog", [])
    except (ValueError, AttributeError):
        raise _unavailable(f"Keystone at {url} answered {status} without a JSON token body") from None
    return token, storage_url_from_catalog(catalog, settings)
