"""Tag immutability: rules per project that keep a tag on the digest it was first pushed with.

A rule names a tag pattern and a repository pattern (Harbor's doublestar,
:mod:`moorage.registry.patterns`; the repository pattern matches the name inside the project,
``app`` for ``proj/app``). While an enabled rule matches an existing tag, that tag can be neither
moved to another digest nor deleted, and the manifest it points at cannot be deleted by digest.
Creating a matching tag, and pushing the same digest to it again, are allowed (pushes are
idempotent). :class:`~moorage.registry.manifest_store.ManifestStore` asks here inside the write
transaction that would change the tag, so a rule holds whatever entry point (``/v2``, REST, the
CLI, jobs) made the change, and a push racing a delete cannot slip between check and write.

:class:`ImmutableRules` is the store the REST API changes rules through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.immutability_tables import immutable_tag_rules
from moorage.db.session import Database, Reader
from moorage.db.tables import manifests, repositories, tags
from moorage.errors import RegistryError
from moorage.registry.patterns import PatternError, compile_pattern
from moorage.registry.repositories import now

__all__ = [
    "ImmutableRule",
    "ImmutableRules",
    "ImmutableTagError",
    "InvalidRule",
    "guarding_digest",
    "guarding_tag",
]

_COLUMNS = (
    immutable_tag_rules.c.id,
    immutable_tag_rules.c.project_id,
    immutable_tag_rules.c.tag_pattern,
    immutable_tag_rules.c.repository_pattern,
    immutable_tag_rules.c.disabled,
    immutable_tag_rules.c.created_at,
)


@dataclass(frozen=True, slots=True)
class ImmutableRule:
    id: int
    project_id: int
    tag_pattern: str
    repository_pattern: str
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, row: Row[*tuple[Any, ...]]) -> ImmutableRule:
        return cls(row.id, row.project_id, row.tag_pattern, row.repository_pattern, bool(row.disabled),
                   row.created_at)

    def matches(self, repository: str, tag: str) -> bool:
        """Whether the rule covers ``tag`` of ``repository`` (the full name, ``<project>/<name>``)."""
        inside = repository.split("/", 1)[1] if "/" in repository else repository
        return (compile_pattern(self.repository_pattern).fullmatch(inside) is not None
                and compile_pattern(self.tag_pattern).fullmatch(tag) is not None)


class ImmutableTagError(RegistryError):
    """A move or delete of an immutable tag, refused with ``DENIED`` naming the rule and how to change it."""

    def __init__(self, rule: ImmutableRule, repository: str, tag: str, change: str) -> None:
        project = repository.split("/", 1)[0]
        where = "" if rule.repository_pattern == "**" else f" in repositories matching {rule.repository_pattern!r}"
        super().__init__(
            "DENIED",
            f"tag {tag!r} of {repository!r} is immutable by rule {rule.id} (tags matching {rule.tag_pattern!r}"
            f"{where}), so it cannot be {change}: push a new tag, or ask a project admin to disable the rule "
            f"(PUT /api/v2.0/projects/{project}/immutabletagrules/{rule.id})",
            {"repository": repository, "tag": tag, "rule": rule.id, "project": project,
             "tag_pattern": rule.tag_pattern, "repository_pattern": rule.repository_pattern},
        )
        self.rule = rule


class InvalidRule(ValueError):
    """A rule refused before anything is stored; ``field`` is ``tag_pattern`` or ``repository_pattern``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


async def _enabled_rules(conn: AsyncConnection | Reader, repository_id: int) -> list[ImmutableRule]:
    project = select(repositories.c.project_id).where(repositories.c.id == repository_id).scalar_subquery()
    query = (
        select(*_COLUMNS)
        .where(immutable_tag_rules.c.project_id == project, immutable_tag_rules.c.disabled.is_(False))
        .order_by(immutable_tag_rules.c.id)
    )
    return [ImmutableRule.of(row) for row in await conn.execute(query)]


def _first(rules: Iterable[ImmutableRule], repository: str, tag: str) -> ImmutableRule | None:
    return next((rule for rule in rules if rule.matches(repository, tag)), None)


async def guarding_tag(conn: AsyncConnection, repository_id: int, repository: str, tag: str) -> ImmutableRule | None:
    """The first enabled rule of the repository's project that covers ``tag`` (``None``: the tag is free)."""
    return _first(await _enabled_rules(conn, repository_id), repository, tag)


async def _first_covered(conn: AsyncConnection | Reader, repository_id: int, repository: str,
                         tag_names: Select[str]) -> tuple[ImmutableRule, str] | None:
    """The first enabled rule and tag (of ``tag_names``, in order) that a rule covers."""
    rules = await _enabled_rules(conn, repository_id)
    if not rules:
        return None
    for tag in (await conn.execute(tag_names)).scalars():
        rule = _first(rules, repository, tag)
        if rule is not None:
            return rule, tag
    return None


async def guarding_digest(conn: AsyncConnection | Reader, repository_id: int, repository: str,
                          digest: str) -> tuple[ImmutableRule, str] | None:
    """The first rule and tag that make the manifest ``digest`` undeletable (a covered tag points at it)."""
    query = (
        select(tags.c.name)
        .select_from(tags.join(manifests, tags.c.manifest_id == manifests.c.id))
        .where(manifests.c.repository_id == repository_id, manifests.c.digest == digest)
        .order_by(tags.c.name)
    )
    return await _first_covered(conn, repository_id, repository, query)


async def guarding_repository(conn: AsyncConnection, repository_id: int,
                              repository: str) -> tuple[ImmutableRule, str] | None:
    """The first rule and tag that make the whole repository undeletable (it holds a covered tag).

    Deleting the repository deletes its tags; an immutable tag must not go that way either.
    """
    query = select(tags.c.name).where(tags.c.repository_id == repository_id).order_by(tags.c.name)
    return await _first_covered(conn, repository_id, repository, query)


def _checked(field: str, pattern: str) -> str:
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise InvalidRule(field, f"{pattern!r} is not a valid pattern: {exc}") from None
    return pattern


class ImmutableRules:
    """The rules of projects: list, create, update, delete (callers check who may, with the policy)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def holding(self, repository: str, digest: str) -> ImmutableTagError | None:
        """The refusal a delete of ``repository@digest`` would meet now (an enabled rule covers one of
        its tags), or ``None``: what a retention dry run reports without deleting anything."""
        async with self.db.read() as conn:
            found = (await conn.execute(select(repositories.c.id).where(repositories.c.name == repository))).scalar()
            held = None if found is None else await guarding_digest(conn, int(found), repository, digest)
        if held is None:
            return None
        return ImmutableTagError(held[0], repository, held[1], f"deleted (through its manifest {digest})")

    async def list(self, project_id: int) -> list[ImmutableRule]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(*_COLUMNS).where(immutable_tag_rules.c.project_id == project_id)
                .order_by(immutable_tag_rules.c.id)
            )
            return [ImmutableRule.of(row) for row in rows]

    async def get(self, project_id: int, rule_id: int) -> ImmutableRule | None:
        """The rule, or ``None`` when it does not exist or belongs to another project."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(
                immutable_tag_rules.c.id == rule_id, immutable_tag_rules.c.project_id == project_id))).first()
        return None if row is None else ImmutableRule.of(row)

    async def create(self, project_id: int, tag_pattern: str, repository_pattern: str,
                     disabled: bool = False) -> ImmutableRule:
        """Store a rule; :class:`InvalidRule` (nothing stored) when a pattern cannot compile."""
        _checked("tag_pattern", tag_pattern)
        _checked("repository_pattern", repository_pattern)
        async with self.db.write() as conn:
            row = (await conn.execute(
                immutable_tag_rules.insert().values(
                    project_id=project_id, tag_pattern=tag_pattern, repository_pattern=repository_pattern,
                    disabled=disabled, created_at=now(),
                ).returning(*_COLUMNS)
            )).one()
        return ImmutableRule.of(row)

    async def update(self, rule: ImmutableRule, *, tag_pattern: str | None = None,
                     repository_pattern: str | None = None, disabled: bool | None = None) -> ImmutableRule | None:
        """Change the given fields; ``None`` when the rule was deleted meanwhile, :class:`InvalidRule` as create."""
        values: dict[str, object] = {}
        if tag_pattern is not None:
            values["tag_pattern"] = _checked("tag_pattern", tag_pattern)
        if repository_pattern is not None:
            values["repository_pattern"] = _checked("repository_pattern", repository_pattern)
        if disabled is not None:
            values["disabled"] = disabled
        async with self.db.write() as conn:
            statement = update(immutable_tag_rules).where(
                immutable_tag_rules.c.id == rule.id, immutable_tag_rules.c.project_id == rule.project_id)
            if values:
                row = (await conn.execute(statement.values(**values).returning(*_COLUMNS))).first()
            else:
                row = (await conn.execute(select(*_COLUMNS).where(immutable_tag_rules.c.id == rule.id))).first()
        return None if row is None else ImmutableRule.of(row)

    async def delete(self, rule: ImmutableRule) -> bool:
        """Remove the rule; ``False`` when it was already gone."""
        async with self.db.write() as conn:
            result = await conn.execute(delete(immutable_tag_rules).where(
                immutable_tag_rules.c.id == rule.id, immutable_tag_rules.c.project_id == rule.project_id))
        return bool(result.rowcount)
