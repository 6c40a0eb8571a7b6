"""Repositories, artifacts and tags of a project (Harbor's paths; repository names inside a project
are URL-encoded twice when they contain ``/``, e.g. ``team%252Fapp``, as Harbor requires)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.http import UrlBuilder
from moorage.api.rest.common import (
    ApiError,
    Caller,
    CallerDep,
    PageDep,
    paginate,
    services_of,
    visible_project,
)
from moorage.api.rest.deps import ManifestsDep, RepositoriesDep, registry_error
from moorage.errors import RegistryError
from moorage.events import ArtifactEvent
from moorage.registry.digests import Digest, parse_digest
from moorage.registry.interfaces import Manifests, Repositories
from moorage.registry.names import InvalidNameError, check_tag
from moorage.registry.repository_service import ArtifactInfo, RepositoryInfo

router = APIRouter(tags=["repository", "artifact"])


class RepositoryOut(BaseModel):
    id: int
    project_id: int
    name: str
    artifact_count: int
    creation_time: datetime


class TagOut(BaseModel):
    id: int
    repository_id: int
    artifact_id: int
    name: str
    push_time: datetime


class Reference(BaseModel):
    parent_id: int
    child_digest: str


class ArtifactOut(BaseModel):
    id: int
    type: str
    digest: str
    size: int
    media_type: str
    manifest_media_type: str
    artifact_type: str | None
    push_time: datetime
    #: When a client last pulled it (manifest GET); ``null`` when never (Harbor's field).
    pull_time: datetime | None = None
    repository_id: int
    project_id: int
    repository_name: str
    tags: list[TagOut]
    references: list[Reference]


async def _access(who: Caller, project_name: str, repository_name: str, action: str) -> tuple[int, str]:
    """``(project_id, full repository name)`` once the caller may ``action`` there, else 401/403/404."""
    project, _ = await visible_project(who, project_name)
    full = f"{project.name}/{unquote(repository_name)}"
    allowed = (await who.identity.policy.rights(who.subject, project.name)).actions
    if action not in allowed:
        if who.subject.anonymous:
            raise ApiError(401, f"{action} on {full!r} needs credentials")
        raise ApiError(403, f"{who.subject.name!r} may not {action} in project {project.name!r}; "
                       f"ask a project admin for a role that allows {action}")
    return project.id, full


def _repository_out(repository: RepositoryInfo, project_id: int) -> RepositoryOut:
    return RepositoryOut(id=repository.id, project_id=project_id, name=repository.name,
                         artifact_count=repository.artifact_count, creation_time=repository.created_at)


def _artifact_out(artifact: ArtifactInfo, project_id: int, full: str) -> ArtifactOut:
    return ArtifactOut(
        id=artifact.id, type="IMAGE" if "image" in artifact.media_type else "UNKNOWN", digest=artifact.digest,
        size=artifact.size, media_type=artifact.media_type, manifest_media_type=artifact.media_type,
        artifact_type=artifact.artifact_type, push_time=artifact.created_at, pull_time=artifact.pulled_at,
        repository_id=artifact.repository_id,
        project_id=project_id, repository_name=full,
        tags=[TagOut(id=t.id, repository_id=t.repository_id, artifact_id=t.manifest_id, name=t.name,
                     push_time=t.updated_at) for t in artifact.tags],
        references=[Reference(parent_id=artifact.id, child_digest=child) for child in artifact.children],
    )


async def _artifacts(repositories: Repositories, full: str, digest: str | None, offset: int,
                     limit: int, tag: str | None = None) -> tuple[list[ArtifactInfo], int]:
    try:
        return await repositories.artifacts(full, offset, limit, digest, tag=tag)
    except RegistryError as exc:
        raise registry_error(exc) from None


def tag_query(q: str | None) -> str | None:
    """Harbor's ``q`` for artifacts, ``tags=~<part>``: the part a tag must contain (``None`` without ``q``)."""
    if not q:
        return None
    key, sep, value = q.partition("=")
    if key.strip() != "tags" or not sep or not value.startswith("~"):
        raise ApiError(400, f"q: unsupported query {q!r}; artifacts filter by tag only, q=tags=~<part>")
    return value[1:] or None


#: ``q`` of the artifact lists.
ArtifactQuery = Annotated[str | None, Query(max_length=255, description="Harbor's query: tags=~<part>")]


def _name_query(q: str | None, project: str) -> tuple[str | None, str | None]:
    """Harbor's ``q`` for repositories: ``name=~part`` (contains) or ``name=exact`` (with or without
    the project): ``(contains, full name)``."""
    if not q:
        return None, None
    key, sep, value = q.partition("=")
    if key.strip() != "name" or not sep:
        raise ApiError(400, f"unsupported query {q!r}: repositories filter by name only, q=name=~<part> or q=name=<name>")
    if value.startswith("~"):
        return value[1:] or None, None
    return None, value if value.startswith(project + "/") else f"{project}/{value}"


@router.get("/projects/{project_name}/repositories", response_model=list[RepositoryOut])
async def list_repositories(
    request: Request, response: Response, project_name: str, who: CallerDep, page: PageDep,
    repositories: RepositoriesDep,
    q: Annotated[str | None, Query(max_length=255, description="Harbor's query: name=~<part> or name=<name>")] = None,
) -> list[RepositoryOut]:
    project, _ = await visible_project(who, project_name)
    await _access(who, project.name, "x", "pull")
    contains, name = _name_query(q, project.name)
    found, total = await repositories.of_project(project.id, page.offset, page.page_size, contains=contains, name=name)
    paginate(request, response, page, total)
    return [_repository_out(r, project.id) for r in found]


@router.get("/projects/{project_name}/repositories/{repository_name}", response_model=RepositoryOut)
async def get_repository(
    project_name: str, repository_name: str, who: CallerDep, repositories: RepositoriesDep
) -> RepositoryOut:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    try:
        return _repository_out(await repositories.get(full), project_id)
    except RegistryError as exc:
        raise registry_error(exc) from None


@router.delete("/projects/{project_name}/repositories/{repository_name}", response_model=None)
async def delete_repository(
    project_name: str, repository_name: str, who: CallerDep, repositories: RepositoriesDep
) -> None:
    """Deletes the repository whole (artifacts, tags, blob links) in one transaction; bytes go to GC."""
    _, full = await _access(who, project_name, repository_name, "delete")
    try:
        await repositories.delete(full)
    except RegistryError as exc:
        raise registry_error(exc) from None
    await who.audit("delete", "repository", full, project_name)


async def _digest_of(manifests: Manifests, full: str, reference: str) -> Digest:
    try:
        if reference.startswith(("sha256:", "sha512:")):
            return parse_digest(reference)
        return parse_digest((await manifests.get(full, reference)).digest)
    except RegistryError as exc:
        raise registry_error(exc) from None


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts", response_model=list[ArtifactOut])
async def list_artifacts(request: Request, response: Response, project_name: str, repository_name: str,
                         who: CallerDep, page: PageDep, repositories: RepositoriesDep,
                         q: ArtifactQuery = None) -> list[ArtifactOut]:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    tag = tag_query(q)
    found, total = await _artifacts(repositories, full, None, page.offset, page.page_size, tag)
    paginate(request, response, page, total)
    return [_artifact_out(a, project_id, full) for a in found]


async def _artifact(repositories: Repositories, manifests: Manifests, full: str, reference: str) -> ArtifactInfo:
    digest = await _digest_of(manifests, full, reference)
    found, _ = await _artifacts(repositories, full, str(digest), 0, 1)
    if not found:
        raise ApiError(404, f"artifact {reference!r} does not exist in {full!r}")
    return found[0]


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
            response_model=ArtifactOut)
async def get_artifact(project_name: str, repository_name: str, reference: str, who: CallerDep,
                       repositories: RepositoriesDep, manifests: ManifestsDep) -> ArtifactOut:
    """``reference`` is a digest or a tag; the answer lists the artifact's tags and child references."""
    project_id, full = await _access(who, project_name, repository_name, "pull")
    return _artifact_out(await _artifact(repositories, manifests, full, reference), project_id, full)


@router.delete("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
               response_model=None)
async def delete_artifact(request: Request, project_name: str, repository_name: str, reference: str,
                          who: CallerDep, manifests: ManifestsDep) -> None:
    _, full = await _access(who, project_name, repository_name, "delete")
    digest = await _digest_of(manifests, full, reference)
    try:
        await manifests.delete(full, digest)
    except RegistryError as exc:
        raise registry_error(exc) from None
    await who.audit("delete", "artifact", f"{full}@{digest}", project_name)
    await services_of(request).events.publish(ArtifactEvent(
        "delete", full, operator=who.subject.name, digest=str(digest),
        host=UrlBuilder(services_of(request).settings.http).host(request)))


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags",
            response_model=list[TagOut])
async def list_tags(request: Request, response: Response, project_name: str, repository_name: str,
                    reference: str, who: CallerDep, page: PageDep, repositories: RepositoriesDep,
                    manifests: ManifestsDep) -> list[TagOut]:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    all_tags = _artifact_out(await _artifact(repositories, manifests, full, reference), project_id, full).tags
    paginate(request, response, page, len(all_tags))
    return all_tags[page.offset: page.offset + page.page_size]


class TagIn(BaseModel):
    """Harbor's ``Tag`` body for creating one: only ``name`` is read."""

    name: str = Field(min_length=1, max_length=128, description="the new tag (validated as /v2 does)")


@router.post("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags", status_code=201,
             response_model=None)
async def create_tag(request: Request, response: Response, project_name: str, repository_name: str, reference: str,
                     body: TagIn, who: CallerDep, manifests: ManifestsDep) -> None:
    """Adds a tag to the artifact (push rights, as ``docker tag`` + push would need). A tag already on another
    artifact is a 409 (it is not moved); one on this artifact answers 201 again. Immutability rules apply."""
    _, full = await _access(who, project_name, repository_name, "push")
    try:
        check_tag(body.name)
    except InvalidNameError as exc:
        raise ApiError(400, f"name: {exc.message}") from None
    digest = await _digest_of(manifests, full, reference)
    try:
        await manifests.tag(full, body.name, digest, move=False)
    except RegistryError as exc:
        raise registry_error(exc) from None
    await who.audit("create", "tag", f"{full}:{body.name}", project_name)
    response.headers["Location"] = f"{request.url.path}/{quote(body.name, safe='')}"


@router.delete("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}",
               response_model=None)
async def delete_tag(project_name: str, repository_name: str, reference: str, tag_name: str,
                     who: CallerDep, manifests: ManifestsDep) -> None:
    """Deletes the tag only while it points at ``reference`` (a tag moved meanwhile is left alone: 404)."""
    _, full = await _access(who, project_name, repository_name, "delete")
    digest = await _digest_of(manifests, full, reference)
    try:
        await manifests.delete_tag(full, tag_name, digest)
    except RegistryError as exc:
        raise registry_error(exc) from None
    await who.audit("delete", "tag", f"{full}:{tag_name}", project_name)
