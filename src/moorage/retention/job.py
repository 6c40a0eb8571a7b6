"""The ``retention.run`` handler: evaluate a project's policy per repository and act on it.

It reads through the registry's services and deletes through them, never the tables: the
repositories of the policy's project (:meth:`Repositories.of_project`, by project id, so a
run never touches another project, whatever names look alike), their artifacts with tags,
push and pull times (:meth:`Repositories.artifacts`), and each removal is
:meth:`Manifests.delete` by digest, which applies the tag immutability rules in its own
transaction: an artifact an immutable tag holds is kept, and the task log says which rule (a dry run asks
:meth:`ImmutableRules.holding`, the same rules, and reports it the same way).

Candidates are a repository's top-level artifacts: an index's children and the referrers of
an artifact in the repository (signatures, SBOMs) go with their parent, as in Harbor; once a
parent is removed, ``moorage gc run --delete-untagged`` removes what only it needed.

Before removing an artifact the run reads it again and leaves it when its tags changed since
the evaluation (a push moved a tag onto it): the next run decides with the new tags.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from moorage.errors import RegistryError
from moorage.jobs.queue import Job, JobStopped
from moorage.jobs.runner import HandlerRegistry
from moorage.registry.digests import parse_digest
from moorage.registry.guard import WriteGuard
from moorage.registry.immutability import ImmutableRules, ImmutableTagError
from moorage.registry.interfaces import Manifests, Repositories
from moorage.registry.pull_times import PullTimes
from moorage.registry.repository_service import ArtifactInfo, RepositoryInfo
from moorage.retention.evaluate import Candidate, evaluate
from moorage.retention.service import RETENTION_RUN, RetentionPolicy, RetentionService

__all__ = ["RetentionRunner", "register_retention"]

log = structlog.get_logger("moorage.retention")

_PAGE = 100


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "never"


def _line(verdict: str, artifact: ArtifactInfo, why: str) -> str:
    tags = ",".join(t.name for t in artifact.tags) or "<untagged>"
    return (f"{verdict:<8} {artifact.digest} tags={tags} pushed={_iso(artifact.created_at)} "
            f"pulled={_iso(artifact.pulled_at)}: {why}")


def _tags(artifact: ArtifactInfo) -> tuple[str, ...]:
    return tuple(sorted(t.name for t in artifact.tags))


class RetentionRunner:
    """One execution of a policy (also usable without the job table, e.g. from tests)."""

    def __init__(
        self,
        service: RetentionService,
        repositories: Repositories,
        manifests: Manifests,
        immutable: ImmutableRules,
        *,
        guard: WriteGuard | None = None,
        pulls: PullTimes | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.repositories = repositories
        self.manifests = manifests
        self.immutable = immutable
        self.guard = guard or WriteGuard()
        self.pulls = pulls
        self.clock = clock

    async def _project_repositories(self, project_id: int) -> list[RepositoryInfo]:
        found: list[RepositoryInfo] = []
        while True:
            page, total = await self.repositories.of_project(project_id, len(found), _PAGE)
            found.extend(page)
            if not page or len(found) >= total:
                return found

    async def _artifacts(self, name: str) -> list[ArtifactInfo]:
        found: list[ArtifactInfo] = []
        while True:
            page, total = await self.repositories.artifacts(name, len(found), _PAGE)
            found.extend(page)
            if not page or len(found) >= total:
                return found

    async def run(self, execution_id: int, policy: RetentionPolicy, dry_run: bool) -> None:
        """Evaluate and (unless ``dry_run``) remove, one task per repository; :class:`JobStopped`
        once a stop was requested, noticed between repositories and between two removals (that
        repository's task then says ``Stopped``; nothing after the stop was touched)."""
        if not dry_run:
            self.guard.deletable()  # read-only or deletes disabled: the same refusal as every entry point
        if self.pulls is not None:
            await self.pulls.flush()  # this node's pulls count
        await self.service.started(execution_id)
        for repository in await self._project_repositories(policy.project_id):
            await self._boundary(execution_id, f"before {repository.name}")
            await self._repository(execution_id, policy, repository.name, dry_run)
        await self.service.ended(execution_id)

    async def _boundary(self, execution_id: int, where: str) -> None:
        """:class:`JobStopped` when someone asked the execution to stop (``PATCH …/executions/{id}``)."""
        if await self.service.queue.stop_requested(execution_id):
            await self.service.ended(execution_id)
            raise JobStopped(f"retention execution {execution_id} stopped {where}")

    async def _repository(self, execution_id: int, policy: RetentionPolicy, name: str, dry_run: bool) -> None:
        started = self.clock()
        try:
            artifacts = await self._artifacts(name)
        except RegistryError:  # deleted meanwhile
            return
        digests = {a.digest for a in artifacts}
        children = {child for a in artifacts for child in a.children}
        top = [a for a in artifacts if a.digest not in children and not (a.subject and a.subject in digests)]
        inside = name.split("/", 1)[1] if "/" in name else name
        candidates = [Candidate(a.digest, _tags(a), a.created_at, a.pulled_at) for a in top]
        result = evaluate(policy.rules, inside, candidates, started)
        by_digest = {a.digest: a for a in top}
        lines = [f"repository {name}: {len(top)} artifact(s)" + ("" if result.applies else
                                                               ", no enabled rule applies: nothing removed")]
        removed = 0  # (or, in a dry run, that would be)
        status = "Success"
        for artifact in top:
            reason = result.kept.get(artifact.digest)
            if reason is not None:
                lines.append(_line("RETAIN", artifact, reason))
        for digest in result.removed:
            artifact = by_digest[digest]
            if dry_run:
                held = await self.immutable.holding(name, digest)
                if held is not None:
                    lines.append(_line("KEEP", artifact, f"no rule retains it, but it is immutable: {held.message}"))
                else:
                    removed += 1
                    lines.append(_line("REMOVE", artifact, "no rule retains it (dry run: nothing was removed)"))
                continue
            if await self.service.queue.stop_requested(execution_id):  # a big repository stops between deletes
                status = "Stopped"
                lines.append(f"stopped on request before {digest}; the rest of this repository was not touched")
                break
            verdict, why = await self._remove(name, artifact)
            removed += verdict == "REMOVED"
            lines.append(_line(verdict, artifact, why))
        await self.service.record_task(execution_id, name, status, (len(top), len(top) - removed), started,
                                       "\n".join(lines) + "\n")
        if status == "Stopped":
            await self._boundary(execution_id, f"in {name}")

    async def _remove(self, name: str, artifact: ArtifactInfo) -> tuple[str, str]:
        try:
            now, _ = await self.repositories.artifacts(name, 0, 1, artifact.digest)
        except RegistryError:
            return "GONE", "the repository was deleted meanwhile"
        if not now:
            return "GONE", "deleted meanwhile"
        if _tags(now[0]) != _tags(artifact):
            return "KEPT", "its tags changed since it was evaluated; the next run decides"
        try:
            await self.manifests.delete(name, parse_digest(artifact.digest))
        except ImmutableTagError as exc:
            return "KEPT", f"no rule retains it, but it is immutable: {exc.message}"
        except RegistryError as exc:
            if exc.code == "MANIFEST_UNKNOWN":
                return "GONE", "deleted meanwhile"
            raise
        log.info("retention_removed", repository=name, digest=artifact.digest)
        return "REMOVED", "no rule retains it"


def register_retention(registry: HandlerRegistry, runner: RetentionRunner) -> None:
    """Register the ``retention.run`` handler: one execution per job, retried on failure (a rerun
    evaluates again, so what the failed attempt removed is simply gone)."""

    async def run(job: Job) -> None:
        found = await runner.service.policy_of(job.id)
        if found is None:  # the policy was deleted with its history
            log.info("retention_policy_gone", job=job.id)
            return
        policy, dry_run = found
        await runner.run(job.id, policy, dry_run)

    registry.register(RETENTION_RUN, run)

