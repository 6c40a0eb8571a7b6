"""Robot accounts (Harbor's naming): ``robot$<name>`` system-wide, ``robot$<project>+<name>`` per project.

A robot has explicit permissions per project (``*`` for every project, system robots only),
an optional expiry, and a secret that is returned once at creation or refresh and stored only
as an argon2 hash. Disabled or expired robots cannot log in and their refresh tokens stop
working (the token carries a fingerprint of the secret hash and the robot is re-read).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from moorage.auth.identity import IdentityError, Project, Subject, fingerprint_of, new_uid, utcnow
from moorage.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    generate_secret,
    hash_secret_async,
    recently_verified,
    verify_secret_async,
)
from moorage.db.identity_tables import projects, robots
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.registry.names import InvalidNameError, check_project, check_robot

__all__ = ["Robot", "RobotStore", "parse_permissions"]

PREFIX = "robot$"
#: Harbor's (resource, action) pairs that map to a registry action.
_ACTION_OF = {
    ("repository", "pull"): "pull",
    ("repository", "push"): "push",
    ("repository", "delete"): "delete",
    ("artifact", "delete"): "delete",
}


@dataclass(frozen=True, slots=True)
class Robot:
    id: int
    name: str
    description: str | None
    level: str
    project_id: int | None
    permissions: dict[str, frozenset[str]]
    disabled: bool
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret_hash: str
    uid: str = ""
    generation: int = 0

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    def harbor_permissions(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": "project",
                "namespace": namespace,
                "access": [{"resource": "repository", "action": action} for action in sorted(actions)],
            }
            for namespace, actions in sorted(self.permissions.items())
        ]


def parse_permissions(raw: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """Harbor's ``permissions`` list → ``{namespace: actions}``; unknown actions are refused by name."""
    out: dict[str, set[str]] = {}
    for entry in raw:
        namespace = str(entry.get("namespace", ""))
        if not namespace:
            raise IdentityError("invalid", "every permission needs a 'namespace' (a project name, or '*')")
        if namespace != "*":
            try:
                check_project(namespace)
            except InvalidNameError as exc:
                raise IdentityError("invalid", f"permission namespace: {exc.message}") from None
        for access in entry.get("access") or []:
            key = (str(access.get("resource", "repository")), str(access.get("action", "")))
            action = _ACTION_OF.get(key)
            if action is None:
                raise IdentityError(
                    "invalid",
                    f"permission {key[0]}:{key[1]} is not supported; use repository:pull, repository:push "
                    "or repository:delete (artifact:delete)",
                )
            out.setdefault(namespace, set()).add(action)
    return {namespace: frozenset(actions) for namespace, actions in out.items()}


def _robot(row: Any) -> Robot:
    perms = {namespace: frozenset(actions) for namespace, actions in json.loads(row.permissions).items()}
    return Robot(
        row.id, row.name, row.description, row.level, row.project_id, perms, bool(row.disabled),
        None if row.expires_at is None else aware(row.expires_at), aware(row.created_at), aware(row.updated_at),
        row.secret_hash, row.uid, int(row.generation),
    )


class RobotStore:
    def __init__(self, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self.db = db
        #: Called after every change of a robot (drops this node's cache of accounts).
        self.on_change = on_change or (lambda: None)

    async def create(
        self, *, name: str, level: str, project: Project | None, permissions: dict[str, frozenset[str]],
        description: str | None, duration_days: int, disabled: bool = False,
    ) -> tuple[Robot, str]:
        """Create a robot; returns it with its secret (the only time the secret is available)."""
        try:
            check_robot(name)
        except InvalidNameError as exc:
            raise IdentityError("invalid", exc.message) from None
        if level == "project":
            if project is None:
                raise IdentityError("invalid", "a project robot needs its project as the permission's namespace")
            if set(permissions) != {project.name}:
                raise IdentityError(
                    "invalid",
                    f"a project robot may only hold permissions on its own project {project.name!r}; "
                    "create a system robot (level 'system') for several projects",
                )
            full = f"{PREFIX}{project.name}+{name}"
        elif level == "system":
            full = f"{PREFIX}{name}"
        else:
            raise IdentityError("invalid", f"level {level!r} is unknown; use 'system' or 'project'")
        if duration_days == 0 or duration_days < -1:
            raise IdentityError("invalid", "duration is a number of days, or -1 for a robot that never expires")
        now = utcnow()
        expires = None if duration_days == -1 else now + timedelta(days=duration_days)
        secret = generate_secret()
        secret_hash = await hash_secret_async(secret)  # before the write lock, off the event loop
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(robots).values(
                        name=full, description=description, level=level,
                        project_id=project.id if project is not None else None, secret_hash=secret_hash,
                        permissions=json.dumps({ns: sorted(a) for ns, a in permissions.items()}),
                        disabled=disabled, expires_at=expires, uid=new_uid(), created_at=now, updated_at=now,
                    )
                )
        except IntegrityError:
            raise IdentityError("conflict", f"robot account {full!r} already exists; choose another name") from None
        robot = await self.by_name(full)
        if robot is None:  # deleted by a concurrent request between the insert and this read
            raise IdentityError("not_found", f"robot account {full!r} was deleted while being created; create it again")
        return robot, secret

    async def by_name(self, full_name: str) -> Robot | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(robots).where(robots.c.name == full_name))).first()
        return None if row is None else _robot(row)

    async def by_uid(self, uid: str) -> Robot | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(robots).where(robots.c.uid == uid))).first()
        return None if row is None else _robot(row)

    async def get(self, robot_id: int) -> Robot:
        async with self.db.read() as conn:
            row = (await conn.execute(select(robots).where(robots.c.id == robot_id))).first()
        if row is None:
            raise IdentityError("not_found", f"robot {robot_id} does not exist; list robots with GET /api/v2.0/robots")
        return _robot(row)

    async def list(self, offset: int, limit: int, project_id: int | None = None) -> tuple[list[Robot], int]:
        query = select(robots)
        if project_id is not None:
            query = query.where(robots.c.project_id == project_id)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await conn.execute(query.order_by(robots.c.id).offset(offset).limit(limit))).all()
        return [_robot(row) for row in rows], int(total)

    async def all_of_project(self, project_id: int) -> builtins.list[Robot]:
        """Every robot of a project (deleting the project deletes them: the audit log names each)."""
        async with self.db.read() as conn:
            rows = (await conn.execute(select(robots).where(robots.c.project_id == project_id)
                                       .order_by(robots.c.id))).all()
        return [_robot(row) for row in rows]

    async def update(
        self, robot: Robot, *, disabled: bool | None, description: str | None,
        permissions: dict[str, frozenset[str]] | None,
    ) -> Robot:
        values: dict[str, Any] = {"updated_at": utcnow()}
        if disabled is not None:
            values["disabled"] = disabled
            if disabled:  # ends its tokens for good: enabling it again does not revive them
                values["generation"] = robots.c.generation + 1
        if description is not None:
            values["description"] = description
        if permissions is not None:
            if robot.level == "project" and len(permissions) != 1:
                raise IdentityError("invalid", "a project robot holds permissions on its own project only")
            if robot.level == "project" and robot.project_id is not None:
                async with self.db.read() as conn:
                    own = (await conn.execute(select(projects.c.name).where(projects.c.id == robot.project_id))).scalar()
                if set(permissions) != {own}:
                    raise IdentityError("invalid", f"a project robot may only hold permissions on {own!r}")
            values["permissions"] = json.dumps({ns: sorted(a) for ns, a in permissions.items()})
        async with self.db.write() as conn:
            await conn.execute(update(robots).where(robots.c.id == robot.id).values(**values))
        self.on_change()
        return await self.get(robot.id)

    async def refresh_secret(self, robot: Robot, secret: str | None) -> str:
        """Replace the secret (a given one, or a generated one) and return it.

        The generation is bumped with it, so every token issued with the old secret (access and
        refresh) stops working on every node.
        """
        if secret is not None:
            try:
                check_password_policy(secret)
            except PasswordPolicyError as exc:
                raise IdentityError("invalid", f"the new secret is too weak: {exc}") from None
        secret = secret or generate_secret()
        secret_hash = await hash_secret_async(secret)
        async with self.db.write() as conn:
            await conn.execute(
                update(robots).where(robots.c.id == robot.id).values(
                    secret_hash=secret_hash, generation=robots.c.generation + 1, updated_at=utcnow()
                )
            )
        self.on_change()
        return secret

    async def delete(self, robot: Robot) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(robots).where(robots.c.id == robot.id))
        self.on_change()

    async def check(self, full_name: str, secret: str, *, cached_only: bool = False) -> Subject | None:
        """The robot's subject when the secret is right and the robot is enabled and not expired.

        ``cached_only``: as :meth:`IdentityStore.check_password` (``None`` means "not known to be right").
        """
        robot = await self.by_name(full_name)
        if cached_only:
            ok = robot is not None and recently_verified(robot.secret_hash, secret)
        else:
            ok = await verify_secret_async(robot.secret_hash if robot is not None else None, secret)
        if not ok or robot is None:
            return None
        if robot.disabled:
            raise IdentityError(
                "forbidden", f"robot account {full_name!r} is disabled; ask an administrator to enable it"
            )
        if robot.expired:
            raise IdentityError(
                "forbidden",
                f"robot account {full_name!r} expired at {robot.expires_at:%Y-%m-%d %H:%M} UTC; "
                "ask an administrator to create a new one",
            )
        return self.subject(robot)

    @staticmethod
    def subject(robot: Robot) -> Subject:
        return Subject(
            "robot", robot.name, robot_id=robot.id, robot_access=dict(robot.permissions),
            fingerprint=fingerprint_of(robot.secret_hash), uid=robot.uid, generation=robot.generation,
        )
