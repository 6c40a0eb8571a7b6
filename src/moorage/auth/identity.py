"""Users, projects, members and credential checks: the domain behind tokens and the REST API.

No HTTP types here: failures are :class:`IdentityError` with a ``kind`` (``not_found``,
``conflict``, ``invalid``, ``forbidden``) that each API layer renders its own way, and a
message that says what to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    generate_secret,
    hash_secret_async,
    recently_verified,
    verify_secret_async,
)
from moorage.auth.roles import ROLE_ACTIONS, strongest
from moorage.db.group_tables import user_groups
from moorage.db.identity_tables import member_rows_of, project_members, projects, users
from moorage.db.ownership import adopt_repositories
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.registry.names import InvalidNameError, check_project, check_username
from moorage.registry.quota import Limits, create_quota, reconcile

__all__ = ["IdentityError", "IdentityStore", "Project", "Subject", "User"]

log = structlog.get_logger("moorage.identity")


class IdentityError(Exception):
    """``kind``: not_found | conflict | invalid | forbidden | unauthorized | throttled."""

    def __init__(self, kind: str, message: str, *, detail: str | None = None) -> None:
        """``detail``: what the log and the audit row say when the client is told less (``message``)."""
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str | None
    realname: str | None
    comment: str | None
    sysadmin: bool
    password_hash: str
    created_at: datetime
    updated_at: datetime
    uid: str = ""
    generation: int = 0
    #: The identity source that owns the account: ``local``, ``ldap``, ``oidc`` (see moorage.auth.sources).
    source: str = "local"
    #: Refused at login and by the policy; its rows (memberships, audit) stay.
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public: bool
    owner_id: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Subject:
    """An authenticated caller: a user, a robot, or anonymous (``kind``).

    ``robot_access`` maps a project name (or ``*`` for every project) to the robot's actions.
    ``fingerprint`` is a stable digest of the credential (the password or secret hash), put in
    refresh tokens so a password change or secret refresh revokes them on every node. ``uid`` is
    the account's immutable id and ``generation`` its credential generation, which tokens carry.
    """

    kind: str
    name: str
    user_id: int | None = None
    robot_id: int | None = None
    sysadmin: bool = False
    robot_access: dict[str, frozenset[str]] = field(default_factory=dict)
    fingerprint: str = ""
    uid: str = ""
    generation: int = 0
    #: The identity source of a user's account (``local``, ``ldap``, ``oidc``: an OIDC user's password is
    #: its CLI secret); ``local`` for robots and anonymous.
    source: str = "local"

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Subject("anonymous", "anonymous")


def utcnow() -> datetime:
    return datetime.now(UTC)


def fingerprint_of(stored_hash: str) -> str:
    import hashlib

    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


def _user(row: Any) -> User:
    return User(
        row.id, row.username, row.email, row.realname, row.comment, bool(row.sysadmin), row.password_hash,
        aware(row.created_at), aware(row.updated_at), row.uid, int(row.generation), str(row.source), bool(row.disabled),
    )


#: The stored "password hash" of an account whose password another source checks: no argon2
#: hash, so no password ever matches it locally.
EXTERNAL_PASSWORD = "!external"


def new_uid() -> str:
    """A random account id, never reused (row ids may be, on SQLite)."""
    return uuid.uuid4().hex


def _project(row: Any) -> Project:
    return Project(row.id, row.name, bool(row.public), row.owner_id, aware(row.created_at), aware(row.updated_at))


def validate_project_name(name: str) -> None:
    try:
        check_project(name)
    except InvalidNameError as exc:
        raise IdentityError("invalid", exc.message) from None


class IdentityStore:
    """CRUD on users, projects and members, and the checks that turn credentials into a :class:`Subject`."""

    def __init__(self, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self.db = db
        #: Called after every change of a user, project or member (drops this node's rights cache).
        self.on_change = on_change or (lambda: None)

    # -- users ---------------------------------------------------------------------------
    async def bootstrap_admin(self, password: str | None) -> str | None:
        """Create ``admin`` at the first start; returns the generated password when none was configured."""
        async with self.db.read() as conn:
            exists = (await conn.execute(select(users.c.id).where(users.c.username == "admin"))).first()
        if exists is not None:
            return None
        generated = None
        if not password:
            password = generated = generate_secret(20)
        now = utcnow()
        password_hash = await hash_secret_async(password)  # before the write lock, off the event loop
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(users).values(
                        username="admin", email=None, realname="System administrator", comment=None,
                        password_hash=password_hash, sysadmin=True, uid=new_uid(), created_at=now, updated_at=now,
                    )
                )
        except IntegrityError:  # another node created it first
            return None
        return generated

    async def create_user(
        self, username: str, password: str, *, email: str | None = None, realname: str | None = None,
        comment: str | None = None, sysadmin: bool = False,
    ) -> User:
        try:
            check_username(username)
        except InvalidNameError as exc:
            raise IdentityError("invalid", exc.message) from None
        self._policy(password)
        now = utcnow()
        password_hash = await hash_secret_async(password)
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(users).values(
                        username=username, email=email, realname=realname, comment=comment,
                        password_hash=password_hash, sysadmin=sysadmin, uid=new_uid(), created_at=now, updated_at=now,
                    )
                )
        except IntegrityError:
            raise IdentityError("conflict", f"user {username!r} already exists; choose another name") from None
        user = await self.user_by_name(username)
        if user is None:  # deleted by a concurrent request between the insert and this read
            raise IdentityError("not_found", f"user {username!r} was deleted while being created; create it again")
        return user

    async def create_external_user(self, username: str, source: str, *, email: str | None = None,
                                   realname: str | None = None, sysadmin: bool = False) -> User:
        """The account of a user another source (LDAP, OIDC) vouched for, at their first login.

        It has no local password. ``conflict`` when the name is taken (by any source): the caller
        (:meth:`moorage.auth.sources.SourceChain.onboard`) applies the name-clash rule.
        """
        try:
            check_username(username)
        except InvalidNameError as exc:
            raise IdentityError("invalid", exc.message) from None
        now = utcnow()
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(users).values(
                        username=username, email=email, realname=realname, comment=None, source=source,
                        password_hash=EXTERNAL_PASSWORD, sysadmin=sysadmin, uid=new_uid(), created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise IdentityError("conflict", f"user {username!r} already exists") from None
        user = await self.user_by_name(username)
        if user is None:
            raise IdentityError("not_found", f"user {username!r} was deleted while being created; log in again")
        return user

    async def revoke(self, user_id: int) -> None:
        """End every token of the account at once (its generation moves on): the source that owns it
        says the user is gone or disabled there."""
        async with self.db.write() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(generation=users.c.generation + 1, updated_at=utcnow())
            )
        self.on_change()

    @staticmethod
    def _policy(password: str) -> None:
        try:
            check_password_policy(password)
        except PasswordPolicyError as exc:
            raise IdentityError("invalid", str(exc)) from None

    async def user_by_name(self, username: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return None if row is None else _user(row)

    async def user_by_uid(self, uid: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.uid == uid))).first()
        return None if row is None else _user(row)

    async def user_by_id(self, user_id: int) -> User:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise IdentityError("not_found", f"user {user_id} does not exist; list users with GET /api/v2.0/users")
        return _user(row)

    async def list_users(self, offset: int, limit: int, username: str | None = None) -> tuple[list[User], int]:
        query = select(users)
        count = select(func.count()).select_from(users)
        if username:
            query = query.where(users.c.username.contains(username, autoescape=True))
            count = count.where(users.c.username.contains(username, autoescape=True))
        async with self.db.read() as conn:
            total = (await conn.execute(count)).scalar_one()
            rows = (await conn.execute(query.order_by(users.c.id).offset(offset).limit(limit))).all()
        return [_user(row) for row in rows], int(total)

    async def update_user(self, user_id: int, **values: Any) -> User:
        allowed = {key: value for key, value in values.items() if key in ("email", "realname", "comment", "sysadmin")}
        await self.user_by_id(user_id)
        if allowed:
            async with self.db.write() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**allowed, updated_at=utcnow()))
            self.on_change()
        return await self.user_by_id(user_id)

    async def set_password(self, user_id: int, new_password: str, old_password: str | None) -> None:
        """Change a password; ``old_password`` is required unless an admin resets someone else's."""
        user = await self.user_by_id(user_id)
        if user.source != "local":
            raise IdentityError(
                "invalid", f"the password of {user.username!r} is kept by the {user.source} identity source; "
                "change it there",
            )
        if old_password is not None and not await verify_secret_async(user.password_hash, old_password):
            raise IdentityError("forbidden", "the old password is wrong; send the current password as old_password")
        self._policy(new_password)
        password_hash = await hash_secret_async(new_password)
        async with self.db.write() as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(
                    password_hash=password_hash, generation=users.c.generation + 1, updated_at=utcnow()
                )
            )
        self.on_change()

    async def set_disabled(self, user_id: int, disabled: bool) -> User:
        """Disable or enable a user. Disabling bumps the generation, so every token and UI session of the
        account ends on every node (the policy re-reads it); enabling does not bring those back."""
        user = await self.user_by_id(user_id)
        if user.username == "admin" and disabled:
            raise IdentityError("forbidden", "the built-in 'admin' cannot be disabled; it is the account that "
                                "enables others again")
        if user.disabled != disabled:
            values: dict[str, Any] = {"disabled": disabled, "updated_at": utcnow()}
            if disabled:
                values["generation"] = users.c.generation + 1
            async with self.db.write() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
            self.on_change()
        return await self.user_by_id(user_id)

    async def delete_user(self, user_id: int) -> User:
        user = await self.user_by_id(user_id)
        if user.username == "admin":
            raise IdentityError("forbidden", "the built-in 'admin' user cannot be deleted; disable others instead")
        async with self.db.write() as conn:
            await conn.execute(delete(users).where(users.c.id == user_id))
        self.on_change()
        return user

    async def check_password(self, username: str, password: str, *, cached_only: bool = False) -> Subject | None:
        """The user's subject when ``password`` is right, else ``None`` (throttling is the caller's).

        ``cached_only`` answers from the verification cache alone (``None`` means "not known to be
        right", not "wrong"): the caller then reserves a throttled attempt before the argon2 check.
        """
        user = await self.user_by_name(username)
        if cached_only:
            ok = user is not None and recently_verified(user.password_hash, password)
        else:
            ok = await verify_secret_async(user.password_hash if user is not None else None, password)
        if ok and user is not None and user.disabled:  # the right password: say why, it is not a guess
            raise IdentityError("forbidden", f"user {username!r} is disabled; ask a system administrator to enable it")
        return self.user_subject(user) if ok and user is not None else None

    @staticmethod
    def user_subject(user: User) -> Subject:
        return Subject("user", user.username, user_id=user.id, sysadmin=user.sysadmin,
                       fingerprint=fingerprint_of(user.password_hash), uid=user.uid, generation=user.generation,
                       source=user.source)

    # -- projects ------------------------------------------------------------------------
    async def create_project(self, name: str, public: bool, owner: Subject, limits: Limits | None = None,
                             within: Callable[[AsyncConnection, int], Awaitable[None]] | None = None) -> Project:
        """Create the project with its quota (``limits``, unlimited when ``None``) in one transaction;
        ``within`` adds to it in that transaction too (a proxy binding), so a refusal there leaves no
        project behind."""
        validate_project_name(name)
        now = utcnow()
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    insert(projects).values(
                        name=name, public=public, owner_id=owner.user_id, created_at=now, updated_at=now
                    )
                )
                project_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
                if owner.user_id is not None and project_id is not None:
                    await conn.execute(
                        insert(project_members).values(
                            project_id=project_id, user_id=owner.user_id, role="projectAdmin",
                            created_at=now, updated_at=now,
                        )
                    )
                if project_id is not None:
                    await create_quota(conn, int(project_id), limits or Limits())
                    # repositories pushed before the project existed (auth.mode: none), counted in its usage
                    await adopt_repositories(conn, int(project_id), name)
                    await reconcile(conn, int(project_id))
                if project_id is not None and within is not None:
                    await within(conn, int(project_id))
        except IntegrityError:
            raise IdentityError("conflict", f"project {name!r} already exists; choose another name") from None
        self.on_change()  # this node may have cached "no such project" a moment ago
        project = await self.project(name)
        if project is None:  # deleted by a concurrent request between the insert and this read
            raise IdentityError("not_found", f"project {name!r} was deleted while being created; create it again")
        return project

    async def project(self, name_or_id: str | int) -> Project | None:
        column = projects.c.id if isinstance(name_or_id, int) else projects.c.name
        async with self.db.read() as conn:
            row = (await conn.execute(select(projects).where(column == name_or_id))).first()
        return None if row is None else _project(row)

    async def list_projects(
        self, visible: ColumnElement[bool] | None, offset: int, limit: int, name: str | None = None,
        public: bool | None = None,
    ) -> tuple[list[Project], int]:
        """Projects where ``visible`` (the policy's condition for the caller; ``None``: all) holds."""
        query = select(projects)
        if visible is not None:
            query = query.where(visible)
        if name:
            query = query.where(projects.c.name.contains(name, autoescape=True))
        if public is not None:
            query = query.where(projects.c.public.is_(public))
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await conn.execute(query.order_by(projects.c.id).offset(offset).limit(limit))).all()
        return [_project(row) for row in rows], int(total)

    async def update_project(self, project_id: int, public: bool | None) -> Project:
        if public is not None:
            async with self.db.write() as conn:
                await conn.execute(
                    update(projects).where(projects.c.id == project_id).values(public=public, updated_at=utcnow())
                )
            self.on_change()
        project = await self.project(project_id)
        if project is None:
            raise IdentityError("not_found", f"project {project_id} was deleted; list projects with GET /api/v2.0/projects")
        return project

    # -- members -------------------------------------------------------------------------
    async def projects_with_role(self, user_id: int | None, roles: Collection[str]) -> dict[str, datetime]:
        """The projects where the user holds one of ``roles`` (none for robots and anonymous), each
        with its creation time: what was recorded under the same name before it belongs to an
        older, deleted project and is not theirs to see."""
        if user_id is None:
            return {}
        query = (
            select(projects.c.name, projects.c.created_at)
            .join(project_members, project_members.c.project_id == projects.c.id)
            .where(member_rows_of(user_id), project_members.c.role.in_(sorted(roles)))
            .distinct()
            .order_by(projects.c.name)
        )
        async with self.db.read() as conn:
            return {row.name: aware(row.created_at) for row in (await conn.execute(query)).all()}

    async def role_of(self, subject: Subject, project: Project) -> str | None:
        """The user's role in the project: the strongest of their own and their groups' roles (the
        union of what each allows, since every role allows what the weaker ones do)."""
        if subject.user_id is None:
            return None
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(project_members.c.role).where(
                        project_members.c.project_id == project.id, member_rows_of(subject.user_id)
                    )
                )
            ).all()
        return strongest(str(row.role) for row in rows)

    @staticmethod
    def _member_rows() -> Any:
        """Members with what names them: a user's name, or a group's name, type and DN."""
        return (
            select(project_members, users.c.username, user_groups.c.group_name, user_groups.c.group_type,
                   user_groups.c.ldap_group_dn)
            .outerjoin(users, users.c.id == project_members.c.user_id)
            .outerjoin(user_groups, user_groups.c.id == project_members.c.group_id)
        )

    async def members(self, project: Project, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the project's members, users and groups (``group_id`` set) in the order they were added."""
        query = self._member_rows().where(project_members.c.project_id == project.id)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await conn.execute(query.order_by(project_members.c.id).offset(offset).limit(limit))).all()
        return [dict(row._mapping) for row in rows], int(total)

    async def member(self, project: Project, member_id: int) -> dict[str, Any]:
        query = self._member_rows().where(project_members.c.project_id == project.id, project_members.c.id == member_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise IdentityError(
                "not_found",
                f"member {member_id} is not in project {project.name!r}; list members with "
                f"GET /api/v2.0/projects/{project.name}/members",
            )
        return dict(row._mapping)

    async def add_member(self, project: Project, username: str, role: str) -> int:
        if role not in ROLE_ACTIONS:
            raise IdentityError("invalid", f"role {role!r} is unknown; use one of {', '.join(ROLE_ACTIONS)}")
        user = await self.user_by_name(username)
        if user is None:
            raise IdentityError("not_found", f"user {username!r} does not exist; create it first (POST /api/v2.0/users)")
        now = utcnow()
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    insert(project_members).values(
                        project_id=project.id, user_id=user.id, role=role, created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            raise IdentityError(
                "conflict", f"user {username!r} is already a member of {project.name!r}; change the role with PUT"
            ) from None
        self.on_change()
        return int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0

    async def set_member_role(self, project: Project, member_id: int, role: str) -> None:
        if role not in ROLE_ACTIONS:
            raise IdentityError("invalid", f"role {role!r} is unknown; use one of {', '.join(ROLE_ACTIONS)}")
        await self.member(project, member_id)
        async with self.db.write() as conn:
            await conn.execute(
                update(project_members).where(project_members.c.id == member_id).values(role=role, updated_at=utcnow())
            )
        self.on_change()

    async def remove_member(self, project: Project, member_id: int) -> dict[str, Any]:
        member = await self.member(project, member_id)
        async with self.db.write() as conn:
            await conn.execute(delete(project_members).where(project_members.c.id == member_id))
        self.on_change()
        return member
