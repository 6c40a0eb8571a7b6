"""Harbor's ``GET /search?q=`` and ``GET /projects/{p}/summary`` (found missing by the harborapi client).

Both answer only what the caller may see, as the policy decides for ``/projects`` and
``_catalog``: a private project of which the caller is not a member is neither found nor
summarised (404, the same answer as a missing one). The queries are
:class:`moorage.auth.search.SearchIndex`'s.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from moorage.api.rest.common import Caller, CallerDep, visible_project
from moorage.api.rest.deps import QuotasDep, RepositoriesDep, SearchDep
from moorage.api.rest.projects import ProjectOut, project_out
from moorage.auth.identity import Project
from moorage.auth.roles import can_see_members
from moorage.registry.interfaces import Repositories

router = APIRouter(tags=["search", "project"])

#: Harbor returns every match; Moorage caps each list (a search is not a way to dump the registry).
SEARCH_LIMIT = 100


class SearchRepository(BaseModel):
    """Harbor's ``SearchRepository`` (``pull_count`` is not tracked: always 0)."""

    project_id: int
    project_name: str
    project_public: bool
    repository_name: str
    pull_count: int = 0
    artifact_count: int


class SearchResult(BaseModel):
    """Harbor's ``Search``: matching projects and repositories."""

    project: list[ProjectOut]
    repository: list[SearchRepository]


class SummaryQuota(BaseModel):
    """Harbor's ``ProjectSummaryQuota``: the limits and usage of ``GET /quotas/{id}``."""

    hard: dict[str, int]
    used: dict[str, int]


class ProjectSummary(BaseModel):
    """Harbor's ``ProjectSummary``; member counts only for callers who may list members, the quota only
    for those who may read it (the policy's ``quota_denial``)."""

    repo_count: int
    quota: SummaryQuota | None = None
    project_admin_count: int | None = None
    maintainer_count: int | None = None
    developer_count: int | None = None
    guest_count: int | None = None
    limited_guest_count: int | None = None


async def _project(who: Caller, repositories: Repositories, project: Project) -> ProjectOut:
    return await project_out(repositories, project, await who.identity.policy.role(who.subject, project))


@router.get("/search", response_model=SearchResult)
async def search(
    who: CallerDep, index: SearchDep, repository_counts: RepositoriesDep,
    q: Annotated[str, Query(min_length=1, max_length=255, description="part of a project or repository name")],
) -> SearchResult:
    """Projects and repositories whose names contain ``q``, among those the caller may see."""
    policy = who.identity.policy
    found, _ = await who.identity.store.list_projects(policy.visible_projects(who.subject), 0, SEARCH_LIMIT, q)
    projects = [await _project(who, repository_counts, project) for project in found]
    hits = await index.repositories(q, policy.visible_repositories(who.subject), SEARCH_LIMIT)
    repositories = []
    for hit in hits:
        project = await policy.project(hit.project)
        if project is None:  # deleted since the query
            continue
        repositories.append(SearchRepository(
            project_id=project.id, project_name=project.name, project_public=project.public,
            repository_name=hit.name, artifact_count=hit.artifact_count,
        ))
    return SearchResult(project=projects, repository=repositories)


@router.get("/projects/{project_name_or_id}/summary", response_model=ProjectSummary)
async def project_summary(
    project_name_or_id: str, who: CallerDep, index: SearchDep, repositories: RepositoriesDep, quotas: QuotasDep
) -> ProjectSummary:
    """Repository and member counts, and the quota, of a project the caller may see."""
    project, role = await visible_project(who, project_name_or_id)
    summary = ProjectSummary(repo_count=await repositories.count(project.id))
    rights = await who.identity.policy.rights(who.subject, project.id)
    quota = await quotas.get(project.id)
    if quota is not None and who.identity.policy.quota_denial(who.subject, rights, write=False) is None:
        summary.quota = SummaryQuota(hard={"storage": quota.limits.storage, "count": quota.limits.count},
                                     used={"storage": quota.storage_used, "count": quota.count_used})
    if can_see_members(role, who.subject.sysadmin):
        counts = await index.role_counts(project.id)
        summary.project_admin_count = counts["projectAdmin"]
        summary.maintainer_count = counts["maintainer"]
        summary.developer_count = counts["developer"]
        summary.guest_count = counts["guest"]
        summary.limited_guest_count = counts["limitedGuest"]
    return summary
