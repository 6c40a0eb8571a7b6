"""Webhook event types and payloads: Harbor's default format and its CloudEvents format.

The default payload is what Harbor 2.x sends, so receivers written for Harbor (Argo CD Image
Updater, Jenkins and GitLab triggers, chat bots) work unchanged::

    {"type": "PUSH_ARTIFACT", "occur_at": 1700000000, "operator": "admin",
     "event_data": {"resources": [{"digest": "sha256:…", "tag": "v1",
                                   "resource_url": "registry.example.com/team/app:v1"}],
                    "repository": {"date_created": 1699990000, "name": "app", "namespace": "team",
                                   "repo_full_name": "team/app", "repo_type": "private"}}}

The CloudEvents format (``payload_format: CloudEvents``) is CloudEvents 1.0 in structured JSON
mode (``Content-Type: application/cloudevents+json``) with Harbor's type names
(``harbor.artifact.pushed``), ``source`` ``/projects/<id>/webhook/policies/<id>``, the event
data as ``data`` and the ``operator`` extension, as Harbor's own CloudEvents formatter sends it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CLOUDEVENT_TYPES",
    "DELETE_ARTIFACT",
    "EVENT_TYPES",
    "PAYLOAD_FORMATS",
    "PULL_ARTIFACT",
    "PUSH_ARTIFACT",
    "QUOTA_EXCEED",
    "REPLICATION",
    "WebhookEvent",
    "format_body",
]

PUSH_ARTIFACT = "PUSH_ARTIFACT"
PULL_ARTIFACT = "PULL_ARTIFACT"
DELETE_ARTIFACT = "DELETE_ARTIFACT"
#: A push the project's quota refused (the ``quota_exceeded`` artifact event of :mod:`moorage.events`).
QUOTA_EXCEED = "QUOTA_EXCEED"
#: A replication task of one of the project's repositories ended (``event_data.replication``, as Harbor).
REPLICATION = "REPLICATION"

#: The event types a policy may subscribe to: those this registry emits. Harbor's ``SCANNING_*``
#: join this table (and CLOUDEVENT_TYPES) when scanning exists.
EVENT_TYPES: tuple[str, ...] = (PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT, QUOTA_EXCEED, REPLICATION)

#: Harbor's CloudEvents type for each event type.
CLOUDEVENT_TYPES: dict[str, str] = {
    PUSH_ARTIFACT: "harbor.artifact.pushed",
    PULL_ARTIFACT: "harbor.artifact.pulled",
    DELETE_ARTIFACT: "harbor.artifact.deleted",
    QUOTA_EXCEED: "harbor.quota.exceeded",
    REPLICATION: "harbor.replication.status.changed",
}

PAYLOAD_FORMATS: tuple[str, ...] = ("Default", "CloudEvents")


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One thing that happened in a project, as receivers will see it.

    ``id`` is unique per event (a UUID made where the event happened); it is the delivery's
    identity in the dedup key, the ``X-Moorage-Event-Id`` header and the CloudEvents ``id``.
    """

    type: str
    project_id: int
    project: str
    public: bool
    repository: str
    operator: str
    digest: str | None = None
    tag: str | None = None
    resource_url: str | None = None
    repository_created: datetime | None = None
    custom: dict[str, str] = field(default_factory=dict)
    #: Harbor's ``event_data.replication`` of a ``REPLICATION`` event (then the only event data).
    replication: dict[str, Any] | None = None
    occurred: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def payload(self) -> dict[str, Any]:
        """Harbor's default payload."""
        name = self.repository.split("/", 1)[1] if "/" in self.repository else self.repository
        resource: dict[str, Any] = {}
        if self.digest:
            resource["digest"] = self.digest
        if self.tag:
            resource["tag"] = self.tag
        if self.resource_url:
            resource["resource_url"] = self.resource_url
        if self.replication is not None:
            return {"type": self.type, "occur_at": int(self.occurred.timestamp()), "operator": self.operator,
                    "event_data": {"replication": self.replication}}
        created = self.repository_created or self.occurred
        data: dict[str, Any] = {
            "resources": [resource] if resource else [],
            "repository": {
                "date_created": int(created.timestamp()),
                "name": name,
                "namespace": self.project,
                "repo_full_name": self.repository,
                "repo_type": "public" if self.public else "private",
            },
        }
        if self.custom:
            data["custom_attributes"] = dict(self.custom)
        return {"type": self.type, "occur_at": int(self.occurred.timestamp()), "operator": self.operator,
                "event_data": data}


def format_body(payload: dict[str, Any], payload_format: str, *, event_id: str, project_id: int,
                policy_id: int) -> tuple[bytes, str]:
    """The request body and its ``Content-Type`` for a stored default ``payload`` in ``payload_format``."""
    if payload_format == "CloudEvents":
        occurred = datetime.fromtimestamp(int(payload["occur_at"]), UTC)
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": f"/projects/{project_id}/webhook/policies/{policy_id}",
            "type": CLOUDEVENT_TYPES.get(payload["type"], f"harbor.{payload['type'].lower()}"),
            "datacontenttype": "application/json",
            "time": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "operator": payload["operator"],
            "data": payload["event_data"],
        }
        return json.dumps(event, separators=(",", ":")).encode(), "application/cloudevents+json"
    return json.dumps(payload, separators=(",", ":")).encode(), "application/json"
