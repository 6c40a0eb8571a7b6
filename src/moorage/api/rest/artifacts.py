"""Repositories, artifacts and tags of a project (Harbor's paths; repository names inside a project
are URL-encoded twice when they contain ``/``, e.g. ``team%252Fapp``, as Harbor requires)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import exists, func, select

from moorage.api.rest.common import ApiError, Caller, CallerDep, PageDep, paginate, visible_project
from moorage.auth.identity import aware
from moorage.db.tables import manifest_references, manifests, repositories, tags
from moorage.errors import RegistryError
from moorage.registry.digests import Digest, parse_digest

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


async def _repository_id(who: Caller, full: str) -> int:
    async with who.services.db.read() as conn:
        found = (await conn.execute(select(repositories.c.id).where(repositories.c.name == full))).scalar()
    if found is None:
        raise ApiError(404, f"repository {full!r} does not exist; push an image to create it")
    return int(found)


def _registry_error(exc: RegistryError) -> ApiError:
    return ApiError(404 if exc.status == 404 else 400 if exc.status < 500 else 501, exc.message)


@router.get("/projects/{project_name}/repositories", response_model=list[RepositoryOut])
async def list_repositories(
    request: Request, response: Response, project_name: str, who: CallerDep, page: PageDep
) -> list[RepositoryOut]:
    project, _ = await visible_project(who, project_name)
    await _access(who, project.name, "x", "pull")
    count = (
        select(func.count(manifests.c.id)).where(manifests.c.repository_id == repositories.c.id).scalar_subquery()
    )
    query = select(repositories.c.id, repositories.c.name, repositories.c.created_at, count.label("n")).where(
        repositories.c.name.startswith(project.name + "/", autoescape=True),
        exists().where(manifests.c.repository_id == repositories.c.id),
    )
    async with who.services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = (await conn.execute(query.order_by(repositories.c.name).offset(page.offset).limit(page.page_size))).all()
    paginate(request, response, page, int(total))
    return [RepositoryOut(id=r.id, project_id=project.id, name=r.name, artifact_count=int(r.n),
                          creation_time=aware(r.created_at)) for r in rows]


@router.get("/projects/{project_name}/repositories/{repository_name}", response_model=RepositoryOut)
async def get_repository(project_name: str, repository_name: str, who: CallerDep) -> RepositoryOut:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    repo_id = await _repository_id(who, full)
    async with who.services.db.read() as conn:
        row = (await conn.execute(select(repositories).where(repositories.c.id == repo_id))).one()
        n = (await conn.execute(select(func.count()).where(manifests.c.repository_id == repo_id))).scalar_one()
    return RepositoryOut(id=repo_id, project_id=project_id, name=full, artifact_count=int(n),
                         creation_time=aware(row.created_at))


@router.delete("/projects/{project_name}/repositories/{repository_name}", response_model=None)
async def delete_repository(project_name: str, repository_name: str, who: CallerDep) -> None:
    _, full = await _access(who, project_name, repository_name, "delete")
    repo_id = await _repository_id(who, full)
    async with who.services.db.read() as conn:
        digests = list((await conn.execute(select(manifests.c.digest).where(manifests.c.repository_id == repo_id)))
                       .scalars())
    for digest in digests:
        try:
            await who.services.manifests.delete(full, parse_digest(digest))
        except RegistryError as exc:
            if exc.status != 404:  # a concurrent delete got there first
                raise _registry_error(exc) from None
    await who.audit("delete", "repository", full, project_name)


async def _artifacts(who: Caller, repo_id: int, project_id: int, full: str, digest: str | None,
                     offset: int, limit: int) -> tuple[list[ArtifactOut], int]:
    query = select(manifests.c.id, manifests.c.digest, manifests.c.size, manifests.c.media_type,
                   manifests.c.artifact_type, manifests.c.created_at).where(manifests.c.repository_id == repo_id)
    if digest is not None:
        query = query.where(manifests.c.digest == digest)
    async with who.services.db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = (await conn.execute(query.order_by(manifests.c.created_at.desc(), manifests.c.id.desc())
                                   .offset(offset).limit(limit))).all()
        ids = [row.id for row in rows]
        tag_rows = (await conn.execute(select(tags).where(tags.c.manifest_id.in_(ids)).order_by(tags.c.name))).all()
        ref_rows = (await conn.execute(select(manifest_references).where(
            manifest_references.c.manifest_id.in_(ids), manifest_references.c.kind == "manifest"))).all()
    by_id: dict[int, dict[str, list[Any]]] = {i: {"tags": [], "refs": []} for i in ids}
    for t in tag_rows:
        by_id[t.manifest_id]["tags"].append(TagOut(id=t.id, repository_id=repo_id, artifact_id=t.manifest_id,
                                                   name=t.name, push_time=aware(t.updated_at)))
    for r in ref_rows:
        by_id[r.manifest_id]["refs"].append(Reference(parent_id=r.manifest_id, child_digest=r.digest))
    out = [
        ArtifactOut(
            id=row.id, type="IMAGE" if "image" in row.media_type else "UNKNOWN", digest=row.digest, size=row.size,
            media_type=row.media_type, manifest_media_type=row.media_type, artifact_type=row.artifact_type,
            push_time=aware(row.created_at), repository_id=repo_id, project_id=project_id, repository_name=full,
            tags=by_id[row.id]["tags"], references=by_id[row.id]["refs"],
        )
        for row in rows
    ]
    return out, int(total)


async def _digest_of(who: Caller, full: str, reference: str) -> Digest:
    try:
        if reference.startswith(("sha256:", "sha512:")):
            return parse_digest(reference)
        return parse_digest((await who.services.manifests.get(full, reference)).digest)
    except RegistryError as exc:
        raise _registry_error(exc) from None


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts", response_model=list[ArtifactOut])
async def list_artifacts(request: Request, response: Response, project_name: str, repository_name: str,
                         who: CallerDep, page: PageDep) -> list[ArtifactOut]:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    repo_id = await _repository_id(who, full)
    found, total = await _artifacts(who, repo_id, project_id, full, None, page.offset, page.page_size)
    paginate(request, response, page, total)
    return found


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
            response_model=ArtifactOut)
async def get_artifact(project_name: str, repository_name: str, reference: str, who: CallerDep) -> ArtifactOut:
    """``reference`` is a digest or a tag; the answer lists the artifact's tags and child references."""
    project_id, full = await _access(who, project_name, repository_name, "pull")
    repo_id = await _repository_id(who, full)
    digest = await _digest_of(who, full, reference)
    found, _ = await _artifacts(who, repo_id, project_id, full, str(digest), 0, 1)
    if not found:
        raise ApiError(404, f"artifact {reference!r} does not exist in {full!r}")
    return found[0]


@router.delete("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
               response_model=None)
async def delete_artifact(project_name: str, repository_name: str, reference: str, who: CallerDep) -> None:
    _, full = await _access(who, project_name, repository_name, "delete")
    digest = await _digest_of(who, full, reference)
    try:
        await who.services.manifests.delete(full, digest)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await who.audit("delete", "artifact", f"{full}@{digest}", project_name)


@router.get("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags",
            response_model=list[TagOut])
async def list_tags(request: Request, response: Response, project_name: str, repository_name: str,
                    reference: str, who: CallerDep, page: PageDep) -> list[TagOut]:
    project_id, full = await _access(who, project_name, repository_name, "pull")
    repo_id = await _repository_id(who, full)
    digest = await _digest_of(who, full, reference)
    found, _ = await _artifacts(who, repo_id, project_id, full, str(digest), 0, 1)
    if not found:
        raise ApiError(404, f"artifact {reference!r} does not exist in {full!r}")
    all_tags = found[0].tags
    paginate(request, response, page, len(all_tags))
    return all_tags[page.offset: page.offset + page.page_size]


@router.delete("/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}",
               response_model=None)
async def delete_tag(project_name: str, repository_name: str, reference: str, tag_name: str,
                     who: CallerDep) -> None:
    _, full = await _access(who, project_name, repository_name, "delete")
    digest = await _digest_of(who, full, reference)
    try:
        tagged = parse_digest((await who.services.manifests.get(full, tag_name)).digest)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    if tagged != digest:
        raise ApiError(404, f"tag {tag_name!r} does not point at {reference!r} in {full!r}")
    try:
        await who.services.manifests.delete(full, tag_name)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await who.audit("delete", "tag", f"{full}:{tag_name}", project_name)
