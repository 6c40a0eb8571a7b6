"""``/registries``: endpoints of other registries in Harbor's shapes (system administrators only).

The secret is write-only: answers show ``*****`` where one is stored, as Harbor does. ``POST
/registries/ping`` contacts the registry with the given (or stored) settings and says what is
wrong: unreachable, TLS, rejected credentials, not a registry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, CallerDep, Id, PageDep, paginate, services_of
from moorage.api.rest.deps import EndpointsDep
from moorage.upstream import UpstreamClient, UpstreamError
from moorage.upstream.endpoints import ENDPOINT_TYPES, Endpoint, EndpointError, Endpoints, EndpointSpec

router = APIRouter(tags=["registry"])

_WHAT = "managing registry endpoints"
#: Seconds a ping may take: an operator is waiting for the answer.
PING_TIMEOUT = 10.0


class Credential(BaseModel):
    type: str = "basic"
    access_key: str | None = Field(default=None, max_length=255)
    access_secret: str | None = Field(default=None, max_length=4096)


class RegistryReq(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    type: str
    url: str = Field(min_length=1, max_length=1024)
    description: str | None = Field(default=None, max_length=1024)
    credential: Credential | None = None
    insecure: bool = False
    ca_certificate: str | None = Field(default=None, max_length=65536)


class RegistryUpdate(BaseModel):
    """Harbor's ``RegistryUpdate``: flat credential fields, every one optional."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=1024)
    url: str | None = Field(default=None, min_length=1, max_length=1024)
    credential_type: str | None = None
    access_key: str | None = Field(default=None, max_length=255)
    access_secret: str | None = Field(default=None, max_length=4096)
    insecure: bool | None = None
    ca_certificate: str | None = Field(default=None, max_length=65536)


class RegistryPing(BaseModel):
    """Harbor's ``RegistryPing``: an existing endpoint (``id``) and/or the fields to try."""

    id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    type: str | None = None
    url: str | None = Field(default=None, max_length=1024)
    credential_type: str | None = None
    access_key: str | None = Field(default=None, max_length=255)
    access_secret: str | None = Field(default=None, max_length=4096)
    insecure: bool | None = None
    ca_certificate: str | None = Field(default=None, max_length=65536)


class CredentialOut(BaseModel):
    type: str
    access_key: str
    access_secret: str


class RegistryOut(BaseModel):
    id: int
    name: str
    type: str
    url: str
    description: str
    credential: CredentialOut
    insecure: bool
    ca_certificate: str | None
    status: str
    creation_time: datetime
    update_time: datetime


def _out(endpoint: Endpoint) -> RegistryOut:
    return RegistryOut(
        id=endpoint.id, name=endpoint.name, type=endpoint.type, url=endpoint.url,
        description=endpoint.description or "",
        credential=CredentialOut(type=endpoint.credential_type, access_key=endpoint.access_key or "",
                                 access_secret="*****" if endpoint.has_secret else ""),
        insecure=endpoint.insecure, ca_certificate=endpoint.ca_certificate, status="unknown",
        creation_time=endpoint.created_at, update_time=endpoint.updated_at,
    )


def _error(exc: EndpointError) -> ApiError:
    return ApiError({"invalid": 400, "conflict": 409, "not_found": 404}[exc.kind], exc.message)


def _spec(body: RegistryReq) -> EndpointSpec:
    credential = body.credential or Credential()
    return EndpointSpec(
        name=body.name, type=body.type, url=body.url, description=body.description, credential_type=credential.type,
        access_key=credential.access_key, access_secret=credential.access_secret, insecure=body.insecure,
        ca_certificate=body.ca_certificate,
    )


@router.get("/registries", response_model=list[RegistryOut])
async def list_registries(
    request: Request, response: Response, who: CallerDep, page: PageDep, endpoints: EndpointsDep,
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> list[RegistryOut]:
    who.require_admin(_WHAT)
    found, total = await endpoints.listing(page.offset, page.page_size, name)
    paginate(request, response, page, total)
    return [_out(endpoint) for endpoint in found]


@router.post("/registries", status_code=201, response_model=None)
async def create_registry(request: Request, response: Response, body: RegistryReq, who: CallerDep,
                          endpoints: EndpointsDep) -> None:
    who.require_admin(_WHAT)
    try:
        endpoint = await endpoints.create(_spec(body))
    except EndpointError as exc:
        raise _error(exc) from None
    await who.audit("create", "registry", endpoint.name)
    response.headers["Location"] = f"{request.url.path}/{endpoint.id}"


@router.get("/registries/{registry_id}", response_model=RegistryOut)
async def get_registry(registry_id: Id, who: CallerDep, endpoints: EndpointsDep) -> RegistryOut:
    who.require_admin(_WHAT)
    try:
        return _out(await endpoints.get(registry_id))
    except EndpointError as exc:
        raise _error(exc) from None


@router.put("/registries/{registry_id}", response_model=None)
async def update_registry(registry_id: Id, body: RegistryUpdate, who: CallerDep, endpoints: EndpointsDep) -> None:
    who.require_admin(_WHAT)
    try:
        old = await endpoints.get(registry_id)
        spec = EndpointSpec(
            name=body.name or old.name, type=old.type, url=body.url or old.url,
            description=body.description if body.description is not None else old.description,
            credential_type=body.credential_type or old.credential_type,
            access_key=body.access_key if body.access_key is not None else old.access_key,
            access_secret=body.access_secret, insecure=body.insecure if body.insecure is not None else old.insecure,
            ca_certificate=body.ca_certificate if body.ca_certificate is not None else old.ca_certificate,
        )
        endpoint = await endpoints.update(registry_id, spec, keep_secret=body.access_secret is None)
    except EndpointError as exc:
        raise _error(exc) from None
    await who.audit("update", "registry", endpoint.name)


@router.delete("/registries/{registry_id}", response_model=None)
async def delete_registry(registry_id: Id, who: CallerDep, endpoints: EndpointsDep) -> None:
    """Proxy projects bound to the endpoint stay; their pulls then say that the endpoint was deleted."""
    who.require_admin(_WHAT)
    try:
        endpoint = await endpoints.delete(registry_id)
    except EndpointError as exc:
        raise _error(exc) from None
    await who.audit("delete", "registry", endpoint.name)


@router.post("/registries/ping", response_model=None)
async def ping_registry(request: Request, body: RegistryPing, who: CallerDep, endpoints: EndpointsDep) -> None:
    """200 when the registry answers ``/v2/`` and accepts the credentials; else 400 naming the cause
    (``unreachable``, ``timeout``, ``tls``, ``unauthorized``, ``not_registry``) in the message."""
    who.require_admin(_WHAT)
    try:
        spec = await _ping_spec(body, endpoints)
        connection = await endpoints.spec_connection(spec, body.id)
    except EndpointError as exc:
        raise _error(exc) from None
    client = UpstreamClient(connection, timeout=PING_TIMEOUT, concurrency=1, trust=services_of(request).trust)
    try:
        await client.ping(harbor=spec.type == "harbor")
    except UpstreamError as exc:
        raise ApiError(400, f"ping failed ({exc.kind}): {exc.message}") from None
    finally:
        await client.aclose()


async def _ping_spec(body: RegistryPing, endpoints: Endpoints) -> EndpointSpec:
    if body.id is not None:
        old = await endpoints.get(body.id)
        return EndpointSpec(
            name=old.name, type=body.type or old.type, url=body.url or old.url,
            credential_type=body.credential_type or old.credential_type,
            access_key=body.access_key if body.access_key is not None else old.access_key,
            access_secret=body.access_secret, insecure=body.insecure if body.insecure is not None else old.insecure,
            ca_certificate=body.ca_certificate if body.ca_certificate is not None else old.ca_certificate,
        )
    if body.url is None or body.type is None:
        missing = "url" if body.url is None else "type"
        raise EndpointError("invalid", f"{missing}: required when no id is given", missing)
    return EndpointSpec(
        name="ping", type=body.type, url=body.url, credential_type=body.credential_type or "basic",
        access_key=body.access_key, access_secret=body.access_secret, insecure=bool(body.insecure),
        ca_certificate=body.ca_certificate,
    )


@router.get("/replication/adapters", response_model=list[str])
async def adapters(who: CallerDep) -> list[str]:
    """The endpoint types this registry can talk to."""
    who.require_admin(_WHAT)
    return list(ENDPOINT_TYPES)
