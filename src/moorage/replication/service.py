"""Replication wired into a node: the job handler, the event subscriber and the schedule tick.

Every node registers the same handler and tick; the job table hands each execution to one node
and the dedup keys make one execution per event or due minute (see :mod:`moorage.replication.job`).
The remote side of a policy is opened per run from its endpoint (credentials decrypted only for
the client) and closed when the run ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from moorage.db.session import Database
from moorage.events import ArtifactEvent, ArtifactEvents
from moorage.jobs.queue import JobQueue
from moorage.jobs.runner import HandlerRegistry
from moorage.net.tls import TrustStore
from moorage.replication.adapters import PeerError, RegistryAdapter
from moorage.replication.executions import ReplicationExecutions
from moorage.replication.job import RemoteFactory, ReplicationRunner, ReplicationTrigger
from moorage.replication.policies import ReplicationPolicies
from moorage.replication.remote import RemoteAdapter
from moorage.upstream.client import UpstreamClient
from moorage.upstream.endpoints import EndpointError, Endpoints

__all__ = ["Replication", "remote_factory"]

#: Seconds a replication request may take before the task retries it (a 100 MiB chunk on a slow link).
TIMEOUT = 120.0
#: Requests in flight to one endpoint during a run: blobs of several artifacts at once.
CONCURRENCY = 16


def remote_factory(endpoints: Endpoints, trust: TrustStore) -> RemoteFactory:
    """Open an endpoint as a :class:`RemoteAdapter` for one run."""

    @asynccontextmanager
    async def open_remote(endpoint_id: int) -> AsyncIterator[RegistryAdapter]:
        try:
            connection = await endpoints.connection(endpoint_id)
        except EndpointError as exc:
            raise PeerError(f"{exc}; edit the policy to use an existing endpoint", retryable=False) from None
        client = UpstreamClient(connection, trust=trust, timeout=TIMEOUT, concurrency=CONCURRENCY)
        try:
            yield RemoteAdapter(client)
        finally:
            await client.aclose()

    return open_remote


class Replication:
    """The trigger a node's entry points use, after the handler is registered."""

    def __init__(self, db: Database, queue: JobQueue, handlers: HandlerRegistry, local: RegistryAdapter,
                 endpoints: Endpoints, trust: TrustStore, events: ArtifactEvents | None = None) -> None:
        self.policies = ReplicationPolicies(db)
        self.executions = ReplicationExecutions(db)
        self.trigger = ReplicationTrigger(self.policies, queue, self.executions)
        ReplicationRunner(self.policies, self.executions, local, remote_factory(endpoints, trust),
                          events=events).register(handlers)

    async def on_artifact(self, event: ArtifactEvent) -> None:
        """The :class:`~moorage.events.ArtifactEvents` subscriber: pushes and deletes start event-based policies."""
        if event.operation != "pull":
            await self.trigger.on_artifact(event.operation, event.repository, event.reference, event.digest)

    async def tick(self) -> object:
        """The node's schedule tick (each due minute once cluster-wide)."""
        return await self.trigger.tick()
