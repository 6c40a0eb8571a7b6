"""Which projects are proxy caches, and of which endpoint (Harbor's ``registry_id`` on a project).

Reads are the hot path: every ``/v2`` pull asks "is this repository in a proxy project?", so the
(small) table of bindings is held in the process and re-read every :data:`RELOAD_SECONDS`; a
project made a proxy cache on another node is known here within that time. Refusing a push
reads the database directly, so it is exact on every node at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from moorage.db.identity_tables import projects
from moorage.db.proxy_tables import proxy_projects, registries
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.errors import RegistryError
from moorage.upstream.endpoints import EndpointError

__all__ = ["Binding", "ProxyBindings", "ProxyTarget"]


#: Seconds a process trusts its copy of the bindings.
RELOAD_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Binding:
    """A proxy project: its endpoint's id (``None`` once the endpoint was deleted) and name."""

    project_id: int
    project: str
    registry_id: int | None
    registry_name: str
    registry_type: str | None
    #: When the project became a proxy cache: cache rows of its repositories older than this belong to a
    #: deleted project of the same name and are ignored.
    bound_at: datetime
    #: Bytes the cache may keep before the least recently pulled artifacts are evicted (-1: no limit).
    cache_limit: int = -1


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """A repository of a proxy project and the name it has upstream (the project prefix removed)."""

    binding: Binding
    repository: str
    upstream_repository: str

    def endpoint_gone(self) -> RegistryError:
        """The error of a pull that needs the upstream while the project's endpoint is deleted."""
        b = self.binding
        return RegistryError(
            "UNAVAILABLE",
            f"project {b.project!r} is a proxy cache of registry endpoint {b.registry_name!r}, which was deleted, "
            f"and {self.repository} is not cached; an administrator must create the endpoint again and bind it "
            f"(PUT /api/v2.0/projects/{b.project} with registry_id), or delete the project",
            {"project": b.project, "endpoint": b.registry_name},
            status=502,
        )


class ProxyBindings:
    """The proxy projects, from the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_name: dict[str, Binding] = {}
        self._loaded_at = -RELOAD_SECONDS

    async def bind(self, conn: AsyncConnection, project_id: int, registry_id: int, cache_limit: int = -1) -> None:
        """Make a project a proxy cache of an endpoint, inside the caller's transaction (project create),
        with a cache size limit in bytes (``-1``: none; see :func:`moorage.proxy.eviction.parse_cache_limit`).

        Raises ``EndpointError`` (field ``registry_id``) when there is no such endpoint.
        """
        name = (await conn.execute(select(registries.c.name).where(registries.c.id == registry_id))).scalar()
        if name is None:
            raise EndpointError("invalid", f"registry_id: there is no registry endpoint {registry_id}; create it "
                                "first (POST /api/v2.0/registries); nothing was saved", "registry_id")
        await conn.execute(proxy_projects.insert().values(
            project_id=project_id, registry_id=registry_id, registry_name=name, created_at=datetime.now(UTC),
            cache_limit=cache_limit))
        self._loaded_at = -RELOAD_SECONDS  # this node knows at once

    async def set_cache_limit(self, project_id: int, cache_limit: int) -> None:
        """Change a proxy project's cache size limit (``-1``: none); the next fetch or GC run applies it.

        ``EndpointError`` ``invalid`` naming ``metadata.proxy_cache_limit`` when the project is no proxy cache.
        """
        async with self.db.write() as conn:
            result = await conn.execute(update(proxy_projects).where(proxy_projects.c.project_id == project_id)
                                        .values(cache_limit=cache_limit))
        if result.rowcount != 1:
            raise EndpointError("invalid", "metadata.proxy_cache_limit: only a proxy-cache project (one created with "
                                "registry_id) has a cache limit; nothing was saved", "metadata.proxy_cache_limit")
        self._loaded_at = -RELOAD_SECONDS

    async def rebind(self, project_id: int, registry_id: int) -> None:
        """Point a proxy project at another endpoint (e.g. after its endpoint was deleted and made again).

        ``EndpointError`` ``invalid`` naming ``registry_id`` when the project is no proxy cache (a
        regular project never becomes one: it may hold pushed artifacts) or the endpoint does not exist.
        """
        async with self.db.write() as conn:
            name = (await conn.execute(select(registries.c.name).where(registries.c.id == registry_id))).scalar()
            if name is None:
                raise EndpointError("invalid", f"registry_id: there is no registry endpoint {registry_id}; nothing "
                                    "was saved", "registry_id")
            result = await conn.execute(update(proxy_projects).where(proxy_projects.c.project_id == project_id)
                                        .values(registry_id=registry_id, registry_name=name))
            if result.rowcount != 1:
                raise EndpointError("invalid", "registry_id: only a proxy-cache project can change its endpoint; "
                                    "a regular project cannot become one (create a new project); nothing was saved",
                                    "registry_id")
        self._loaded_at = -RELOAD_SECONDS

    async def _reload(self) -> None:
        query = (
            select(projects.c.id, projects.c.name, proxy_projects.c.registry_id, proxy_projects.c.registry_name,
                   registries.c.type, proxy_projects.c.created_at, proxy_projects.c.cache_limit)
            .select_from(proxy_projects.join(projects).outerjoin(registries))
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        self._by_name = {row.name: Binding(row.id, row.name, row.registry_id, row.registry_name, row.type,
                                           aware(row.created_at), int(row.cache_limit)) for row in rows}
        self._loaded_at = time.monotonic()

    async def of_project(self, project: str) -> Binding | None:
        """The binding of a project by name (from the process's copy, at most :data:`RELOAD_SECONDS` old)."""
        if time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self._reload()
        return self._by_name.get(project)

    async def target(self, repository: str, *, fresh: bool = False) -> ProxyTarget | None:
        """The proxy target of a repository name, or ``None`` when its project is no proxy cache.

        ``fresh``: a project this process does not know as a proxy cache is looked up in the database
        (callers ask so after a miss, so a proxy project made seconds ago on another node answers at once).
        """
        project, slash, rest = repository.partition("/")
        if not slash:
            return None
        binding = await self.of_project(project)
        if binding is None and fresh:
            binding = await self._one(project)
        return None if binding is None else ProxyTarget(binding, repository, rest)

    async def _one(self, project: str) -> Binding | None:
        query = (
            select(projects.c.id, projects.c.name, proxy_projects.c.registry_id, proxy_projects.c.registry_name,
                   registries.c.type, proxy_projects.c.created_at, proxy_projects.c.cache_limit)
            .select_from(proxy_projects.join(projects).outerjoin(registries))
            .where(projects.c.name == project)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        binding = Binding(row.id, row.name, row.registry_id, row.registry_name, row.type, aware(row.created_at),
                          int(row.cache_limit))
        self._by_name[project] = binding
        return binding

    async def project_exists(self, name: str) -> bool:
        """Whether a project of that name exists (proxy projects from the copy, others from the database)."""
        if await self.of_project(name) is not None:
            return True
        async with self.db.read() as conn:
            return (await conn.execute(select(projects.c.id).where(projects.c.name == name))).first() is not None

    async def project_registry(self, project_id: int) -> int | None:
        """The endpoint id of a proxy project (``None`` for other projects and deleted endpoints)."""
        async with self.db.read() as conn:
            return (await conn.execute(
                select(proxy_projects.c.registry_id).where(proxy_projects.c.project_id == project_id))).scalar()

    async def cache_limit_of(self, project_id: int) -> int | None:
        """A proxy project's cache size limit (``-1``: none), from the database; ``None`` for other projects."""
        async with self.db.read() as conn:
            value = (await conn.execute(
                select(proxy_projects.c.cache_limit).where(proxy_projects.c.project_id == project_id))).scalar()
        return None if value is None else int(value)

    async def refuse_push(self, repository: str) -> None:
        """``DENIED`` when ``repository`` is in a proxy project (read from the database, not the copy)."""
        project = repository.partition("/")[0]
        query = (select(proxy_projects.c.registry_name).select_from(proxy_projects.join(projects))
                 .where(projects.c.name == project))
        async with self.db.read() as conn:
            endpoint = (await conn.execute(query)).scalar()
        if endpoint is not None:
            raise RegistryError(
                "DENIED",
                f"project {project!r} is a proxy cache of {endpoint!r}: proxy projects are read-only, pull from them "
                "only; push to a regular project instead",
                {"project": project},
            )
