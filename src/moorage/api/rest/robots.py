"""``/robots``: Harbor's robot account API v2 (system and project robots, secret shown once)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import (
    ApiError,
    AsciiDigits,
    Caller,
    CallerDep,
    Id,
    PageDep,
    paginate,
    visible_project,
)
from moorage.auth.identity import IdentityError, Project
from moorage.auth.robots import Robot, parse_permissions
from moorage.auth.roles import can_manage_robots

router = APIRouter(tags=["robot"])


class Access(BaseModel):
    resource: str = Field(default="repository", max_length=64)
    action: str = Field(max_length=64)


class Permission(BaseModel):
    kind: str = Field(default="project", max_length=32)
    namespace: str = Field(min_length=1, max_length=255)
    access: list[Access]


class RobotCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    level: str = Field(pattern="^(system|project)$")
    disable: bool = False
    duration: int = Field(default=-1, ge=-1, le=36500, description="days; -1 never expires")
    permissions: list[Permission] = Field(min_length=1)


class RobotUpdate(BaseModel):
    description: str | None = Field(default=None, max_length=1000)
    disable: bool | None = None
    permissions: list[Permission] | None = None


class RobotSec(BaseModel):
    secret: str | None = Field(default=None, max_length=128)


class RobotCreated(BaseModel):
    id: int
    name: str
    secret: str
    creation_time: datetime
    expires_at: int


class RobotOut(BaseModel):
    id: int
    name: str
    description: str | None
    level: str
    disable: bool
    expires_at: int
    creation_time: datetime
    update_time: datetime
    permissions: list[dict[str, Any]]
    editable: bool


def _expires(robot: Robot) -> int:
    return -1 if robot.expires_at is None else int(robot.expires_at.timestamp())


def _out(robot: Robot) -> RobotOut:
    return RobotOut(
        id=robot.id, name=robot.name, description=robot.description, level=robot.level, disable=robot.disabled,
        expires_at=_expires(robot), creation_time=robot.created_at, update_time=robot.updated_at,
        permissions=robot.harbor_permissions(), editable=True,
    )


def _permissions(raw: list[Permission]) -> dict[str, frozenset[str]]:
    try:
        return parse_permissions([p.model_dump() for p in raw])
    except IdentityError as exc:
        raise ApiError.of(exc) from None


async def _may_manage(who: Caller, level: str, project: Project | None) -> None:
    who.require_login()
    if who.subject.sysadmin:
        return
    if level == "system" or project is None:
        raise ApiError(403, "system robot accounts are managed by system administrators only")
    role = await who.identity.store.role_of(who.subject, project)
    if not can_manage_robots(role, False):
        raise ApiError(
            403, f"managing robot accounts of {project.name!r} needs the maintainer or projectAdmin role; "
            f"{who.subject.name!r} has {role or 'no role'}",
        )


async def _robot(who: Caller, robot_id: Id) -> tuple[Robot, Project | None]:
    """The robot once the caller may manage it; a robot of a project the caller may not see is
    answered as a missing one (a 403 would name that private project)."""
    who.require_login()
    missing = ApiError(404, f"robot {robot_id} does not exist; list robots with GET /api/v2.0/robots")
    try:
        robot = await who.identity.robots.get(robot_id)
    except IdentityError:
        raise missing from None
    project = None
    if robot.project_id is not None:
        rights = await who.identity.policy.rights(who.subject, robot.project_id)
        if not rights.visible:
            raise missing
        project = rights.project
    await _may_manage(who, robot.level, project)
    return robot, project


@router.get("/robots", response_model=list[RobotOut])
async def list_robots(
    request: Request, response: Response, who: CallerDep, page: PageDep,
    project_id: Annotated[int | None, Query(ge=1, le=2**31 - 1), AsciiDigits] = None,
) -> list[RobotOut]:
    """All robots for admins; with ``project_id`` the robots of that project (maintainer or above)."""
    who.require_login()
    project = None
    if project_id is not None:
        project, _ = await visible_project(who, str(project_id))
    await _may_manage(who, "project" if project else "system", project)
    found, total = await who.identity.robots.list(page.offset, page.page_size, project_id)
    paginate(request, response, page, total)
    return [_out(robot) for robot in found]


@router.post("/robots", status_code=201, response_model=RobotCreated)
async def create_robot(request: Request, response: Response, body: RobotCreate, who: CallerDep) -> RobotCreated:
    """The secret is in this answer only; it is stored hashed."""
    # Authorization before existence checks: otherwise the 404/403 difference tells anonymous
    # callers and non-members which private projects exist.
    who.require_login()
    permissions = _permissions(body.permissions)
    project = None
    if body.level == "project":
        if len(permissions) != 1 or "*" in permissions:
            raise ApiError(400, "a project robot needs exactly one permission entry whose namespace is its project")
        name = next(iter(permissions))
        rights = await who.identity.policy.rights(who.subject, name)
        denial = who.identity.policy.project_denial(who.subject, rights)
        if denial is not None or rights.project is None:
            raise ApiError(404, denial.message if denial is not None else who.identity.policy.hidden_message(name))
        project = rights.project
    else:
        await _may_manage(who, "system", None)
        for namespace in permissions:
            if namespace != "*" and await who.identity.store.project(namespace) is None:
                raise ApiError(404, f"project {namespace!r} does not exist; create it first or use '*'")
    await _may_manage(who, body.level, project)
    try:
        robot, secret = await who.identity.robots.create(
            name=body.name, level=body.level, project=project, permissions=permissions,
            description=body.description, duration_days=body.duration, disabled=body.disable,
        )
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("create", "robot", robot.name, project.name if project else None)
    response.headers["Location"] = f"{request.url.path}/{robot.id}"
    return RobotCreated(id=robot.id, name=robot.name, secret=secret, creation_time=robot.created_at,
                        expires_at=_expires(robot))


@router.get("/robots/{robot_id}", response_model=RobotOut)
async def get_robot(robot_id: Id, who: CallerDep) -> RobotOut:
    robot, _ = await _robot(who, robot_id)
    return _out(robot)


@router.put("/robots/{robot_id}", response_model=None)
async def update_robot(robot_id: Id, body: RobotUpdate, who: CallerDep) -> None:
    robot, project = await _robot(who, robot_id)
    permissions = None if body.permissions is None else _permissions(body.permissions)
    try:
        after = await who.identity.robots.update(robot, disabled=body.disable, description=body.description,
                                                 permissions=permissions)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "robot", robot.name, project.name if project else None,
                    detail=robot_changes(robot, after))


def _grants(robot: Robot) -> str:
    return "; ".join(f"{ns}: {','.join(sorted(a))}" for ns, a in sorted(robot.permissions.items())) or "none"


def robot_changes(before: Robot, after: Robot) -> str:
    """What an update changed, e.g. ``disabled false -> true`` or ``permissions p: pull -> p: pull,push``."""
    changes = []
    if before.disabled != after.disabled:
        changes.append(f"disabled {str(before.disabled).lower()} -> {str(after.disabled).lower()}")
    if before.permissions != after.permissions:
        changes.append(f"permissions {_grants(before)} -> {_grants(after)}")
    if before.description != after.description:
        changes.append("description changed")
    return "; ".join(changes) or "no change"


@router.patch("/robots/{robot_id}", response_model=RobotSec)
async def refresh_secret(robot_id: Id, body: RobotSec, who: CallerDep) -> RobotSec:
    """Harbor's "refresh secret": a given secret, or a generated one returned here once."""
    robot, project = await _robot(who, robot_id)
    try:
        secret = await who.identity.robots.refresh_secret(robot, body.secret)
    except IdentityError as exc:
        raise ApiError.of(exc) from None
    await who.audit("update", "robot", robot.name, project.name if project else None, detail="secret refreshed")
    return RobotSec(secret=secret)


@router.delete("/robots/{robot_id}", response_model=None)
async def delete_robot(robot_id: Id, who: CallerDep) -> None:
    robot, project = await _robot(who, robot_id)
    await who.identity.robots.delete(robot)
    await who.audit("delete", "robot", robot.name, project.name if project else None)
