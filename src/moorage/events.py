"""Artifact events: one place where a finished push, pull or delete is announced to whoever listens.

Every entry point that changes or serves an artifact (the ``/v2`` API, the REST API, jobs)
publishes one :class:`ArtifactEvent` after the operation committed; the subscribers (webhooks,
replication's event trigger) decide what to do with it. A subscriber's failure is logged and
never fails or slows the operation beyond its own short write (write order: bytes, metadata,
then events — STYLE.md habit 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

__all__ = ["ArtifactEvent", "ArtifactEvents", "ArtifactSubscriber", "Operation"]

log = structlog.get_logger("moorage.events")

#: ``quota_exceeded``: a push refused by the project's quota (nothing was stored; ``detail`` says which limit).
#: ``replicated``: a replication task of this registry's ``repository`` ended (``attributes`` say how).
Operation = Literal["push", "pull", "delete", "quota_exceeded", "replicated"]


@dataclass(frozen=True, slots=True)
class ArtifactEvent:
    """A push, pull or delete of ``repository`` that succeeded.

    ``tag`` is set when the client named a tag, ``digest`` when the manifest's digest is known;
    ``host`` is the registry's address as the client used it (for pull commands in payloads).
    """

    operation: Operation
    repository: str
    operator: str
    digest: str | None = None
    tag: str | None = None
    host: str | None = None
    detail: str | None = None
    #: Facts of operations other than push, pull and delete (a replication's status, sides and trigger).
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """The tag when there is one, else the digest."""
        return self.tag or self.digest or ""


class ArtifactSubscriber(Protocol):
    async def on_artifact(self, event: ArtifactEvent) -> None:
        """React to ``event``; exceptions are logged by the publisher, not raised to the client."""
        ...


class ArtifactEvents:
    """The subscribers of this process, called in order for each event."""

    def __init__(self, subscribers: Iterable[ArtifactSubscriber] = ()) -> None:
        self._subscribers = list(subscribers)

    def subscribe(self, subscriber: ArtifactSubscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, event: ArtifactEvent) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber.on_artifact(event)
            except Exception as exc:  # noqa: BLE001 - the operation already succeeded
                log.warning("event_subscriber_failed", subscriber=type(subscriber).__name__,
                            operation=event.operation, repository=event.repository, error=str(exc))
