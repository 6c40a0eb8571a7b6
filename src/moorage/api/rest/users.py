"""``/users``, ``/users/current`` and ``/systeminfo``."""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import ApiError, Caller, CallerDep, Id, PageDep, paginate
from moorage.api.rest.deps import GuardDep
from moorage.auth.identity import IdentityError, User

router = APIRouter(tags=["user"])


class UserOut(BaseModel):
    user_id: int
    username: str
    email: str | None
    realname: str | None
    comment: str | None
    sysadmin_flag: bool
    creation_time: datetime
    update_time: datetime


class UserCreationReq(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=128)
    email: str | None = Field(default=None, max_length=255)
    realname: str | None = Field(default=None, max_length=255)
    comment: str | None = Field(default=None, max_length=1000)


class UserProfile(BaseModel):
    email: str | None = Field(default=None, max_length=255)
    realname: str | None = Field(default=None, max_length=255)
    comment: str | None = Field(default=None, max_length=1000)


class PasswordReq(BaseModel):
    old_password: str | None = Field(default=None, max_length=128)
    new_password: str = Field(min_length=1, max_length=128)


class UserSearchItem(BaseModel):
    """Harbor's ``UserSearchRespItem``: what a project admin needs to add a member, nothing more."""

    user_id: int
    username: str


class SysAdminFlag(BaseModel):
    sysadmin_flag: bool


class SystemInfo(BaseModel):
    auth_mode: str
    harbor_version: str
    moorage_version: str
    self_registration: bool
    project_creation_restriction: str
    read_only: bool
    has_ca_root: bool


def _out(user: User) -> UserOut:
    return UserOut(
        user_id=user.id, username=user.username, email=user.email, realname=user.realname, comment=user.comment,
        sysadmin_flag=user.sysadmin, creation_time=user.created_at, update_time=user.updated_at,
    )


def _self_or_admin(who: Caller, user_id: int, what: str) -> None:
    who.require_login()
    if not who.subject.sysadmin and who.subject.user_id != user_id:
        raise ApiError(403, f"{what} of another user needs the system administrator role")


async def _user(who: Caller, user_id: Id) -> User:
    try:
        return await who.identity.store.user_by_id(user_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None


@router.get("/systeminfo", response_model=SystemInfo, tags=["systeminfo"])
async def systeminfo(who: CallerDep, guard: GuardDep) -> SystemInfo:
    return SystemInfo(
        auth_mode="db_auth", harbor_version="v2.0-compatible", moorage_version=version("moorage"), self_registration=False,
        project_creation_restriction="everyone",
        read_only=guard.read_only, has_ca_root=False,
    )


@router.get("/users/current", response_model=UserOut)
async def current_user(who: CallerDep) -> UserOut:
    who.require_login()
    if who.subject.user_id is None:
        raise ApiError(403, f"{who.subject.name!r} is a robot account, not a user; /users/current is for users")
    return _out(await _user(who, who.subject.user_id))


@router.get("/users/search", response_model=list[UserSearchItem])
async def search_users(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    username: Annotated[str, Query(min_length=1, max_length=255, description="part of the user name")],
) -> list[UserSearchItem]:
    """Users whose name contains ``username`` (any logged-in caller, as in Harbor: adding a member needs it).

    Declared before ``/users/{user_id}``, which used to catch ``search`` and answer 400.
    """
    who.require_login()
    found, total = await who.identity.store.list_users(page.offset, page.page_size, username)
    paginate(request, response, page, total)
    return [UserSearchItem(user_id=user.id, username=user.username) for user in found]


@router.get("/users", response_model=list[UserOut])
async def list_users(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    username: Annotated[str | None, Query(max_length=255)] = None,
) -> list[UserOut]:
    who.require_admin("listing users")
    found, total = await who.identity.store.list_users(page.offset, page.page_size, username)
    paginate(request, response, page, total)
    return [_out(user) for user in found]


@router.post("/users", status_code=201, response_model=None)
async def create_user(request: Request, response: Response, body: UserCreationReq, who: CallerDep) -> None:
    who.require_admin("creating users")
    try:
        user = await who.identity.store.create_user(
            body.username, body.password, email=body.email, realname=body.realname, comment=body.comment
        )
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("create", "user", user.username)
    response.headers["Location"] = f"{request.url.path}/{user.id}"


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: Id, who: CallerDep) -> UserOut:
    _self_or_admin(who, user_id, "reading the profile")
    return _out(await _user(who, user_id))


@router.put("/users/{user_id}", response_model=None)
async def update_user(user_id: Id, body: UserProfile, who: CallerDep) -> None:
    _self_or_admin(who, user_id, "changing the profile")
    user = await _user(who, user_id)
    await who.identity.store.update_user(user_id, **body.model_dump(exclude_none=True))
    await who.audit("update", "user", user.username)


@router.delete("/users/{user_id}", response_model=None)
async def delete_user(user_id: Id, who: CallerDep) -> None:
    who.require_admin("deleting users")
    try:
        user = await who.identity.store.delete_user(user_id)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("delete", "user", user.username)


@router.put("/users/{user_id}/password", response_model=None)
async def change_password(user_id: Id, body: PasswordReq, who: CallerDep) -> None:
    """Users change their own password with ``old_password``; an admin resets another's without it."""
    _self_or_admin(who, user_id, "changing the password")
    user = await _user(who, user_id)
    own = who.subject.user_id == user_id
    if own and body.old_password is None:
        raise ApiError(400, "send old_password (your current password) with new_password")
    try:
        await who.identity.store.set_password(user_id, body.new_password, body.old_password if own else None)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "user", f"{user.username}:password")


@router.put("/users/{user_id}/sysadmin", response_model=None)
async def set_sysadmin(user_id: Id, body: SysAdminFlag, who: CallerDep) -> None:
    who.require_admin("granting or revoking the administrator role")
    user = await _user(who, user_id)
    if user.username == "admin" and not body.sysadmin_flag:
        raise ApiError(403, "the built-in 'admin' keeps the administrator role")
    await who.identity.store.update_user(user_id, sysadmin=body.sysadmin_flag)
    await who.audit("update", "user", f"{user.username}:sysadmin={body.sysadmin_flag}")
