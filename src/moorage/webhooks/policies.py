"""Webhook policies of projects: what they are, how they are checked, and where they are kept.

Every check happens before anything is written and names the field (``targets[0].address``,
``event_types[1]``), so a refused policy leaves nothing behind. A target's address must be an
``http``/``https`` URL whose host is not refused by ``webhooks.deny_networks`` (names are
resolved and each address checked, again at every delivery).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from moorage.auth.keys import SecretBox
from moorage.db.identity_tables import projects
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.db.webhook_tables import webhook_policies
from moorage.net.addresses import AddressPolicy, ForbiddenAddress, resolve_checked
from moorage.webhooks.events import EVENT_TYPES, PAYLOAD_FORMATS

__all__ = ["InvalidPolicy", "Policy", "PolicyStore", "Target", "check_target_address"]

MAX_TARGETS = 5
NOTIFY_TYPES = ("http",)


class InvalidPolicy(ValueError):
    """A policy refused before anything was stored; ``field`` is Harbor's field path, ``status`` 400 or 409."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how a policy's events are sent. ``secret`` signs bodies (HMAC-SHA256); never shown."""

    address: str
    type: str = "http"
    auth_header: str = ""
    skip_cert_verify: bool = False
    payload_format: str = "Default"
    secret: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    project_id: int
    name: str
    description: str
    enabled: bool
    event_types: tuple[str, ...]
    targets: tuple[Target, ...]
    creator: str
    created_at: datetime
    updated_at: datetime


async def check_target_address(address: str, field: str, addresses: AddressPolicy) -> None:
    """:class:`InvalidPolicy` naming ``field`` unless ``address`` is an http(s) URL to an allowed host."""
    if "://" not in address:
        raise InvalidPolicy(field, f"{address!r} has no scheme; write the full URL, e.g. https://ci.example.com/hook")
    try:
        parts = urlsplit(address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidPolicy(field, f"{address!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidPolicy(field, f"scheme {parts.scheme!r} is not supported; use http:// or https://")
    if not parts.hostname:
        raise InvalidPolicy(field, f"{address!r} names no host; write e.g. https://ci.example.com/hook")
    if parts.username or parts.password:
        raise InvalidPolicy(field, "credentials in the URL are not allowed; put them in auth_header instead")
    try:
        await resolve_checked(parts.hostname, port, addresses)
    except ForbiddenAddress as exc:
        raise InvalidPolicy(field, str(exc)) from None
    except OSError as exc:
        raise InvalidPolicy(field, f"{parts.hostname!r} does not resolve from this node ({exc.strerror or exc}); "
                                   "check the host name") from None


class PolicyStore:
    """Policies of projects (callers decide who may change them, with :mod:`moorage.auth.policy`)."""

    def __init__(self, db: Database, box: SecretBox, addresses: AddressPolicy) -> None:
        self.db = db
        self.box = box
        self.addresses = addresses

    # -- checks -------------------------------------------------------------------------------
    async def check(self, name: str, event_types: list[str], targets: list[Target]) -> None:
        """Every field of a policy; :class:`InvalidPolicy` at the first bad one."""
        if not name.strip() or len(name) > 255 or not name.isprintable():
            raise InvalidPolicy("name", "give a name of 1 to 255 printable characters")
        if not event_types:
            raise InvalidPolicy("event_types", f"subscribe to at least one of {', '.join(EVENT_TYPES)}")
        for index, event_type in enumerate(event_types):
            if event_type not in EVENT_TYPES:
                raise InvalidPolicy(f"event_types[{index}]", f"unknown event type {event_type!r}; this registry "
                                                              f"emits {', '.join(EVENT_TYPES)}")
        if not targets:
            raise InvalidPolicy("targets", "give one target, e.g. [{\"type\":\"http\",\"address\":\"https://…\"}]")
        if len(targets) > MAX_TARGETS:
            raise InvalidPolicy("targets", f"at most {MAX_TARGETS} targets per policy; make another policy")
        for index, target in enumerate(targets):
            field = f"targets[{index}]"
            if target.type not in NOTIFY_TYPES:
                raise InvalidPolicy(f"{field}.type", f"{target.type!r} is not supported; use 'http'")
            if target.payload_format not in PAYLOAD_FORMATS:
                raise InvalidPolicy(f"{field}.payload_format", f"{target.payload_format!r} is not a format; use "
                                                               f"{' or '.join(PAYLOAD_FORMATS)}")
            if "\n" in target.auth_header or "\r" in target.auth_header:
                raise InvalidPolicy(f"{field}.auth_header", "must be one line (it is sent as the Authorization header)")
            await check_target_address(target.address, f"{field}.address", self.addresses)

    # -- rows ---------------------------------------------------------------------------------
    def _targets_json(self, targets: tuple[Target, ...] | list[Target]) -> str:
        return json.dumps([
            {"type": t.type, "address": t.address, "skip_cert_verify": t.skip_cert_verify,
             "payload_format": t.payload_format,
             "auth_header": self.box.seal(t.auth_header.encode()) if t.auth_header else "",
             "secret": self.box.seal(t.secret.encode()) if t.secret else ""}
            for t in targets
        ])

    def _policy(self, row: Row[Any]) -> Policy:
        targets = tuple(
            Target(address=t["address"], type=t["type"], skip_cert_verify=bool(t["skip_cert_verify"]),
                   payload_format=t["payload_format"],
                   auth_header=self.box.open(t["auth_header"]).decode() if t["auth_header"] else "",
                   secret=self.box.open(t["secret"]).decode() if t["secret"] else "")
            for t in json.loads(row.targets)
        )
        return Policy(row.id, row.project_id, row.name, row.description, bool(row.enabled),
                      tuple(json.loads(row.event_types)), targets, row.creator, aware(row.created_at),
                      aware(row.updated_at))

    async def of_project(self, project_id: int) -> list[Policy]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(webhook_policies).where(webhook_policies.c.project_id == project_id)
                                      .order_by(webhook_policies.c.id))
            return [self._policy(row) for row in rows]

    async def get(self, project_id: int, policy_id: int) -> Policy | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(webhook_policies).where(
                webhook_policies.c.id == policy_id, webhook_policies.c.project_id == project_id))).first()
        return None if row is None else self._policy(row)

    async def by_id(self, policy_id: int) -> Policy | None:
        """A policy whatever its project (the delivery job)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(webhook_policies).where(webhook_policies.c.id == policy_id))).first()
        return None if row is None else self._policy(row)

    async def enabled_for(self, project: str) -> tuple[int, bool, list[Policy]]:
        """The project's id, whether it is public, and its enabled policies (``(0, False, [])`` when it has none)."""
        query = (
            select(webhook_policies, projects.c.public.label("project_public"))
            .select_from(webhook_policies.join(projects, projects.c.id == webhook_policies.c.project_id))
            .where(projects.c.name == project, webhook_policies.c.enabled.is_(True))
            .order_by(webhook_policies.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0, False, []
        return int(rows[0].project_id), bool(rows[0].project_public), [self._policy(row) for row in rows]

    async def create(self, project_id: int, *, name: str, description: str, enabled: bool, event_types: list[str],
                     targets: list[Target], creator: str) -> Policy:
        """Check, then store; :class:`InvalidPolicy` (409) when the project has a policy of that name."""
        await self.check(name, event_types, targets)
        stamp = datetime.now(UTC)
        try:
            async with self.db.write() as conn:
                row = (await conn.execute(webhook_policies.insert().values(
                    project_id=project_id, name=name, description=description, enabled=enabled,
                    event_types=json.dumps(list(dict.fromkeys(event_types))), targets=self._targets_json(targets),
                    creator=creator, created_at=stamp, updated_at=stamp,
                ).returning(webhook_policies))).one()
        except IntegrityError:
            raise InvalidPolicy("name", f"the project already has a webhook policy named {name!r}; choose another "
                                        "name or update that one", status=409) from None
        return self._policy(row)

    async def update(self, policy: Policy, *, name: str, description: str, enabled: bool, event_types: list[str],
                     targets: list[Target]) -> Policy | None:
        """Replace the policy's fields (a target given without ``secret`` keeps the old one at that index);
        ``None`` when it was deleted meanwhile."""
        kept = [replace(t, secret=t.secret or (policy.targets[i].secret if i < len(policy.targets) else ""))
                for i, t in enumerate(targets)]
        await self.check(name, event_types, kept)
        try:
            async with self.db.write() as conn:
                row = (await conn.execute(
                    update(webhook_policies)
                    .where(webhook_policies.c.id == policy.id, webhook_policies.c.project_id == policy.project_id)
                    .values(name=name, description=description, enabled=enabled,
                            event_types=json.dumps(list(dict.fromkeys(event_types))),
                            targets=self._targets_json(kept), updated_at=datetime.now(UTC))
                    .returning(webhook_policies)
                )).first()
        except IntegrityError:
            raise InvalidPolicy("name", f"the project already has a webhook policy named {name!r}; choose another "
                                        "name", status=409) from None
        return None if row is None else self._policy(row)

    async def delete(self, policy: Policy) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(webhook_policies).where(
                webhook_policies.c.id == policy.id, webhook_policies.c.project_id == policy.project_id))
        return bool(result.rowcount)

    async def count(self, project_id: int) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(webhook_policies).where(
                webhook_policies.c.project_id == project_id))).scalar_one())
