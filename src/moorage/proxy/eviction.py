"""A proxy project's cache size limit: evict the least recently pulled artifacts, then GC frees their bytes.

A proxy project may have a cache limit in bytes (``metadata.proxy_cache_limit``, stored in
``proxy_projects.cache_limit``; ``-1``: none). Its usage is its quota's (``quotas.storage_used``:
every blob linked into one of its repositories, each counted once). When a cold fetch leaves the
usage over the limit (:meth:`Evictions.after_fetch`), a ``proxy.evict`` job is queued, one per
project at a time whatever the number of nodes (:meth:`Evictions.enqueue`); every GC run (manual,
scheduled, ``moorage gc run``) first evicts in every proxy project over its limit, so that the
collector frees the bytes in the same run.

An eviction (:meth:`Evictions.evict`) reads the project's artifacts, chooses with the pure
:func:`~moorage.proxy.eviction_plan.plan_eviction` (least recently pulled first, down to the low
-water mark ``proxy.eviction_low_water`` × limit), and removes each chosen artifact through the
registry's services, never the tables: :meth:`Manifests.delete` of the artifact (which applies the
immutability rules in its own transaction: an artifact an immutable tag holds stays, and the choice
is made again without it), then of its index children and referrers that no surviving artifact
needs, then :meth:`Blobs.unlink` of the blobs it alone needed in that repository, so the project's
usage drops at once and the blobs become garbage. Unlink is fenced like every unlink: it refuses
while a manifest of the repository still references the blob, and a manifest stored meanwhile
either sees the link gone (and the proxy fetches the blob again) or makes the unlink refuse. GC then
deletes the bytes under its own protocol (docs/gc.md), after its grace window. Nothing here touches
another project, and an evicted artifact pulled again is simply fetched again from the upstream.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, update

from moorage.db.jobs_tables import jobs
from moorage.db.proxy_tables import proxy_projects
from moorage.db.quota_tables import quotas
from moorage.db.session import Database
from moorage.db.tables import blobs, manifest_references, manifests, repositories
from moorage.db.times import aware, aware_or_none
from moorage.errors import RegistryError
from moorage.jobs.queue import Job, JobQueue
from moorage.jobs.runner import HandlerRegistry
from moorage.numbers import INT64_MAX, parse_decimal
from moorage.proxy.bindings import Binding, ProxyBindings
from moorage.proxy.eviction_plan import CachedArtifact, EvictionPlan, plan_eviction
from moorage.registry.digests import parse_digest
from moorage.registry.guard import WriteGuard
from moorage.registry.immutability import ImmutableTagError
from moorage.registry.interfaces import Blobs, Manifests
from moorage.registry.pull_times import PullTimes
from moorage.registry.quota import human_size

__all__ = [
    "CACHE_LIMIT_FIELD",
    "PROXY_EVICT",
    "EvictionReport",
    "Evictions",
    "InvalidCacheLimit",
    "parse_cache_limit",
    "register_eviction",
]

log = structlog.get_logger("moorage.proxy")

PROXY_EVICT = "proxy.evict"
#: Where the limit is given and shown (``POST``/``PUT``/``GET /api/v2.0/projects``): Harbor's metadata map.
CACHE_LIMIT_FIELD = "metadata.proxy_cache_limit"


class InvalidCacheLimit(ValueError):
    """A cache limit that is not ``-1`` or a whole number of bytes from 0 to 2^63-1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{CACHE_LIMIT_FIELD}: {message}")
        self.message = f"{CACHE_LIMIT_FIELD}: {message}"


def parse_cache_limit(value: Any) -> int:
    """``value`` as a cache limit in bytes: ``-1`` (none) or 0 to 2^63-1; :class:`InvalidCacheLimit` otherwise.

    Harbor's project metadata values are strings, so ``"10737418240"`` and ``"-1"`` are read (ASCII
    digits only, the whole string: :func:`moorage.numbers.parse_decimal`), and so are JSON integers.
    ``"10G"``, ``"1e9"``, ``" 5"``, ``1.5``, ``true`` and ``-2`` are refused rather than guessed at.
    """
    hint = "give a number of bytes such as \"10737418240\" (10 GiB), or \"-1\" for no limit; nothing was saved"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidCacheLimit(f"{value!r} is not a number of bytes; {hint}")
    if isinstance(value, int):
        if value == -1 or 0 <= value <= INT64_MAX:
            return value
        raise InvalidCacheLimit(f"{value} is out of range; {hint}")
    if value == "-1":
        return -1
    try:
        return parse_decimal(value)
    except ValueError as exc:
        raise InvalidCacheLimit(f"{exc}; {hint}") from None


@dataclass(slots=True)
class _Unit:
    """A top-level artifact of a repository with the manifests that go with it (children, referrers)."""

    repository: str
    members: list[str]  # the artifact's digest first
    artifact: CachedArtifact


@dataclass(slots=True)
class EvictionReport:
    """What an eviction did: one log line per artifact, and the usage before and after (bytes)."""

    project_id: int
    limit: int
    plan: EvictionPlan | None = None
    evicted: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Evictions:
    """Cache limits of proxy projects: the trigger, the one-at-a-time job, and the eviction itself."""

    def __init__(self, db: Database, bindings: ProxyBindings, manifests: Manifests, blobs: Blobs,
                 queue: JobQueue | None, *, low_water: float = 0.9, pulls: PullTimes | None = None,
                 guard: WriteGuard | None = None) -> None:
        self.db = db
        self.bindings = bindings
        self.manifests = manifests
        self.blobs = blobs
        self.queue = queue
        self.low_water = low_water
        self.pulls = pulls
        self.guard = guard or WriteGuard()

    # -- triggers ----------------------------------------------------------------------------
    async def after_fetch(self, binding: Binding) -> int | None:
        """After a cold fetch was linked: queue an eviction when the project is over its limit (its job id).

        The limit comes from the process's copy of the bindings (at most a few seconds old), so a
        project without one costs nothing here; with one, one indexed read of the usage.
        """
        return await self.check(binding.project_id, binding.cache_limit)

    async def check(self, project_id: int, cache_limit: int) -> int | None:
        """Queue an eviction when the project's usage is over ``cache_limit`` (also after the limit changed)."""
        if cache_limit < 0 or self.queue is None:
            return None
        async with self.db.read() as conn:
            used = (await conn.execute(
                select(quotas.c.storage_used).where(quotas.c.project_id == project_id))).scalar()
        if used is None or int(used) <= cache_limit:
            return None
        try:
            self.guard.deletable()
        except RegistryError:
            return None  # read-only or deletes disabled: an eviction would only fail
        return await self.enqueue(project_id)

    async def enqueue(self, project_id: int) -> int | None:
        """Queue the project's next eviction unless one is queued or running; its job id (``None``: no proxy project).

        ``proxy_projects.evict_job_id`` names the latest eviction job; the next one's dedup key is made
        from it, so nodes that look at the same moment enqueue the same key and the job table keeps
        one; once that job has finished, the next trigger makes a new key. The binding's creation
        time is in the key too, so a project made again with a reused id never meets old keys.
        """
        if self.queue is None:
            return None
        async with self.db.write() as conn:
            row = (await conn.execute(
                select(proxy_projects.c.evict_job_id, proxy_projects.c.created_at, jobs.c.state)
                .select_from(proxy_projects.outerjoin(jobs, jobs.c.id == proxy_projects.c.evict_job_id))
                .where(proxy_projects.c.project_id == project_id))).first()
            if row is None:
                return None
            if row.state in ("queued", "running"):
                return int(row.evict_job_id)
            bound = aware(row.created_at).timestamp()
            key = f"{PROXY_EVICT}:{project_id}:{bound:.6f}:{row.evict_job_id or 0}"
            job_id = await self.queue.enqueue(PROXY_EVICT, {"project_id": project_id}, dedup_key=key,
                                              max_attempts=3, conn=conn)
            await conn.execute(update(proxy_projects).where(proxy_projects.c.project_id == project_id)
                               .values(evict_job_id=job_id))
        return job_id

    async def over_limit(self) -> list[int]:
        """Proxy projects whose usage is over their cache limit, in id order."""
        query = (
            select(proxy_projects.c.project_id)
            .select_from(proxy_projects.join(quotas, quotas.c.project_id == proxy_projects.c.project_id))
            .where(proxy_projects.c.cache_limit >= 0, quotas.c.storage_used > proxy_projects.c.cache_limit)
            .order_by(proxy_projects.c.project_id)
        )
        async with self.db.read() as conn:
            return [int(pid) for pid in (await conn.execute(query)).scalars()]

    async def evict_over_limit(self) -> list[str]:
        """Evict in every proxy project over its limit (what a GC run does first); the log lines.

        A project whose eviction fails is logged and skipped: GC goes on with the others.
        """
        lines: list[str] = []
        for project_id in await self.over_limit():
            try:
                report = await self.evict(project_id)
            except Exception as exc:  # noqa: BLE001 - GC must still run; the next run tries again
                log.warning("proxy_eviction_failed", project_id=project_id, error=str(exc))
                lines.append(f"proxy project {project_id}: eviction failed: {exc}")
                continue
            lines.extend(report.lines)
        return lines

    # -- the eviction ------------------------------------------------------------------------
    async def evict(self, project_id: int) -> EvictionReport:
        """Evict the least recently pulled artifacts until the usage is at most the low-water mark.

        Raises what the services raise (``UNSUPPORTED`` while read-only or with deletes disabled);
        a rerun starts from the state then, so a failed attempt only did part of the work.
        """
        limit = await self.bindings.cache_limit_of(project_id)
        report = EvictionReport(project_id, -1 if limit is None else limit)
        if limit is None or limit < 0:
            return report
        self.guard.deletable()
        if self.pulls is not None:
            await self.pulls.flush()  # this node's pulls count
        units, sizes, used = await self._load(project_id)
        needed = {digest for unit in units.values() for digest in unit.artifact.blobs}
        other = max(0, used - sum(sizes.get(digest, 0) for digest in needed))
        target = int(limit * self.low_water)
        gone: set[str] = set()
        pinned: set[str] = set()
        while True:
            remaining = [unit.artifact for key, unit in units.items() if key not in gone]
            plan = plan_eviction(remaining, sizes, limit=target if gone else limit, target=target, other_bytes=other,
                                 pinned=frozenset(pinned))
            if report.plan is None:
                report.plan = plan
            if not plan.evict:
                break
            replan = False
            for key in plan.evict:
                unit = units[key]
                held = await self._evict_unit(unit, [u for k, u in units.items() if k not in gone and k != key])
                if held is not None:
                    pinned.add(key)
                    report.lines.append(f"KEPT    {key}: over the cache limit, but {held}")
                    replan = True
                    break
                gone.add(key)
                report.evicted.append(key)
                report.lines.append(f"EVICTED {key} last used {_iso(unit.artifact.last_used)}")
            if not replan:
                break
        if report.plan is not None and report.plan.evict:
            after = other + sum(sizes.get(d, 0) for d in {d for k, u in units.items() if k not in gone
                                                          for d in u.artifact.blobs})
            report.lines.insert(0, f"proxy project {project_id}: {human_size(report.plan.usage_before)} cached, over its "
                                   f"limit of {human_size(limit)}; evicting {len(report.evicted)} artifact(s) leaves "
                                   f"{human_size(after)} once GC has deleted their bytes")
            log.info("proxy_evicted", project_id=project_id, artifacts=len(report.evicted),
                     before=report.plan.usage_before, after=after, limit=limit)
        return report

    async def _evict_unit(self, unit: _Unit, survivors: list[_Unit]) -> str | None:
        """Delete the artifact, then what only it needed in its repository; the reason when it must stay."""
        repository = unit.repository
        try:
            await self.manifests.delete(repository, parse_digest(unit.members[0]))
        except ImmutableTagError as exc:
            return f"it is immutable: {exc.message}"
        except RegistryError as exc:
            if exc.code != "MANIFEST_UNKNOWN":  # deleted meanwhile: what it needed may still go
                raise
        same = [u for u in survivors if u.repository == repository]
        kept_manifests = {digest for u in same for digest in u.members}
        kept_blobs = {digest for u in same for digest in u.artifact.blobs}
        for digest in unit.members[1:]:  # children and referrers, after their parent
            if digest in kept_manifests:
                continue
            try:
                await self.manifests.delete(repository, parse_digest(digest))
            except RegistryError as exc:  # immutable, or gone meanwhile: it stays (or is gone)
                if exc.code not in ("MANIFEST_UNKNOWN", "DENIED"):
                    raise
        for digest in sorted(unit.artifact.blobs - kept_blobs):
            try:
                await self.blobs.unlink(repository, parse_digest(digest))
            except RegistryError as exc:
                # BLOB_UNKNOWN: not linked (any more). DENIED: a manifest of the repository still needs it
                # (a new one stored meanwhile, or a manifest that stayed): the link stays, as it must.
                if exc.code not in ("BLOB_UNKNOWN", "DENIED"):
                    raise
        return None

    async def _load(self, project_id: int) -> tuple[dict[str, _Unit], dict[str, int], int]:
        """The project's evictable units, the size of every digest they need, and the quota's usage."""
        in_project = repositories.c.project_id == project_id
        manifest_rows = (
            select(manifests.c.id, manifests.c.digest, manifests.c.size, manifests.c.created_at, manifests.c.pulled_at,
                   manifests.c.subject_digest, repositories.c.name)
            .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
            .where(in_project)
        )
        reference_rows = (
            select(manifest_references.c.manifest_id, manifest_references.c.kind, manifest_references.c.digest,
                   blobs.c.size)
            .select_from(manifest_references.join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                         .join(repositories, repositories.c.id == manifests.c.repository_id)
                         .outerjoin(blobs, blobs.c.digest == manifest_references.c.digest))
            .where(in_project)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(manifest_rows)).all()
            refs = (await conn.execute(reference_rows)).all()
            used = (await conn.execute(select(quotas.c.storage_used).where(quotas.c.project_id == project_id))).scalar()
        sizes: dict[str, int] = {}
        blob_refs: dict[int, set[str]] = defaultdict(set)
        child_refs: dict[int, set[str]] = defaultdict(set)
        for ref in refs:
            if ref.kind == "manifest":
                child_refs[ref.manifest_id].add(ref.digest)
            else:
                blob_refs[ref.manifest_id].add(ref.digest)
                sizes[ref.digest] = int(ref.size or 0)
        by_repository: dict[str, dict[str, Any]] = defaultdict(dict)
        for row in rows:
            by_repository[row.name][row.digest] = row
            sizes[row.digest] = int(row.size)
        units: dict[str, _Unit] = {}
        for repository, present in by_repository.items():
            children = {d: sorted(child_refs[row.id] & present.keys()) for d, row in present.items()}
            referrers: dict[str, list[str]] = defaultdict(list)
            for d, row in sorted(present.items()):
                if row.subject_digest in present and row.subject_digest != d:
                    referrers[row.subject_digest].append(d)
            inner = {c for cs in children.values() for c in cs} | {r for rs in referrers.values() for r in rs}
            for top in sorted(present.keys() - inner):
                members = [top]
                seen = {top}
                for current in members:  # grows while walked: breadth first
                    for nxt in [*children[current], *referrers.get(current, [])]:
                        if nxt not in seen:
                            seen.add(nxt)
                            members.append(nxt)
                needs: set[str] = set(members)
                last = datetime.min.replace(tzinfo=UTC)
                for digest in members:
                    row = present[digest]
                    needs |= blob_refs[row.id]
                    last = max(last, aware_or_none(row.pulled_at) or aware(row.created_at))
                key = f"{repository}@{top}"
                units[key] = _Unit(repository, members, CachedArtifact(key, last, frozenset(needs)))
        return units, sizes, int(used or 0)


def register_eviction(registry: HandlerRegistry, evictions: Evictions) -> None:
    """Register the ``proxy.evict`` handler (payload ``project_id``); a failed attempt is retried and
    starts from the state then."""

    async def run(job: Job) -> None:
        report = await evictions.evict(int(job.payload["project_id"]))
        for line in report.lines:
            log.info("proxy_eviction", job=job.id, line=line)

    registry.register(PROXY_EVICT, run)
