"""Job kinds the registry itself defines, and the periodic schedule built from settings.

``uploads.purge`` (``storage.maintenance.uploadpurging``): every node schedules it each
``interval``, the dedup key makes that one job per interval cluster-wide, and whichever node
claims it first runs it.
"""

from __future__ import annotations

from moorage.config import Settings, parse_duration
from moorage.jobs.queue import Job
from moorage.jobs.runner import HandlerRegistry, Periodic
from moorage.registry.uploads import UploadService

__all__ = ["UPLOADS_PURGE", "register_builtin"]

UPLOADS_PURGE = "uploads.purge"


def register_builtin(registry: HandlerRegistry, settings: Settings, uploads: UploadService) -> list[Periodic]:
    """Register the built-in handlers; returns the periodic jobs the runner should schedule."""
    purging = settings.storage.maintenance.uploadpurging

    async def purge(job: Job) -> None:
        age = parse_duration(str(job.payload.get("age", purging.age)))
        await uploads.purge(age, dry_run=bool(job.payload.get("dry_run", purging.dryrun)))

    registry.register(UPLOADS_PURGE, purge)
    periodic: list[Periodic] = []
    # Read-only maintenance refuses the purge (WriteGuard); scheduling it would only fail every interval.
    if purging.enabled and not settings.storage.maintenance.readonly.enabled:
        periodic.append(Periodic(UPLOADS_PURGE, parse_duration(purging.interval), {"age": purging.age}))
    return periodic
