"""``/projects``: projects (Harbor's fields, ``metadata.public`` as the string Harbor uses), members, logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, StrictInt, model_serializer
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.api.rest.common import ApiError, CallerDep, Id, PageDep, paginate, role_id, visible_project
from moorage.api.rest.deps import ProxyDep, QuotasDep, RepositoriesDep, RetentionDep, registry_error
from moorage.api.rest.logs import AuditLogItem, audit_items
from moorage.auth.groups import LDAP, Group, GroupRef
from moorage.auth.identity import IdentityError, Project
from moorage.auth.roles import ROLE_NAMES, can_manage_members, can_see_members
from moorage.errors import RegistryError
from moorage.proxy.eviction import CACHE_LIMIT_FIELD, InvalidCacheLimit, parse_cache_limit
from moorage.registry.interfaces import Repositories
from moorage.registry.quota import InvalidLimit
from moorage.upstream.endpoints import EndpointError

router = APIRouter(tags=["project"])


class ProjectMetadata(BaseModel):
    public: str | None = Field(default=None, description="'true' or 'false' (Harbor sends strings)")
    retention_id: str | None = Field(default=None, description="The project's tag retention policy (read only)")
    #: Checked by moorage.proxy.eviction.parse_cache_limit (a 400 naming the field), not by the model.
    proxy_cache_limit: Any = Field(
        default=None, description="A proxy-cache project only: bytes the cache may keep before the least recently "
        "pulled artifacts are evicted, as a string of digits (\"-1\": no limit; a Moorage addition)")

    @model_serializer(mode="wrap")
    def _without_absent_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Harbor leaves the key out when the project has no policy; so do we (and for regular projects' cache limit).
        data: dict[str, Any] = handler(self)
        for key in ("retention_id", "proxy_cache_limit"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


def _cache_limit(metadata: ProjectMetadata | None) -> int | None:
    """The cache limit a request sets (``None``: not given); a 400 naming the field when it is malformed."""
    if metadata is None or metadata.proxy_cache_limit is None:
        return None
    try:
        return parse_cache_limit(metadata.proxy_cache_limit)
    except InvalidCacheLimit as exc:
        raise ApiError(400, exc.message) from None


class ProjectReq(BaseModel):
    project_name: str = Field(min_length=1, max_length=255)
    public: bool | None = None
    metadata: ProjectMetadata | None = None
    #: Bytes; -1 is unlimited; left out, the configured default (``quotas.storage_per_project``).
    storage_limit: StrictInt | None = None
    #: Harbor's proxy cache: the project pulls through from this registry endpoint and refuses pushes.
    registry_id: int | None = Field(default=None, ge=1, le=2_147_483_647)


class ProjectUpdate(BaseModel):
    public: bool | None = None
    metadata: ProjectMetadata | None = None
    #: A proxy-cache project only: bind it to another endpoint.
    registry_id: int | None = Field(default=None, ge=1, le=2_147_483_647)


class ProjectOut(BaseModel):
    project_id: int
    name: str
    public: bool
    owner_id: int | None
    creation_time: datetime
    update_time: datetime
    repo_count: int
    current_user_role_id: int | None
    current_user_role_ids: list[int]
    metadata: ProjectMetadata
    registry_id: int | None = None


class MemberUser(BaseModel):
    user_id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    username: str | None = Field(default=None, max_length=255)


class MemberGroup(BaseModel):
    """Harbor's ``UserGroup`` in a member request: an existing group by ``id``, or one named by
    ``ldap_group_dn`` (LDAP) or ``group_name`` and ``group_type``, created when missing."""

    id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    group_name: str | None = Field(default=None, max_length=255)
    group_type: int | None = Field(default=None, ge=1, le=3)
    ldap_group_dn: str | None = Field(default=None, max_length=512)


class MemberReq(BaseModel):
    role_id: int = Field(ge=1, le=5)
    member_user: MemberUser | None = None
    member_group: MemberGroup | None = None


class RoleReq(BaseModel):
    role_id: int = Field(ge=1, le=5)


class MemberOut(BaseModel):
    id: int
    project_id: int
    entity_name: str
    entity_type: str
    entity_id: int
    role_id: int
    role_name: str


def _public(flag: bool | None, metadata: ProjectMetadata | None) -> bool | None:
    if flag is not None:
        return flag
    if metadata is not None and metadata.public is not None:
        if metadata.public.lower() not in ("true", "false"):
            raise ApiError(400, "metadata.public must be 'true' or 'false'")
        return metadata.public.lower() == "true"
    return None


async def project_out(repositories: Repositories, project: Project, role: str | None,
                      registry_id: int | None = None) -> ProjectOut:
    """Harbor's ``Project`` as ``GET /projects`` lists it (also used by ``/search``)."""
    rid = role_id(role)
    return ProjectOut(
        project_id=project.id, name=project.name, public=project.public, owner_id=project.owner_id,
        creation_time=project.created_at, update_time=project.updated_at,
        repo_count=await repositories.count(project.id), current_user_role_id=rid,
        current_user_role_ids=[rid] if rid else [],
        metadata=ProjectMetadata(public="true" if project.public else "false"), registry_id=registry_id,
    )


def _manage(who: CallerDep, role: str | None, project: Project, what: str) -> None:
    if not can_manage_members(role, who.subject.sysadmin):
        raise ApiError(
            403, f"{what} in project {project.name!r} needs the projectAdmin role; {who.subject.name!r} has "
            f"{role or 'no role'}",
        )


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(
    request: Request, response: Response, who: CallerDep, page: PageDep, repositories: RepositoriesDep,
    name: Annotated[str | None, Query(max_length=255)] = None, public: bool | None = None,
) -> list[ProjectOut]:
    visible = who.identity.policy.visible_projects(who.subject)
    found, total = await who.identity.store.list_projects(visible, page.offset, page.page_size, name, public)
    paginate(request, response, page, total)
    return [await project_out(repositories, p, await who.identity.store.role_of(who.subject, p)) for p in found]


@router.head("/projects", status_code=200, responses={404: {"description": "no such project you may see"}})
async def project_exists(who: CallerDep, project_name: Annotated[str, Query(min_length=1, max_length=255)]) -> None:
    """200 when the caller may see the project (as ``GET`` would list it), else 404: a private project
    of which the caller is not a member answers as a missing one, anonymous callers included."""
    rights = await who.identity.policy.rights(who.subject, project_name)
    if not who.identity.policy.may_know_exists(who.subject, rights):
        raise ApiError(404, who.identity.policy.hidden_message(project_name))


@router.post("/projects", status_code=201, response_model=None)
async def create_project(
    request: Request, response: Response, body: ProjectReq, who: CallerDep, quotas: QuotasDep, proxy: ProxyDep
) -> None:
    who.require_login()
    if who.subject.kind == "robot":
        raise ApiError(403, "robot accounts cannot create projects; use a user account")
    within = None
    cache_limit = _cache_limit(body.metadata)
    if cache_limit is not None and body.registry_id is None:
        raise ApiError(400, f"{CACHE_LIMIT_FIELD}: only a proxy-cache project has a cache limit; give registry_id "
                       "too, or leave the key out; nothing was saved")
    if body.registry_id is not None:
        if proxy is None:
            raise ApiError(501, "proxy-cache projects need auth.secret_key (it encrypts endpoint credentials)")
        registry_id = body.registry_id

        async def within(conn: AsyncConnection, project_id: int) -> None:
            await proxy.bindings.bind(conn, project_id, registry_id, -1 if cache_limit is None else cache_limit)

    try:
        limits = quotas.for_new_project(body.storage_limit)
    except InvalidLimit as exc:
        raise ApiError(400, f"{exc}; nothing was saved") from None
    try:
        project = await who.identity.store.create_project(
            body.project_name, bool(_public(body.public, body.metadata)), who.subject, limits, within
        )
    except EndpointError as exc:
        raise ApiError(400, exc.message) from None
    except IdentityError as exc:
        if exc.kind == "conflict":  # "already exists" only to those who may see it (the policy's words)
            rights = await who.identity.policy.rights(who.subject, body.project_name)
            raise ApiError(409, who.identity.policy.name_taken_message(body.project_name, rights)) from None
        raise ApiError.of(exc) from None
    await who.audit("create", "project", project.name, project.name)
    response.headers["Location"] = f"{request.url.path}/{project.id}"


@router.get("/projects/{project_name_or_id}", response_model=ProjectOut)
async def get_project(project_name_or_id: str, who: CallerDep, repositories: RepositoriesDep,
                      proxy: ProxyDep, retention: RetentionDep) -> ProjectOut:
    """The project; ``metadata.retention_id`` names its retention policy when it has one (as in Harbor)."""
    project, role = await visible_project(who, project_name_or_id)
    registry_id = await proxy.bindings.project_registry(project.id) if proxy is not None else None
    out = await project_out(repositories, project, role, registry_id)
    policy = await retention.of_project(project.id)
    if policy is not None:
        out.metadata.retention_id = str(policy.id)
    limit = await proxy.bindings.cache_limit_of(project.id) if proxy is not None else None
    if limit is not None:  # a proxy-cache project (also when its endpoint was deleted)
        out.metadata.proxy_cache_limit = str(limit)
    return out


@router.put("/projects/{project_name_or_id}", response_model=None)
async def update_project(project_name_or_id: str, body: ProjectUpdate, who: CallerDep, proxy: ProxyDep) -> None:
    project, role = await visible_project(who, project_name_or_id)
    _manage(who, role, project, "changing settings")
    public = _public(body.public, body.metadata)  # every field checked before anything is saved
    cache_limit = _cache_limit(body.metadata)
    if (body.registry_id is not None or cache_limit is not None) and proxy is None:
        raise ApiError(501, "proxy-cache projects need auth.secret_key (it encrypts endpoint credentials)")
    if cache_limit is not None and proxy is not None and await proxy.bindings.cache_limit_of(project.id) is None:
        raise ApiError(400, f"{CACHE_LIMIT_FIELD}: only a proxy-cache project (one created with registry_id) has a "
                       "cache limit; nothing was saved")
    if body.registry_id is not None and proxy is not None:
        who.require_admin("binding a proxy-cache project to an endpoint")
        try:
            await proxy.bindings.rebind(project.id, body.registry_id)
        except EndpointError as exc:
            raise ApiError(400, exc.message) from None
    if cache_limit is not None and proxy is not None:
        try:
            await proxy.bindings.set_cache_limit(project.id, cache_limit)
        except EndpointError as exc:
            raise ApiError(400, exc.message) from None
        await proxy.evictions.check(project.id, cache_limit)  # a lower limit applies now, not at the next pull
    await who.identity.store.update_project(project.id, public)
    await who.audit("update", "project", project.name, project.name)


@router.delete("/projects/{project_name_or_id}", response_model=None)
async def delete_project(project_name_or_id: str, who: CallerDep, repositories: RepositoriesDep) -> None:
    """Deletes the project with its members, robot accounts and empty repositories in one transaction;
    412 while a repository holds artifacts (checked inside that transaction)."""
    project, role = await visible_project(who, project_name_or_id)
    _manage(who, role, project, "deleting the project")
    robots = await who.identity.robots.all_of_project(project.id)  # the delete removes them with it
    try:
        await repositories.delete_project(project.id)
    except RegistryError as exc:
        raise registry_error(exc) from None
    await who.audit("delete", "project", project.name, project.name)
    for robot in robots:
        await who.audit("delete", "robot", robot.name, project.name,
                        detail=f"removed with project {project.name!r}")


@router.get("/projects/{project_name_or_id}/members", response_model=list[MemberOut])
async def list_members(
    request: Request, response: Response, project_name_or_id: str, who: CallerDep, page: PageDep
) -> list[MemberOut]:
    project, role = await visible_project(who, project_name_or_id)
    if not can_see_members(role, who.subject.sysadmin):
        raise ApiError(403, f"listing members of {project.name!r} needs the guest role or above")
    rows, total = await who.identity.store.members(project, page.offset, page.page_size)
    paginate(request, response, page, total)
    return [_member(row) for row in rows]


def _member(row: dict[str, object]) -> MemberOut:
    """Harbor's ``ProjectMemberEntity``: ``entity_type`` ``u`` (a user) or ``g`` (a group)."""
    role = str(row["role"])
    group = row.get("group_id") is not None
    return MemberOut(
        id=int(str(row["id"])), project_id=int(str(row["project_id"])),
        entity_name=str(row["group_name"] if group else row["username"]), entity_type="g" if group else "u",
        entity_id=int(str(row["group_id"] if group else row["user_id"])), role_id=role_id(role) or 0, role_name=role,
    )


def _entity(row: dict[str, object]) -> str:
    """How audit rows name a member: the user name, or ``group:<name>``."""
    return f"group:{row['group_name']}" if row.get("group_id") is not None else str(row["username"])


async def _group_of(who: CallerDep, body: MemberGroup) -> Group:
    groups = who.identity.groups
    if body.id is not None:
        return await groups.get(body.id)
    group_type = body.group_type or (LDAP if body.ldap_group_dn else 0)
    name = body.group_name or (body.ldap_group_dn or "").split(",", 1)[0].partition("=")[2].strip()
    if not name:
        raise ApiError(400, "member_group needs an id, an ldap_group_dn, or a group_name with a group_type")
    ref = GroupRef(group_type, name, body.ldap_group_dn or None)
    if group_type == LDAP and await groups.find(LDAP, ref.key) is None:
        await who.identity.check_ldap_group(body.ldap_group_dn)
    return await groups.ensure(ref)


@router.post("/projects/{project_name_or_id}/members", status_code=201, response_model=None)
async def add_member(
    request: Request, response: Response, project_name_or_id: str, body: MemberReq, who: CallerDep
) -> None:
    project, role = await visible_project(who, project_name_or_id)
    _manage(who, role, project, "adding members")
    if (body.member_user is None) == (body.member_group is None):
        raise ApiError(400, "send exactly one of member_user (a user) and member_group (a user group)")
    if body.member_group is not None:
        try:
            group = await _group_of(who, body.member_group)
            member_id = await who.identity.groups.add_to_project(project, group, ROLE_NAMES[body.role_id])
        except IdentityError as exc:
            raise ApiError.of(exc) from None
        await who.audit("create", "project_member", f"{project.name}:group:{group.name}", project.name)
        response.headers["Location"] = f"{request.url.path}/{member_id}"
        return
    member_user = body.member_user or MemberUser()
    username = member_user.username
    if username is None and member_user.user_id is not None:
        try:
            username = (await who.identity.store.user_by_id(member_user.user_id)).username
        except IdentityError as exc:
            raise ApiError.of(exc) from None
    if not username:
        raise ApiError(400, "member_user needs a username or a user_id")
    try:
        member_id = await who.identity.store.add_member(project, username, ROLE_NAMES[body.role_id])
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("create", "project_member", f"{project.name}:{username}", project.name)
    response.headers["Location"] = f"{request.url.path}/{member_id}"


@router.get("/projects/{project_name_or_id}/members/{mid}", response_model=MemberOut)
async def get_member(project_name_or_id: str, mid: Id, who: CallerDep) -> MemberOut:
    project, role = await visible_project(who, project_name_or_id)
    if not can_see_members(role, who.subject.sysadmin):
        raise ApiError(403, f"reading members of {project.name!r} needs the guest role or above")
    try:
        return _member(await who.identity.store.member(project, mid))
    except IdentityError as exc:
        raise ApiError.of(exc) from None


@router.put("/projects/{project_name_or_id}/members/{mid}", response_model=None)
async def update_member(project_name_or_id: str, mid: Id, body: RoleReq, who: CallerDep) -> None:
    project, role = await visible_project(who, project_name_or_id)
    _manage(who, role, project, "changing roles")
    new_role = ROLE_NAMES[body.role_id]
    try:
        before = await who.identity.store.member(project, mid)
        await who.identity.store.set_member_role(project, mid, new_role)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "project_member", f"{project.name}:{_entity(before)}", project.name,
                    detail=f"role {before['role']} -> {new_role}")


@router.delete("/projects/{project_name_or_id}/members/{mid}", response_model=None)
async def delete_member(project_name_or_id: str, mid: Id, who: CallerDep) -> None:
    project, role = await visible_project(who, project_name_or_id)
    _manage(who, role, project, "removing members")
    try:
        member = await who.identity.store.remove_member(project, mid)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("delete", "project_member", f"{project.name}:{_entity(member)}", project.name)


@router.get("/projects/{project_name}/logs", response_model=list[AuditLogItem])
async def project_logs(
    request: Request, response: Response, project_name: str, who: CallerDep, page: PageDep
) -> list[AuditLogItem]:
    project, role = await visible_project(who, project_name)
    if not can_see_members(role, who.subject.sysadmin):
        raise ApiError(403, f"reading the logs of {project.name!r} needs the guest role or above")
    entries, total = await who.identity.audit.query(page.offset, page.page_size, project=project.name)
    paginate(request, response, page, total)
    return audit_items(entries)
