"""``/usergroups``: Harbor's user groups (LDAP by DN, local, OIDC), see moorage.auth.groups.

Harbor's shapes (``UserGroup``: ``id``, ``group_name``, ``group_type``, ``ldap_group_dn``);
system administrators manage groups, any user may search them (to add one to a project, as
``/users/search``). Members of local groups (type 2) are managed here too
(``/usergroups/{id}/members``, not in Harbor, which has no local groups); members of LDAP and OIDC
groups are what the source says at each login.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, CallerDep, Id, PageDep, paginate
from moorage.auth.groups import LDAP, Group
from moorage.auth.identity import IdentityError

router = APIRouter(tags=["usergroup"])


class UserGroup(BaseModel):
    id: int | None = None
    group_name: str | None = Field(default=None, max_length=255)
    group_type: int | None = Field(default=None, ge=1, le=3, description="1 LDAP, 2 local (Harbor's HTTP), 3 OIDC")
    ldap_group_dn: str | None = Field(default=None, max_length=512)


class UserGroupSearchItem(BaseModel):
    id: int
    group_name: str
    group_type: int


class GroupMemberReq(BaseModel):
    user_id: int = Field(ge=1, le=2_147_483_647)


class GroupMemberOut(BaseModel):
    user_id: int


def group_out(group: Group) -> UserGroup:
    return UserGroup(id=group.id, group_name=group.name, group_type=group.group_type,
                     ldap_group_dn=group.ldap_group_dn or "")


@router.get("/usergroups", response_model=list[UserGroup])
async def list_groups(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    group_name: Annotated[str | None, Query(max_length=255)] = None,
    ldap_group_dn: Annotated[str | None, Query(max_length=512)] = None,
) -> list[UserGroup]:
    who.require_admin("listing user groups")
    try:
        groups, total = await who.identity.groups.page(page.offset, page.page_size, name=group_name,
                                                        ldap_group_dn=ldap_group_dn)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    paginate(request, response, page, total)
    return [group_out(group) for group in groups]


@router.get("/usergroups/search", response_model=list[UserGroupSearchItem])
async def search_groups(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    groupname: Annotated[str, Query(min_length=1, max_length=255)],
) -> list[UserGroupSearchItem]:
    who.require_login()
    groups, total = await who.identity.groups.page(page.offset, page.page_size, name=groupname)
    paginate(request, response, page, total)
    return [UserGroupSearchItem(id=group.id, group_name=group.name, group_type=group.group_type) for group in groups]


@router.post("/usergroups", status_code=201, response_model=None)
async def create_group(request: Request, response: Response, body: UserGroup, who: CallerDep) -> None:
    """LDAP groups (type 1) need ``ldap_group_dn``; ``group_name`` defaults to its first RDN's value."""
    who.require_admin("creating user groups")
    group_type = body.group_type or 0
    name = body.group_name or _first_rdn(body.ldap_group_dn)
    if not name:
        raise ApiError(400, "group_name is required (for an LDAP group it may be left out when ldap_group_dn is given)")
    try:
        if group_type == LDAP:
            await who.identity.check_ldap_group(body.ldap_group_dn)
        group = await who.identity.groups.create(name, group_type, body.ldap_group_dn or None)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("create", "user_group", group.name, detail=group.ldap_group_dn)
    response.headers["Location"] = f"{request.url.path}/{group.id}"


@router.get("/usergroups/{group_id}", response_model=UserGroup)
async def get_group(group_id: Id, who: CallerDep) -> UserGroup:
    who.require_admin("reading user groups")
    try:
        return group_out(await who.identity.groups.get(group_id))
    except IdentityError as exc:
        raise ApiError.of(exc) from None


@router.put("/usergroups/{group_id}", response_model=None)
async def update_group(group_id: Id, body: UserGroup, who: CallerDep) -> None:
    """Only the name changes (Harbor's rule); an LDAP group stays bound to its DN."""
    who.require_admin("changing user groups")
    if not body.group_name:
        raise ApiError(400, "group_name is required: it is the only field a PUT changes")
    try:
        group = await who.identity.groups.rename(group_id, body.group_name)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "user_group", group.name)


@router.delete("/usergroups/{group_id}", response_model=None)
async def delete_group(group_id: Id, who: CallerDep) -> None:
    """Deletes the group with its memberships, in projects too (the rights it gave end at once)."""
    who.require_admin("deleting user groups")
    try:
        group = await who.identity.groups.delete(group_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("delete", "user_group", group.name)


@router.get("/usergroups/{group_id}/members", response_model=list[GroupMemberOut])
async def group_members(group_id: Id, who: CallerDep) -> list[GroupMemberOut]:
    who.require_admin("reading group members")
    try:
        await who.identity.groups.get(group_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    return [GroupMemberOut(user_id=user_id) for user_id in await who.identity.groups.member_ids(group_id)]


@router.post("/usergroups/{group_id}/members", status_code=201, response_model=None)
async def add_group_member(group_id: Id, body: GroupMemberReq, who: CallerDep) -> None:
    """Put a user in a local group (type 2)."""
    who.require_admin("changing group members")
    try:
        user = await who.identity.store.user_by_id(body.user_id)
        await who.identity.groups.add_user(group_id, user.id)
        group = await who.identity.groups.get(group_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("create", "user_group_member", f"{group.name}:{user.username}")


@router.delete("/usergroups/{group_id}/members/{user_id}", response_model=None)
async def remove_group_member(group_id: Id, user_id: Id, who: CallerDep) -> None:
    who.require_admin("changing group members")
    try:
        user = await who.identity.store.user_by_id(user_id)
        await who.identity.groups.remove_user(group_id, user.id)
        group = await who.identity.groups.get(group_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("delete", "user_group_member", f"{group.name}:{user.username}")


@router.get("/ldap/groups/search", response_model=list[UserGroup])
async def search_ldap_groups(
    who: CallerDep,
    groupname: Annotated[str | None, Query(max_length=255)] = None,
    groupdn: Annotated[str | None, Query(max_length=512)] = None,
) -> list[UserGroup]:
    """Harbor's LDAP group search: groups of the directory by exact name or DN, with the ``id`` of
    the Moorage group that maps it (0 when none does yet)."""
    who.require_admin("searching the directory's groups")
    if not groupname and not groupdn:
        raise ApiError(400, "send groupname or groupdn")
    try:
        refs = await who.identity.search_ldap_groups(groupname, groupdn)
        out = []
        for ref in refs:
            known = await who.identity.groups.find(LDAP, ref.key)
            out.append(UserGroup(id=known.id if known else 0, group_name=ref.name, group_type=LDAP,
                                 ldap_group_dn=ref.dn))
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    return out


def _first_rdn(dn: str | None) -> str:
    """``cn=dev,ou=groups,dc=x`` → ``dev`` (Harbor names an LDAP group after its DN's first value)."""
    if not dn:
        return ""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].strip() if "=" in first else ""
