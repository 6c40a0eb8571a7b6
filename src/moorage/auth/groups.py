"""User groups: what they are, who is in them, and groups as project members.

The service every entry point uses for groups (REST ``/usergroups`` and group members of
projects, the LDAP source, the OIDC source): none of them touches the group tables.

* A group has Harbor's ``group_type``: :data:`LDAP` (1, identified by its DN), :data:`LOCAL` (2,
  Harbor's "HTTP" type; filled by an administrator) or :data:`OIDC` (3, a value of the provider's
  groups claim). Within a type it is identified by its key (:func:`group_key`): the normalised DN
  for LDAP, the name otherwise.
* Memberships of LDAP and OIDC groups belong to the source: :meth:`GroupStore.sync` replaces a
  user's memberships of one type by what the source says at each login and refresh (called by
  :class:`moorage.auth.sources.SourceChain`), so leaving a directory group takes effect at the
  user's next login or token refresh, and the policy's rights follow within its cache time.
* A group is a project member like a user (``project_members.group_id``); a user's role in a
  project is the strongest of their own and their groups' roles (:meth:`IdentityStore.role_of`,
  through :func:`moorage.db.identity_tables.member_rows_of`).

Every write is idempotent under concurrency: :meth:`GroupStore.ensure` and :meth:`GroupStore.sync`
ignore a row another node inserted first, so two logins of one user on two nodes leave one
membership.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from moorage.auth.identity import IdentityError, Project, utcnow
from moorage.auth.roles import ROLE_ACTIONS
from moorage.db.group_tables import user_group_members, user_groups
from moorage.db.identity_tables import project_members
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.db.upsert import insert_ignore
from moorage.registry.names import InvalidNameError, check_group_name

__all__ = [
    "GROUP_TYPES",
    "LDAP",
    "LOCAL",
    "OIDC",
    "Group",
    "GroupRef",
    "GroupStore",
    "group_key",
    "normalize_dn",
]

LDAP = 1
LOCAL = 2
OIDC = 3
#: Harbor's group type numbers and the words the docs and messages use for them.
GROUP_TYPES: dict[int, str] = {LDAP: "ldap", LOCAL: "local", OIDC: "oidc"}
_DN_MAX = 512


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    name: str
    group_type: int
    ldap_group_dn: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GroupRef:
    """A group as a source names it: ``group_type``, ``name`` (display name) and, for LDAP, ``dn``."""

    group_type: int
    name: str
    dn: str | None = None

    @property
    def key(self) -> str:
        return group_key(self.group_type, self.name, self.dn)


def normalize_dn(dn: str) -> str:
    """A DN compared the way directories compare them: attribute names and values case-folded,
    spaces around separators dropped (``CN=Dev, DC=Example`` is ``cn=dev,dc=example``).

    Raises :class:`IdentityError` (``invalid``) for text that is not a DN.
    """
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        raise IdentityError("invalid", f"ldap_group_dn {dn!r} is not a DN; write it as 'cn=<group>,ou=…,dc=…'") from None
    if not parts:
        raise IdentityError("invalid", "ldap_group_dn is empty; write it as 'cn=<group>,ou=…,dc=…'")
    return ",".join(f"{attr.strip().lower()}={value.strip().lower()}" for attr, value, _ in parts)


def group_key(group_type: int, name: str, dn: str | None) -> str:
    """What identifies a group within its type: the normalised DN of an LDAP group, else its name."""
    if group_type == LDAP:
        if not dn:
            raise IdentityError("invalid", "an LDAP group (group_type 1) needs ldap_group_dn")
        return normalize_dn(dn)
    return name


def _group(row: Any) -> Group:
    return Group(int(row.id), str(row.group_name), int(row.group_type), row.ldap_group_dn, aware(row.created_at),
                 aware(row.updated_at))


def _check(name: str, group_type: int, dn: str | None) -> None:
    if group_type not in GROUP_TYPES:
        raise IdentityError("invalid", "group_type must be 1 (LDAP), 2 (local) or 3 (OIDC)")
    try:
        check_group_name(name)
    except InvalidNameError as exc:
        raise IdentityError("invalid", exc.message) from None
    if dn is not None and len(dn) > _DN_MAX:
        raise IdentityError("invalid", f"ldap_group_dn is {len(dn)} characters long; the limit is {_DN_MAX}")
    if group_type != LDAP and dn:
        raise IdentityError("invalid", "ldap_group_dn is only for LDAP groups (group_type 1); leave it out")


class GroupStore:
    """CRUD on groups, memberships synchronised from sources, and groups as project members."""

    def __init__(self, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self.db = db
        #: Called after every change that can change someone's rights (drops this node's policy cache).
        self.on_change = on_change or (lambda: None)

    # -- groups -----------------------------------------------------------------------------
    async def create(self, name: str, group_type: int, ldap_group_dn: str | None = None) -> Group:
        """A new group; ``conflict`` when one of that type and key exists (the message names it)."""
        _check(name, group_type, ldap_group_dn)
        key = group_key(group_type, name, ldap_group_dn)
        now = utcnow()
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    insert(user_groups).values(group_name=name, group_type=group_type, group_key=key,
                                               ldap_group_dn=ldap_group_dn, created_at=now, updated_at=now)
                )
        except IntegrityError:
            existing = await self.find(group_type, key)
            raise IdentityError(
                "conflict",
                f"a {GROUP_TYPES[group_type]} group {'with that DN' if group_type == LDAP else 'of that name'} "
                f"already exists (id {existing.id if existing else '?'}); use it",
            ) from None
        return await self.get(int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0)

    async def ensure(self, ref: GroupRef) -> Group:
        """The group ``ref`` names, created when missing (a concurrent creation elsewhere is harmless)."""
        found = await self.find(ref.group_type, ref.key)
        if found is not None:
            return found
        _check(ref.name, ref.group_type, ref.dn)
        now = utcnow()
        async with self.db.write() as conn:
            await insert_ignore(
                conn, user_groups,
                {"group_name": ref.name, "group_type": ref.group_type, "group_key": ref.key, "ldap_group_dn": ref.dn,
                 "created_at": now, "updated_at": now},
                ["group_type", "group_key"],
            )
        found = await self.find(ref.group_type, ref.key)
        if found is None:  # deleted again between the insert and this read
            raise IdentityError("not_found", f"group {ref.name!r} was deleted while being created; try again")
        return found

    async def get(self, group_id: int) -> Group:
        async with self.db.read() as conn:
            row = (await conn.execute(select(user_groups).where(user_groups.c.id == group_id))).first()
        if row is None:
            raise IdentityError("not_found", f"user group {group_id} does not exist; list groups with GET /api/v2.0/usergroups")
        return _group(row)

    async def find(self, group_type: int, key: str) -> Group | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(user_groups).where(user_groups.c.group_type == group_type, user_groups.c.group_key == key)
                )
            ).first()
        return None if row is None else _group(row)

    async def page(self, offset: int, limit: int, *, name: str | None = None, ldap_group_dn: str | None = None,
                   group_type: int | None = None) -> tuple[list[Group], int]:
        """A page of groups; ``name`` matches a part of the name, ``ldap_group_dn`` the DN exactly
        (normalised), ``group_type`` the type."""
        query = select(user_groups)
        if name:
            query = query.where(user_groups.c.group_name.contains(name, autoescape=True))
        if ldap_group_dn:
            query = query.where(user_groups.c.group_type == LDAP, user_groups.c.group_key == normalize_dn(ldap_group_dn))
        if group_type is not None:
            query = query.where(user_groups.c.group_type == group_type)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = (await conn.execute(query.order_by(user_groups.c.id).offset(offset).limit(limit))).all()
        return [_group(row) for row in rows], int(total)

    async def rename(self, group_id: int, name: str) -> Group:
        """Change the display name (the key of an LDAP group is its DN, which does not change)."""
        group = await self.get(group_id)
        _check(name, group.group_type, group.ldap_group_dn)
        values: dict[str, Any] = {"group_name": name, "updated_at": utcnow()}
        if group.group_type != LDAP:
            values["group_key"] = name
        try:
            async with self.db.write() as conn:
                await conn.execute(update(user_groups).where(user_groups.c.id == group_id).values(**values))
        except IntegrityError:
            raise IdentityError("conflict", f"a {GROUP_TYPES[group.group_type]} group named {name!r} exists; "
                                            "choose another name") from None
        return await self.get(group_id)

    async def delete(self, group_id: int) -> Group:
        """Delete a group with its memberships and its project memberships (rights end at once)."""
        group = await self.get(group_id)
        async with self.db.write() as conn:
            # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign keys on.
            await conn.execute(delete(project_members).where(project_members.c.group_id == group_id))
            await conn.execute(delete(user_group_members).where(user_group_members.c.group_id == group_id))
            await conn.execute(delete(user_groups).where(user_groups.c.id == group_id))
        self.on_change()
        return group

    # -- who is in them ----------------------------------------------------------------------
    async def groups_of(self, user_id: int) -> list[Group]:
        query = (
            select(user_groups)
            .join(user_group_members, user_group_members.c.group_id == user_groups.c.id)
            .where(user_group_members.c.user_id == user_id)
            .order_by(user_groups.c.id)
        )
        async with self.db.read() as conn:
            return [_group(row) for row in (await conn.execute(query)).all()]

    async def sync(self, user_id: int, group_type: int, refs: Iterable[GroupRef], *, create_missing: bool) -> list[Group]:
        """Make the user's memberships of ``group_type`` exactly the groups in ``refs`` that exist
        (every one of them when ``create_missing``, as for OIDC groups; only those an
        administrator added for LDAP, so a directory with thousands of groups does not fill the
        table). Memberships of other types are left alone. Returns the user's groups of that type.
        """
        wanted: dict[int, Group] = {}
        for ref in refs:
            if ref.group_type != group_type:
                raise ValueError(f"group {ref.name!r} has type {ref.group_type}, not {group_type}")
            group = await self.ensure(ref) if create_missing else await self.find(group_type, ref.key)
            if group is not None:
                wanted[group.id] = group
        current = {group.id for group in await self.groups_of(user_id) if group.group_type == group_type}
        if current == set(wanted):
            return list(wanted.values())
        now = utcnow()
        async with self.db.write() as conn:
            gone = current - set(wanted)
            if gone:
                await conn.execute(
                    delete(user_group_members).where(user_group_members.c.user_id == user_id,
                                                     user_group_members.c.group_id.in_(sorted(gone)))
                )
            for group_id in sorted(set(wanted) - current):
                await insert_ignore(conn, user_group_members,
                                    {"user_id": user_id, "group_id": group_id, "created_at": now},
                                    ["user_id", "group_id"])
        self.on_change()
        return list(wanted.values())

    async def add_user(self, group_id: int, user_id: int) -> None:
        """Put a user in a local group (LDAP and OIDC groups are filled by their source at login)."""
        group = await self.get(group_id)
        if group.group_type != LOCAL:
            raise IdentityError(
                "invalid", f"group {group.name!r} is an {GROUP_TYPES[group.group_type]} group: its members are "
                "what the source says at each login; change them there",
            )
        async with self.db.write() as conn:
            await insert_ignore(conn, user_group_members,
                                {"user_id": user_id, "group_id": group_id, "created_at": utcnow()},
                                ["user_id", "group_id"])
        self.on_change()

    async def remove_user(self, group_id: int, user_id: int) -> None:
        """Take a user out of a local group."""
        group = await self.get(group_id)
        if group.group_type != LOCAL:
            raise IdentityError("invalid", f"group {group.name!r} is filled by its source; change it there")
        async with self.db.write() as conn:
            await conn.execute(delete(user_group_members).where(user_group_members.c.user_id == user_id,
                                                                user_group_members.c.group_id == group_id))
        self.on_change()

    async def member_ids(self, group_id: int) -> list[int]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(user_group_members.c.user_id)
                                       .where(user_group_members.c.group_id == group_id)
                                       .order_by(user_group_members.c.user_id))).all()
        return [int(row.user_id) for row in rows]

    # -- groups in projects ------------------------------------------------------------------
    async def add_to_project(self, project: Project, group: Group, role: str) -> int:
        """Make ``group`` a member of ``project`` with ``role``; returns the member id."""
        if role not in ROLE_ACTIONS:
            raise IdentityError("invalid", f"role {role!r} is unknown; use one of {', '.join(ROLE_ACTIONS)}")
        now = utcnow()
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    insert(project_members).values(project_id=project.id, group_id=group.id, role=role,
                                                   created_at=now, updated_at=now)
                )
        except IntegrityError:
            raise IdentityError(
                "conflict", f"group {group.name!r} is already a member of {project.name!r}; change the role with PUT"
            ) from None
        self.on_change()
        return int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
