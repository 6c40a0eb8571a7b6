"""Who may do what, and what a refusal tells: the one module ``/v2``, the token service, REST and listings ask.

Rights are re-read from the database, never taken from a token alone: a token says what its
holder asked for and was granted when it was issued; the policy says what the account may do
*now*. To keep that cheap on every ``/v2`` request, accounts, projects and roles are cached per
process for :data:`CACHE_SECONDS`; the node that makes a change drops its cache at once (the
stores call :meth:`Policy.forget`), every other node within :data:`CACHE_SECONDS`. So removing a
member, lowering a role, changing a password, disabling or deleting an account takes effect on
every node within seconds, whatever tokens are out there.

Disclosure: by default a project that does not exist and a private project the caller may not
see get the same answer with the same wording (:meth:`Policy.hidden_message`), on every entry
point; system administrators, and members (who can see the project anyway), get the exact cause.
``auth.disclose_project_existence: true`` tells every authenticated user which it is (Harbor's
behaviour, for registries where project names are no secret); anonymous callers never learn it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, false, or_, select

from moorage.auth.identity import ANONYMOUS, IdentityError, IdentityStore, Project, Subject
from moorage.auth.robots import RobotStore
from moorage.auth.roles import ALL_ACTIONS, ROLE_ACTIONS, minimum_role_for
from moorage.auth.tokens import Account
from moorage.db.identity_tables import member_rows_of, project_members, projects
from moorage.db.tables import repositories

__all__ = ["CACHE_SECONDS", "Denial", "Policy", "Rights"]

#: How long a node trusts what it read about an account, a project or a role.
CACHE_SECONDS = 2.0
_CACHE_MAX = 10_000
K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """A tiny per-process cache whose entries expire ``ttl`` seconds after they were read."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V, read_at: float) -> None:
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()
        self._entries[key] = (read_at + self.ttl, value)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class Rights:
    """What a subject may do in one project, as the policy sees it now.

    ``visible``: the project exists and the subject may know it (public, member, robot
    namespace, system admin). ``role`` is the subject's project role, if any.
    """

    project_name: str
    project: Project | None
    role: str | None
    actions: frozenset[str]
    visible: bool


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal: ``kind`` is ``unauthorized`` (send credentials), ``forbidden`` or ``not_found``."""

    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def error(self) -> IdentityError:
        return IdentityError(self.kind, self.message)


def _sorted(actions: frozenset[str] | set[str]) -> list[str]:
    order = ("pull", "push", "delete")
    return sorted(actions, key=lambda a: (order.index(a) if a in order else 99, a))


class Policy:
    """The decisions; :class:`~moorage.auth.service.IdentityService` builds one per process."""

    def __init__(self, store: IdentityStore, robots: RobotStore, *, anonymous_pull: bool,
                 disclose_existence: bool = False, cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.robots = robots
        self.anonymous_pull = anonymous_pull
        self.disclose_existence = disclose_existence
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._accounts: _TtlCache[tuple[str, str], Subject | None] = _TtlCache(cache_seconds, clock)
        self._projects: _TtlCache[str, Project | None] = _TtlCache(cache_seconds, clock)
        self._roles: _TtlCache[tuple[int, int], str | None] = _TtlCache(cache_seconds, clock)

    def forget(self) -> None:
        """Drop everything this node cached (after it changed an account, a project or a member)."""
        self._accounts.clear()
        self._projects.clear()
        self._roles.clear()

    # -- who --------------------------------------------------------------------------------
    async def account(self, account: Account) -> Subject:
        """The current subject of a token's account, or ``unauthorized`` when the token is revoked.

        The account is looked up by its immutable ``uid`` (a re-created user of the same name is
        another account) and its generation must still be the token's (a password change, a
        secret refresh or a disable bumps it).
        """
        if account.kind == "anonymous":
            return ANONYMOUS
        key = (account.kind, account.uid)
        found, subject = self._accounts.get(key)
        if not found:
            read_at = self._clock()
            subject = await self._load(account)
            self._accounts.put(key, subject, read_at)
        who = f"robot account {account.name!r}" if account.kind == "robot" else f"user {account.name!r}"
        if subject is None:
            state = "no longer exists, is disabled or expired" if account.kind == "robot" else "no longer exists or is disabled"
            raise IdentityError("unauthorized", f"{who} {state}; log in again")
        if subject.generation != account.generation:
            raise IdentityError(
                "unauthorized",
                f"the token of {who} was revoked (password or secret changed, or the account was disabled); "
                "log in again",
            )
        return subject

    async def _load(self, account: Account) -> Subject | None:
        if account.kind == "robot":
            robot = await self.robots.by_uid(account.uid)
            if robot is None or robot.disabled or robot.expired:
                return None
            return self.robots.subject(robot)
        if account.kind != "user":
            return None
        user = await self.store.user_by_uid(account.uid)
        return None if user is None or user.disabled else self.store.user_subject(user)

    # -- what -------------------------------------------------------------------------------
    async def project(self, name_or_id: str | int) -> Project | None:
        key = str(name_or_id) if isinstance(name_or_id, str) else f"#{name_or_id}"
        found, project = self._projects.get(key)
        if not found:
            read_at = self._clock()
            project = await self.store.project(name_or_id)
            self._projects.put(key, project, read_at)
        return project

    async def role(self, subject: Subject, project: Project) -> str | None:
        if subject.user_id is None:
            return None
        key = (subject.user_id, project.id)
        found, role = self._roles.get(key)
        if not found:
            read_at = self._clock()
            role = await self.store.role_of(subject, project)
            self._roles.put(key, role, read_at)
        return role

    async def rights(self, subject: Subject, project_name_or_id: str | int) -> Rights:
        """What ``subject`` may do in the project (by name or id), and whether it may know it exists."""
        project = await self.project(project_name_or_id)
        name = project.name if project is not None else str(project_name_or_id)
        if project is None:
            return Rights(name, None, None, frozenset(), False)
        role = await self.role(subject, project)
        robot_actions: frozenset[str] = frozenset()
        robot_sees = False
        if subject.kind == "robot":
            robot_sees = project.name in subject.robot_access or "*" in subject.robot_access
            robot_actions = subject.robot_access.get(project.name, frozenset()) | subject.robot_access.get(
                "*", frozenset()
            )
        allowed: set[str] = set()
        if project.public and (self.anonymous_pull or not subject.anonymous):
            allowed.add("pull")
        if subject.sysadmin:
            allowed |= ALL_ACTIONS
        allowed |= robot_actions
        if role is not None:
            allowed |= ROLE_ACTIONS.get(role, frozenset())
        visible = subject.sysadmin or project.public or role is not None or robot_sees
        return Rights(name, project, role, frozenset(allowed), visible)

    async def repository_rights(self, subject: Subject, repository: str) -> Rights:
        return await self.rights(subject, repository.split("/", 1)[0])

    def visible_projects(self, subject: Subject) -> ColumnElement[bool] | None:
        """The condition on ``projects`` rows that ``subject`` may see (``None``: every project)."""
        if subject.sysadmin or (subject.kind == "robot" and "*" in subject.robot_access):
            return None
        visible: ColumnElement[bool] = projects.c.public.is_(True)
        if subject.user_id is not None:
            member_of = select(project_members.c.project_id).where(member_rows_of(subject.user_id))
            visible = or_(visible, projects.c.id.in_(member_of))
        if subject.kind == "robot":
            visible = or_(visible, projects.c.name.in_(sorted(subject.robot_access)))
        return visible

    def visible_repositories(self, subject: Subject) -> ColumnElement[bool] | None:
        """The condition on ``repositories`` rows ``subject`` may list (``None``: every repository).

        Through the repository's ``project_id``: a repository of no (or a deleted) project is
        listed to system administrators only.
        """
        if subject.anonymous and not self.anonymous_pull:
            return false()
        visible = self.visible_projects(subject)
        if visible is None:
            return None
        return repositories.c.project_id.in_(select(projects.c.id).where(visible))

    # -- what a refusal says ------------------------------------------------------------------
    @staticmethod
    def hidden_message(project_name: str) -> str:
        """The one answer for "missing" and "private and you are not a member" (no difference disclosed)."""
        return (
            f"project {project_name!r} does not exist or you are not a member of it: check the name "
            "(repositories are '<project>/<repository>'), create it (POST /api/v2.0/projects) or ask its "
            "administrator to add you"
        )

    @staticmethod
    def missing_message(project_name: str) -> str:
        """The exact cause, for those who may know it (system administrators)."""
        return (
            f"project {project_name!r} does not exist: create it in the UI or with the API "
            "(POST /api/v2.0/projects), or check the name (repositories are '<project>/<repository>')"
        )

    def unseen(self, subject: Subject, rights: Rights) -> Denial:
        """The refusal for a project ``subject`` may not see (or that does not exist)."""
        name = rights.project_name
        if subject.anonymous:
            return Denial("unauthorized", f"project {name!r} is not public or does not exist; send credentials")
        if (subject.sysadmin or self.disclose_existence) and rights.project is None:
            return Denial("not_found", self.missing_message(name), {"project": name})
        if self.disclose_existence:
            return Denial(
                "not_found",
                f"project {name!r} is private and you are not a member of it: ask its administrator to add you",
                {"project": name},
            )
        return Denial("not_found", self.hidden_message(name), {"project": name})

    def may_know_exists(self, subject: Subject, rights: Rights) -> bool:
        """Whether ``subject`` may be told that the project exists (``HEAD /projects?project_name=``)."""
        if rights.visible:
            return True
        return self.disclose_existence and not subject.anonymous and rights.project is not None

    def project_denial(self, subject: Subject, rights: Rights) -> Denial | None:
        """``None`` when ``subject`` may see the project, else the refusal (never telling private from missing)."""
        return None if rights.visible else self.unseen(subject, rights)

    def repository_denial(self, subject: Subject, repository: str, actions: frozenset[str],
                          rights: Rights) -> Denial:
        """Why ``subject`` may not do ``actions`` on ``repository``, in words that say what to do."""
        missing = _sorted(actions - rights.actions)
        verb = "+".join(missing)
        if subject.anonymous:
            return Denial(
                "unauthorized",
                f"authentication required to {verb} {repository!r} (anonymous users may only pull from public "
                "projects)",
                {"missing": missing},
            )
        if not rights.visible:
            denial = self.unseen(subject, rights)
            return Denial("forbidden", denial.message, {**denial.detail, "missing": missing})
        who = f"robot account {subject.name!r}" if subject.kind == "robot" else f"user {subject.name!r}"
        name = rights.project_name
        if subject.kind == "robot":
            reason = (f"{who} lacks the {verb} permission on project {name!r}; ask an administrator to grant it "
                      "(PUT /api/v2.0/robots/<id>) or use another account")
        elif rights.role is None:
            reason = (f"project {name!r} is public, so {who} may pull, but {verb} needs membership with role "
                      f"{minimum_role_for(missing[-1])} or above; ask a project admin to add you")
        else:
            reason = (f"{who} has role {rights.role} in project {name!r}, which does not allow {verb}; ask a "
                      f"project admin for role {minimum_role_for(missing[-1])} or above")
        return Denial("forbidden", reason, {"missing": missing, "role": rights.role})

    def immutability_denial(self, subject: Subject, rights: Rights) -> Denial | None:
        """``None`` when ``subject`` may change the project's tag immutability rules (its project
        admins and system administrators, as in Harbor), else the refusal that says whom to ask."""
        if not rights.visible:
            return self.unseen(subject, rights)
        if subject.sysadmin or rights.role == "projectAdmin":
            return None
        if subject.anonymous:
            return Denial("unauthorized", "changing tag immutability rules needs credentials; log in first")
        who = f"robot account {subject.name!r}" if subject.kind == "robot" else f"user {subject.name!r}"
        return Denial(
            "forbidden",
            f"changing the tag immutability rules of project {rights.project_name!r} needs the projectAdmin role "
            f"(or a system administrator); {who} has {rights.role or 'no role'}: ask a project admin",
            {"role": rights.role},
        )

    def _managing_denial(self, subject: Subject, rights: Rights, roles: tuple[str, ...], what: str,
                         verb: str) -> Denial | None:
        """``None`` when ``subject`` is a system administrator or holds one of ``roles`` in the project;
        else the refusal that names ``what`` (e.g. "the webhook policies"), the roles and whom to ask."""
        if not rights.visible:
            return self.unseen(subject, rights)
        if subject.sysadmin or rights.role in roles:
            return None
        if subject.anonymous:
            return Denial("unauthorized", f"{verb} {what} needs credentials; log in first")
        who = f"robot account {subject.name!r}" if subject.kind == "robot" else f"user {subject.name!r}"
        return Denial(
            "forbidden",
            f"{verb} {what} of project {rights.project_name!r} needs the "
            f"{' or '.join(roles)} role (or a system administrator); {who} has {rights.role or 'no role'}: "
            "ask a project admin",
            {"role": rights.role},
        )

    def webhook_denial(self, subject: Subject, rights: Rights, *, change: bool) -> Denial | None:
        """``None`` when ``subject`` may read (``change=False``: project admins, maintainers) or change
        (project admins) the project's webhook policies, as in Harbor; system administrators may both."""
        roles = ("projectAdmin",) if change else ("projectAdmin", "maintainer")
        return self._managing_denial(subject, rights, roles, "the webhook policies",
                                     "changing" if change else "reading")

    def retention_denial(self, subject: Subject, rights: Rights, *, change: bool) -> Denial | None:
        """``None`` when ``subject`` may read (``change=False``: project admins, maintainers) or change
        and run (project admins) the project's tag retention policy, as in Harbor; system
        administrators may both."""
        roles = ("projectAdmin",) if change else ("projectAdmin", "maintainer")
        return self._managing_denial(subject, rights, roles, "the tag retention policy",
                                     "changing or running" if change else "reading")

    def quota_projects(self, subject: Subject) -> ColumnElement[bool] | None:
        """The condition on ``projects`` whose quotas ``subject`` may read (``None``: every project).

        System administrators read all; a user reads the quotas of the projects he is a member of
        (any role, himself or through a group). Anonymous callers and robots read none (a robot's rights are about repositories).
        """
        if subject.sysadmin:
            return None
        if subject.user_id is None:
            return false()
        return projects.c.id.in_(select(project_members.c.project_id).where(member_rows_of(subject.user_id)))

    def quota_denial(self, subject: Subject, rights: Rights, *, write: bool) -> Denial | None:
        """``None`` when ``subject`` may read (``write=False``) or change the project's quota, else the refusal.

        Reading: system administrators and the project's members. Changing: system administrators
        only (as in Harbor: a quota is the operator's budget, not the project's).
        """
        if subject.anonymous:
            return Denial("unauthorized", "reading or changing quotas needs credentials; log in first")
        if subject.sysadmin:
            return None
        if not rights.visible:
            return self.unseen(subject, rights)
        who = f"robot account {subject.name!r}" if subject.kind == "robot" else f"user {subject.name!r}"
        if write:
            return Denial(
                "forbidden",
                f"changing the quota of project {rights.project_name!r} needs the system administrator role; "
                f"{who} is not one: ask a system administrator",
            )
        if rights.role is None:
            return Denial(
                "forbidden",
                f"reading the quota of project {rights.project_name!r} needs membership of it; {who} is not a "
                "member: ask a project admin to add you",
            )
        return None

    def name_taken_message(self, project_name: str, rights: Rights) -> str:
        """``POST /projects`` with a name that exists: "already exists" only to those who may see it.

        A free name is created, so an answer other than 201 necessarily tells that the name is
        taken; it does not tell that a project holds it, whether it is private, or anything else.
        """
        if rights.visible or self.disclose_existence:
            return f"project {project_name!r} already exists; choose another name"
        return f"the name {project_name!r} is not available; choose another name"

    # -- the token service ----------------------------------------------------------------------
    async def grant(self, subject: Subject, requested: list[tuple[str, str, tuple[str, ...]]]) -> list[dict[str, Any]]:
        """The intersection of requested and allowed actions, per ``(type, name, actions)``; empty grants are left out."""
        access: list[dict[str, Any]] = []
        for resource_type, name, actions in requested:
            granted: list[str] = []
            if resource_type == "repository" and "/" in name:
                wanted = set(actions)
                if "*" in wanted:
                    wanted = set(ALL_ACTIONS)
                granted = _sorted(wanted & (await self.repository_rights(subject, name)).actions)
            elif resource_type == "registry" and name == "catalog":
                granted = ["*"] if subject.sysadmin else []
            if granted:
                access.append({"type": resource_type, "name": name, "actions": granted})
        return access
