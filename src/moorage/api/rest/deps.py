"""FastAPI dependencies that hand a REST handler the one service it uses, not the whole ``Services``,
and the one translation of domain refusals into REST errors.

A handler that declares ``repositories: RepositoriesDep`` can reach repositories and nothing
else; what it may do there is still decided by the caller's permissions (``common.caller``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from moorage.api.rest.common import ApiError, services_of
from moorage.auth.search import SearchIndex
from moorage.errors import RegistryError
from moorage.gc.executions import GcService
from moorage.proxy import ProxyCache
from moorage.registry.guard import ReadOnlyError, WriteGuard
from moorage.registry.immutability import ImmutableRules, ImmutableTagError
from moorage.registry.interfaces import Blobs, Manifests, Repositories
from moorage.registry.quota import Limits, QuotaExceeded
from moorage.registry.quota_service import QuotaService
from moorage.retention.service import RetentionService
from moorage.upstream.endpoints import Endpoints
from moorage.webhooks import WebhookService

__all__ = [
    "BlobsDep",
    "EndpointsDep",
    "GcDep",
    "GuardDep",
    "ImmutableRulesDep",
    "ManifestsDep",
    "ProxyDep",
    "QuotasDep",
    "RepositoriesDep",
    "RetentionDep",
    "SearchDep",
    "WebhooksDep",
    "registry_error",
]


def registry_error(exc: RegistryError) -> ApiError:
    """A domain refusal in Harbor's envelope: read-only mode, an immutable tag and a quota are 403 (as Harbor),
    404, 409 and 412 keep their status, other client errors are 400 and the rest 501."""
    if isinstance(exc, (ReadOnlyError, ImmutableTagError, QuotaExceeded)):
        return ApiError(403, exc.message)
    status = exc.status if exc.status in (404, 409, 412) else 400 if exc.status < 500 else 501
    return ApiError(status, exc.message)


def repositories_of(request: Request) -> Repositories:
    return services_of(request).repositories


def blobs_of(request: Request) -> Blobs:
    return services_of(request).blobs


def manifests_of(request: Request) -> Manifests:
    return services_of(request).manifests


def guard_of(request: Request) -> WriteGuard:
    return services_of(request).guard


def immutable_rules_of(request: Request) -> ImmutableRules:
    return ImmutableRules(services_of(request).db)


def quotas_of(request: Request) -> QuotaService:
    services = services_of(request)
    limits = services.settings.quotas
    return QuotaService(services.db, Limits(limits.storage_per_project, limits.count_per_project))


def search_of(request: Request) -> SearchIndex:
    return SearchIndex(services_of(request).db)


def gc_of(request: Request) -> GcService:
    services = services_of(request)
    return GcService(services.db, services.jobs)


def webhooks_of(request: Request) -> WebhookService:
    webhooks = services_of(request).webhooks
    if webhooks is None:
        raise ApiError(501, "webhooks belong to projects, which need auth.mode: token; this registry runs with "
                            "auth.mode: none")
    return webhooks


WebhooksDep = Annotated[WebhookService, Depends(webhooks_of)]


def retention_of(request: Request) -> RetentionService:
    services = services_of(request)
    return services.retention or RetentionService(services.db, services.jobs)


def endpoints_of(request: Request) -> Endpoints:
    endpoints = services_of(request).endpoints
    if endpoints is None:
        raise ApiError(501, "registry endpoints need auth.mode: token (and auth.secret_key, which encrypts their "
                       "credentials)")
    return endpoints


def proxy_of(request: Request) -> ProxyCache | None:
    return services_of(request).proxy


EndpointsDep = Annotated[Endpoints, Depends(endpoints_of)]
ProxyDep = Annotated[ProxyCache | None, Depends(proxy_of)]
RepositoriesDep = Annotated[Repositories, Depends(repositories_of)]
ManifestsDep = Annotated[Manifests, Depends(manifests_of)]
BlobsDep = Annotated[Blobs, Depends(blobs_of)]
GuardDep = Annotated[WriteGuard, Depends(guard_of)]
SearchDep = Annotated[SearchIndex, Depends(search_of)]
ImmutableRulesDep = Annotated[ImmutableRules, Depends(immutable_rules_of)]
GcDep = Annotated[GcService, Depends(gc_of)]
RetentionDep = Annotated[RetentionService, Depends(retention_of)]
QuotasDep = Annotated[QuotaService, Depends(quotas_of)]
