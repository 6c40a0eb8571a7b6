"""Read-only browsing by full repository name, in every auth mode (what the web UI needs without projects).

* ``GET /repositories?q=name=~<part>&page=&page_size=`` (Harbor's): every repository holding
  artifacts that the caller may see, paged on the server, with ``X-Total-Count``.
* ``GET /repositories/{repository_name}/artifacts[/{reference}[/additions/…|/accessories]]`` (a
  Moorage addition): the artifact reads of :mod:`moorage.api.rest.artifacts` and
  :mod:`moorage.api.rest.additions`, by the *full* repository name, URL-encoded twice as Harbor
  wants for names with ``/`` (``library%252Falpine``; ``alpine`` as is). Project paths cannot
  name an open registry's one-part names (``alpine``), these can.

With ``auth.mode: none`` there are no accounts: the registry is open (anyone may pull, as on
``/v2``), so these answer without credentials while the rest of ``/api/v2.0`` answers 501. With
``token`` the caller is authenticated as everywhere else and the policy decides: the list holds
only what ``Policy.visible_repositories`` allows, and a repository the caller may not pull is the
policy's 401/404, never telling a private project from a missing one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response

from moorage.api.rest.additions import (
    Accessory,
    BuildHistoryEntry,
    Layer,
    Platform,
    accessories_of,
    history_of,
    layers_of,
    platforms_of,
)
from moorage.api.rest.artifacts import (
    ArtifactOut,
    ArtifactQuery,
    RepositoryOut,
    _artifact,
    _artifact_out,
    _artifacts,
    tag_query,
)
from moorage.api.rest.common import ApiError, Caller, PageDep, caller, paginate, services_of
from moorage.api.rest.deps import BlobsDep, ManifestsDep, RepositoriesDep
from moorage.errors import RegistryError
from moorage.registry.interfaces import Manifests
from moorage.registry.manifest_store import StoredManifest, parse_reference

__all__ = ["ReaderDep", "reader", "router"]

router = APIRouter(tags=["repository", "artifact"])

_BASE = "/repositories/{repository_name}/artifacts/{reference}"


async def reader(request: Request) -> Caller | None:
    """The caller, or ``None`` with ``auth.mode: none`` (an open registry: everyone may read everything)."""
    if services_of(request).identity is None:
        return None
    return await caller(request)


ReaderDep = Annotated[Caller | None, Depends(reader)]


async def _pullable(who: Caller | None, repository_name: str) -> tuple[int, str]:
    """``(project id or 0, full name)`` once the caller may pull from the repository, else the policy's refusal."""
    full = unquote(repository_name)
    if who is None:
        return 0, full
    policy = who.identity.policy
    rights = await policy.repository_rights(who.subject, full)
    if who.subject.sysadmin or ("pull" in rights.actions and rights.project is not None):
        return (rights.project.id if rights.project is not None else 0), full
    # Not visible (private, missing, or no project at all): the one answer that discloses nothing.
    denial = policy.project_denial(who.subject, rights) or policy.repository_denial(
        who.subject, full, frozenset({"pull"}), rights
    )
    raise ApiError.of(denial.error())


def _contains(q: str | None) -> str | None:
    """Harbor's ``q=name=~<part>`` (names containing ``part``); the only filter of this list."""
    if not q:
        return None
    key, sep, value = q.partition("=")
    if key.strip() != "name" or not sep or not value.startswith("~"):
        raise ApiError(400, f"unsupported query {q!r}: this list filters by part of the name only, q=name=~<part>")
    return value[1:] or None


@router.get("/repositories", response_model=list[RepositoryOut])
async def list_all_repositories(
    request: Request, response: Response, who: ReaderDep, page: PageDep, repositories: RepositoriesDep,
    q: Annotated[str | None, Query(max_length=255, description="Harbor's query: name=~<part>")] = None,
) -> list[RepositoryOut]:
    """Every repository holding artifacts that the caller may see, by name (``project_id`` 0: no project)."""
    visible = None if who is None else who.identity.policy.visible_repositories(who.subject)
    found, total = await repositories.listing(page.offset, page.page_size, contains=_contains(q), visible=visible)
    paginate(request, response, page, total)
    return [
        RepositoryOut(id=r.id, project_id=r.project_id or 0, name=r.name, artifact_count=r.artifact_count,
                      creation_time=r.created_at)
        for r in found
    ]


@router.get("/repositories/{repository_name}/artifacts", response_model=list[ArtifactOut])
async def list_artifacts_by_name(request: Request, response: Response, repository_name: str, who: ReaderDep,
                                 page: PageDep, repositories: RepositoriesDep,
                                 q: ArtifactQuery = None) -> list[ArtifactOut]:
    """The repository's artifacts, newest first, with their tags (``q=tags=~<part>``: those with a tag containing it)."""
    project_id, full = await _pullable(who, repository_name)
    tag = tag_query(q)
    found, total = await _artifacts(repositories, full, None, page.offset, page.page_size, tag)
    paginate(request, response, page, total)
    return [_artifact_out(a, project_id, full) for a in found]


@router.get(_BASE, response_model=ArtifactOut)
async def get_artifact_by_name(repository_name: str, reference: str, who: ReaderDep,
                               repositories: RepositoriesDep, manifests: ManifestsDep) -> ArtifactOut:
    """One artifact by digest or tag, with its tags and child references."""
    project_id, full = await _pullable(who, repository_name)
    return _artifact_out(await _artifact(repositories, manifests, full, reference), project_id, full)


async def _manifest(who: Caller | None, manifests: Manifests, repository_name: str,
                    reference: str) -> tuple[str, StoredManifest]:
    _, full = await _pullable(who, repository_name)
    try:
        return full, await manifests.get(full, parse_reference(reference))
    except RegistryError as exc:
        raise ApiError(404 if exc.status == 404 else 400, exc.message) from None


@router.get(_BASE + "/additions/layers", response_model=list[Layer])
async def layers_by_name(repository_name: str, reference: str, who: ReaderDep,
                         manifests: ManifestsDep) -> list[Layer]:
    _, manifest = await _manifest(who, manifests, repository_name, reference)
    return layers_of(manifest)


@router.get(_BASE + "/additions/platforms", response_model=list[Platform])
async def platforms_by_name(repository_name: str, reference: str, who: ReaderDep,
                            manifests: ManifestsDep) -> list[Platform]:
    _, manifest = await _manifest(who, manifests, repository_name, reference)
    return platforms_of(manifest)


@router.get(_BASE + "/additions/build_history", response_model=list[BuildHistoryEntry])
async def build_history_by_name(repository_name: str, reference: str, who: ReaderDep, manifests: ManifestsDep,
                                blobs: BlobsDep) -> list[BuildHistoryEntry]:
    full, manifest = await _manifest(who, manifests, repository_name, reference)
    return await history_of(full, reference, manifest, blobs)


@router.get(_BASE + "/accessories", response_model=list[Accessory])
async def accessories_by_name(request: Request, response: Response, repository_name: str, reference: str,
                              who: ReaderDep, page: PageDep, manifests: ManifestsDep) -> list[Accessory]:
    full, manifest = await _manifest(who, manifests, repository_name, reference)
    return await accessories_of(request, response, page, full, manifest, manifests)

