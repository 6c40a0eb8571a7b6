"""FastAPI dependencies that hand a REST handler the one service it uses, not the whole ``Services``.

A handler that declares ``repositories: RepositoriesDep`` can reach repositories and nothing
else; what it may do there is still decided by the caller's permissions (``common.caller``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from moorage.api.rest.common import services_of
from moorage.auth.search import SearchIndex
from moorage.registry.guard import WriteGuard
from moorage.registry.interfaces import Blobs, Manifests, Repositories

__all__ = ["BlobsDep", "GuardDep", "ManifestsDep", "RepositoriesDep", "SearchDep"]


def repositories_of(request: Request) -> Repositories:
    return services_of(request).repositories


def blobs_of(request: Request) -> Blobs:
    return services_of(request).blobs


def manifests_of(request: Request) -> Manifests:
    return services_of(request).manifests


def guard_of(request: Request) -> WriteGuard:
    return services_of(request).guard


def search_of(request: Request) -> SearchIndex:
    return SearchIndex(services_of(request).db)


RepositoriesDep = Annotated[Repositories, Depends(repositories_of)]
ManifestsDep = Annotated[Manifests, Depends(manifests_of)]
BlobsDep = Annotated[Blobs, Depends(blobs_of)]
GuardDep = Annotated[WriteGuard, Depends(guard_of)]
SearchDep = Annotated[SearchIndex, Depends(search_of)]
