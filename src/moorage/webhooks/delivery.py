"""The ``webhook.deliver`` job: send one event to one target, record the outcome in the delivery log.

A failed attempt (a connection error, a timeout, an answer other than 2xx) raises, so the job
queue retries it with its backoff (2, 4, 8, … seconds, at most 5 minutes) until
``webhooks.max_attempts``; the delivery row says ``Scheduled`` in between and ``Error`` at the
end. A target the address rules refuse is not retried: it would be refused again.

Each request carries:

* ``Content-Type``: ``application/json`` (Harbor's payload) or ``application/cloudevents+json``;
* ``Authorization``: the target's ``auth_header``, as Harbor sends it;
* ``X-Moorage-Event-Id`` (the same for every attempt and target of one event; dedupe on it),
  ``X-Moorage-Event`` (the type) and ``X-Moorage-Delivery`` (the delivery log id);
* ``X-Moorage-Signature-256: sha256=<hex>`` when the target has a ``secret``: HMAC-SHA256 of
  the exact body bytes under that secret (GitHub's scheme; compare in constant time).

The request goes to an address that was resolved and checked just before (``Host`` and TLS SNI
keep the name, and the certificate is verified against the name), redirects are not followed,
and the whole attempt is bounded by ``webhooks.timeout``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import select, update

from moorage.db.session import Database
from moorage.db.webhook_tables import webhook_deliveries
from moorage.jobs.queue import Job
from moorage.metrics import WEBHOOK_DELIVERIES
from moorage.net.addresses import AddressPolicy, ForbiddenAddress, resolve_checked
from moorage.net.tls import TrustStore
from moorage.webhooks.events import format_body
from moorage.webhooks.policies import PolicyStore, Target

__all__ = ["Deliverer", "DeliveryFailed", "signature"]

log = structlog.get_logger("moorage.webhooks")


class DeliveryFailed(RuntimeError):
    """An attempt failed and will be retried; the message is what the delivery log shows."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Moorage-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Deliverer:
    """Runs ``webhook.deliver`` jobs; one instance per process, its HTTP clients shared."""

    def __init__(self, db: Database, policies: PolicyStore, addresses: AddressPolicy, trust: TrustStore, *,
                 timeout: float = 10.0) -> None:
        self.db = db
        self.policies = policies
        self.addresses = addresses
        self.trust = trust
        self.timeout = timeout
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def _client(self, skip_verify: bool) -> httpx.AsyncClient:
        client = self._clients.get(skip_verify)
        if client is None:
            client = httpx.AsyncClient(
                verify=self.trust.verify(skip_verify=skip_verify), timeout=self.timeout, follow_redirects=False,
                trust_env=False,  # no proxy from the environment: the address rules must see the real target
            )
            self._clients[skip_verify] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def _set(self, delivery_id: int, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                               .values(updated_at=datetime.now(UTC), **values))

    async def __call__(self, job: Job) -> None:
        delivery_id = int(job.payload["delivery_id"])
        async with self.db.read() as conn:
            row = (await conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id))).first()
        if row is None:
            return  # its policy was deleted: nothing to send
        policy = await self.policies.by_id(row.policy_id)
        if policy is None or not policy.enabled or row.target_index >= len(policy.targets):
            await self._set(delivery_id, status="Stopped", attempts=job.attempts,
                            last_error="the policy was disabled, deleted or lost this target before delivery")
            return
        target = policy.targets[row.target_index]
        await self._set(delivery_id, status="Running", attempts=job.attempts)
        try:
            status = await self.send(target, json.loads(row.payload), event_id=row.event_id,
                                     delivery_id=delivery_id, project_id=policy.project_id, policy_id=policy.id)
        except ForbiddenAddress as exc:
            await self._set(delivery_id, status="Error", last_error=f"refused, not retried: {exc}")
            WEBHOOK_DELIVERIES.labels(row.event_type, "refused").inc()
            log.warning("webhook_refused", delivery=delivery_id, error=str(exc))
            return
        except (DeliveryFailed, httpx.HTTPError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            final = job.attempts >= job.max_attempts
            WEBHOOK_DELIVERIES.labels(row.event_type, "error" if final else "retry").inc()
            await self._set(delivery_id, status="Error" if final else "Scheduled",
                            last_error=f"attempt {job.attempts} of {job.max_attempts}: {message}"[:2000])
            raise DeliveryFailed(message) from None
        await self._set(delivery_id, status="Success", last_error=f"answered {status}")
        WEBHOOK_DELIVERIES.labels(row.event_type, "success").inc()

    async def send(self, target: Target, payload: dict[str, Any], *, event_id: str, delivery_id: int,
                   project_id: int, policy_id: int) -> int:
        """POST the event to ``target``; returns the status. :class:`ForbiddenAddress` when the address rules
        refuse it now, :class:`DeliveryFailed` for an answer other than 2xx, httpx errors for the rest."""
        body, content_type = format_body(payload, target.payload_format, event_id=event_id,
                                         project_id=project_id, policy_id=policy_id)
        parts = urlsplit(target.address)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await resolve_checked(host, port, self.addresses)
        if not addresses:
            raise DeliveryFailed(f"{host} resolved to no address")
        headers = {
            "Content-Type": content_type,
            "User-Agent": "moorage-webhook",
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "X-Moorage-Event-Id": event_id,
            "X-Moorage-Event": str(payload.get("type", "")),
            "X-Moorage-Delivery": str(delivery_id),
        }
        if target.auth_header:
            headers["Authorization"] = target.auth_header
        if target.secret:
            headers["X-Moorage-Signature-256"] = signature(target.secret, body)
        # Each checked address in turn until one connects (a name with an unreachable IPv6 address).
        for index, address in enumerate(addresses):
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                response = await self._client(target.skip_cert_verify).post(
                    url, content=body, headers=headers, extensions={"sni_hostname": host}
                )
                break
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"{target.address} answered {response.status_code}: {response.text[:200]!r}")
        return response.status_code
