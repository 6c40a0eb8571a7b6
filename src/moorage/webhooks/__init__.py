"""Webhooks: per-project policies (Harbor's API), events queued as durable jobs, deliveries logged.

:func:`build_webhooks` wires the pieces for :class:`moorage.services.Services`: the policy store,
the service entry points call (``emit``), and the ``webhook.deliver`` job handler.
"""

from __future__ import annotations

from moorage.auth.keys import SecretBox
from moorage.config import WebhookSettings
from moorage.db.session import Database
from moorage.jobs.queue import JobQueue
from moorage.jobs.runner import HandlerRegistry
from moorage.net.tls import TrustStore
from moorage.webhooks.delivery import Deliverer
from moorage.webhooks.policies import PolicyStore
from moorage.webhooks.service import DELIVER, WebhookService

__all__ = ["Deliverer", "PolicyStore", "WebhookService", "build_webhooks"]


def build_webhooks(settings: WebhookSettings, db: Database, queue: JobQueue, handlers: HandlerRegistry,
                   trust: TrustStore, secret_key: str) -> tuple[WebhookService, Deliverer]:
    """The webhook service and its deliverer (registered as the ``webhook.deliver`` handler)."""
    addresses = settings.address_policy()
    store = PolicyStore(db, SecretBox(secret_key), addresses)
    service = WebhookService(db, queue, store, max_attempts=settings.max_attempts)
    deliverer = Deliverer(db, store, addresses, trust, timeout=settings.timeout)
    handlers.register(DELIVER, deliverer)
    return service, deliverer
