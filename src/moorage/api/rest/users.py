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
from moorage.auth.passwords import generate_secret

router = APIRouter(tags=["user"])


class OidcUserMeta(BaseModel):
    """Harbor's ``OIDCUserInfo``: the provider account behind a user and (to its owner) the CLI secret."""

    id: int
    user_id: int
    subiss: str
    secret: str
    creation_time: datetime
    update_time: datetime


class UserOut(BaseModel):
    user_id: int
    username: str
    email: str | None
    realname: str | None
    comment: str | None
    sysadmin_flag: bool
    #: A Moorage addition: a disabled user may not log in and its credentials are refused.
    disabled: bool = False
    creation_time: datetime
    update_time: datetime
    #: OIDC users only (``/users/current``): Harbor's shape, the secret for ``docker login``.
    oidc_user_meta: OidcUserMeta | None = None


class CliSecretReq(BaseModel):
    """Harbor's ``OIDCCliSecretReq``; Moorage generates one when ``secret`` is left out."""

    secret: str | None = Field(default=None, max_length=128)


class CliSecretOut(BaseModel):
    secret: str


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


class DisabledFlag(BaseModel):
    disabled: bool


class SystemInfo(BaseModel):
    auth_mode: str
    #: Set with OIDC (Harbor's field): the login page offers "Log in with <name>".
    oidc_provider_name: str | None = None
    harbor_version: str
    moorage_version: str
    self_registration: bool
    project_creation_restriction: str
    read_only: bool
    has_ca_root: bool


def _out(user: User) -> UserOut:
    return UserOut(
        user_id=user.id, username=user.username, email=user.email, realname=user.realname, comment=user.comment,
        sysadmin_flag=user.sysadmin, disabled=user.disabled, creation_time=user.created_at, update_time=user.updated_at,
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
    oidc = who.identity.oidc
    return SystemInfo(
        auth_mode="oidc_auth" if oidc is not None else "db_auth", oidc_provider_name=oidc.name if oidc else None,
        harbor_version="v2.0-compatible", moorage_version=version("moorage"), self_registration=False,
        project_creation_restriction="everyone",
        read_only=guard.read_only, has_ca_root=False,
    )


@router.get("/users/current", response_model=UserOut)
async def current_user(who: CallerDep) -> UserOut:
    who.require_login()
    if who.subject.user_id is None:
        raise ApiError(403, f"{who.subject.name!r} is a robot account, not a user; /users/current is for users")
    out = _out(await _user(who, who.subject.user_id))
    oidc = who.identity.oidc
    identity = await oidc.identities.of_user(out.user_id) if oidc is not None else None
    if oidc is not None and identity is not None:
        out.oidc_user_meta = OidcUserMeta(
            id=identity.user_id, user_id=identity.user_id, subiss=identity.subject + identity.issuer,
            secret=await oidc.identities.cli_secret(identity.user_id) or "", creation_time=identity.created_at,
            update_time=identity.updated_at,
        )
    return out


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
    if who.identity.oidc is not None and await who.identity.oidc.identities.is_oidc_user(user.username):
        raise ApiError(412, f"{user.username!r} logs in through the identity provider and has no password here; "
                            f"for the command line set a CLI secret (PUT /api/v2.0/users/{user_id}/cli_secret)")
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


@router.put("/users/{user_id}/cli_secret", response_model=CliSecretOut)
async def set_cli_secret(user_id: Id, body: CliSecretReq, who: CallerDep) -> CliSecretOut:
    """Harbor's path: an OIDC user's secret for ``docker``/``podman``/``skopeo login`` (self or admin).

    Replacing it ends the tokens issued under the old one. Without ``secret`` a random one is made.
    """
    _self_or_admin(who, user_id, "setting the CLI secret")
    user = await _user(who, user_id)
    oidc = who.identity.oidc
    if oidc is None:
        raise ApiError(412, "CLI secrets exist only with single sign-on (auth.oidc); local users log in with "
                            "their password")
    if await oidc.identities.of_user(user_id) is None:
        raise ApiError(412, f"{user.username!r} is a local user: only users who log in through the identity provider "
                            "have a CLI secret; local users log in with their password")
    secret = body.secret if body.secret is not None else generate_secret(32)
    try:
        await oidc.identities.set_cli_secret(user_id, secret)
    except IdentityError as exc:
        raise ApiError(400, exc.message) from None
    await who.audit("update", "user", f"{user.username}:cli_secret")
    return CliSecretOut(secret=secret)


@router.put("/users/{user_id}/disabled", response_model=None)
async def set_disabled(user_id: Id, body: DisabledFlag, who: CallerDep) -> None:
    """Disable (logins refused, every token and UI session ended on every node) or enable a user (a Moorage
    addition: Harbor can only delete). The built-in ``admin`` and the caller itself stay enabled."""
    who.require_admin("disabling or enabling users")
    if body.disabled and who.subject.user_id == user_id:
        raise ApiError(403, "you cannot disable your own account; ask another system administrator")
    try:
        user = await who.identity.store.set_disabled(user_id, body.disabled)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "user", f"{user.username}:disabled={body.disabled}")
