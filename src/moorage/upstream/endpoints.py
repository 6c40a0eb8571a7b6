"""Registry endpoints (Harbor's "registries"): where another registry is and how to log in to it.

Every entry point (REST, the proxy cache, later replication) goes through :class:`Endpoints`;
the rules for what an endpoint may be live in :func:`check_spec` only. The access secret is
sealed with ``auth.secret_key`` (:class:`~moorage.auth.keys.SecretBox`, its own derived key) and
leaves this module only inside a :class:`~moorage.upstream.client.Connection`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from moorage.auth.keys import SecretBox
from moorage.db.proxy_tables import registries
from moorage.db.session import Database
from moorage.db.times import aware
from moorage.upstream.client import Connection

__all__ = ["ENDPOINT_TYPES", "Endpoint", "EndpointError", "EndpointSpec", "Endpoints", "check_spec"]

ENDPOINT_TYPES = ("docker-registry", "harbor")
CREDENTIAL_TYPES = ("basic",)


class EndpointError(Exception):
    """``kind``: ``invalid`` (``field`` names the bad one), ``conflict``, ``not_found``."""

    def __init__(self, kind: Literal["invalid", "conflict", "not_found"], message: str,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What a client sends to create or ping an endpoint (Harbor's ``Registry`` fields)."""

    name: str
    type: str
    url: str
    description: str | None = None
    credential_type: str = "basic"
    access_key: str | None = None
    access_secret: str | None = None
    insecure: bool = False
    ca_certificate: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A stored endpoint; the secret is not here (see :meth:`Endpoints.connection`)."""

    id: int
    name: str
    type: str
    url: str
    description: str | None
    credential_type: str
    access_key: str | None
    has_secret: bool
    insecure: bool
    ca_certificate: str | None
    created_at: datetime
    updated_at: datetime


def _invalid(field: str, message: str) -> EndpointError:
    return EndpointError("invalid", f"{field}: {message}; nothing was saved", field)


def check_spec(spec: EndpointSpec) -> EndpointSpec:
    """The spec with its URL normalised (no trailing ``/``), or ``EndpointError`` naming the bad field."""
    if not spec.name.strip() or len(spec.name) > 255 or any(ch.isspace() and ch != " " for ch in spec.name):
        raise _invalid("name", "must be 1-255 printable characters")
    if spec.type not in ENDPOINT_TYPES:
        raise _invalid("type", f"{spec.type!r} is not a known endpoint type; use one of {', '.join(ENDPOINT_TYPES)}")
    url = spec.url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "://" not in url:
        raise _invalid("url", f"{spec.url!r} needs a scheme: write https://{url.split('://')[-1]} (or http:// "
                       "for a registry without TLS)")
    if not parts.hostname:
        raise _invalid("url", f"{spec.url!r} has no host")
    if parts.query or parts.fragment or parts.path.strip("/"):
        raise _invalid("url", f"{spec.url!r} must be the registry's base URL (scheme, host, port), without a path")
    try:
        _ = parts.port
    except ValueError:
        raise _invalid("url", f"{spec.url!r} has an invalid port") from None
    if spec.credential_type not in CREDENTIAL_TYPES:
        raise _invalid("credential.type", f"{spec.credential_type!r} is not supported; use 'basic'")
    if spec.access_secret and not spec.access_key:
        raise _invalid("credential.access_key", "a secret needs its access key (the user name)")
    if spec.ca_certificate and "BEGIN CERTIFICATE" not in spec.ca_certificate:
        raise _invalid("ca_certificate", "must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return replace(spec, url=url.rstrip("/"), name=spec.name.strip())


def _endpoint(row: object) -> Endpoint:
    m = row._mapping  # type: ignore[attr-defined]
    return Endpoint(
        m["id"], m["name"], m["type"], m["url"], m["description"], m["credential_type"], m["access_key"],
        bool(m["access_secret"]), bool(m["insecure"]), m["ca_certificate"], aware(m["created_at"]),
        aware(m["updated_at"]),
    )


class Endpoints:
    """CRUD of endpoints on the shared database; secrets sealed with ``box``."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def create(self, spec: EndpointSpec) -> Endpoint:
        """Store a new endpoint; ``conflict`` when the name is taken."""
        spec = check_spec(spec)
        now = datetime.now(UTC)
        try:
            async with self.db.write() as conn:
                result = await conn.execute(registries.insert().values(
                    name=spec.name, type=spec.type, url=spec.url, description=spec.description,
                    credential_type=spec.credential_type, access_key=spec.access_key or None,
                    access_secret=self.box.seal(spec.access_secret.encode()) if spec.access_secret else None,
                    insecure=spec.insecure, ca_certificate=spec.ca_certificate or None,
                    created_at=now, updated_at=now,
                ).returning(registries.c.id))
                endpoint_id = int(result.scalar_one())
        except IntegrityError:
            raise EndpointError("conflict", f"an endpoint named {spec.name!r} exists already; choose another "
                                "name or change that one (PUT /api/v2.0/registries/<id>)", "name") from None
        return await self.get(endpoint_id)

    async def update(self, endpoint_id: int, spec: EndpointSpec, *, keep_secret: bool) -> Endpoint:
        """Replace an endpoint's fields; with ``keep_secret`` the stored secret stays (Harbor's PUT may omit it)."""
        spec = check_spec(spec)
        values: dict[str, object] = {
            "name": spec.name, "type": spec.type, "url": spec.url, "description": spec.description,
            "credential_type": spec.credential_type, "access_key": spec.access_key or None,
            "insecure": spec.insecure, "ca_certificate": spec.ca_certificate or None,
            "updated_at": datetime.now(UTC),
        }
        if not keep_secret:
            values["access_secret"] = self.box.seal(spec.access_secret.encode()) if spec.access_secret else None
        try:
            async with self.db.write() as conn:
                result = await conn.execute(update(registries).where(registries.c.id == endpoint_id).values(**values))
        except IntegrityError:
            raise EndpointError("conflict", f"an endpoint named {spec.name!r} exists already; choose another name",
                                "name") from None
        if result.rowcount != 1:
            raise self._missing(endpoint_id)
        return await self.get(endpoint_id)

    async def delete(self, endpoint_id: int) -> Endpoint:
        """Delete an endpoint. Proxy projects bound to it stay and answer that their endpoint is gone."""
        endpoint = await self.get(endpoint_id)
        async with self.db.write() as conn:
            await conn.execute(delete(registries).where(registries.c.id == endpoint_id))
        return endpoint

    async def get(self, endpoint_id: int) -> Endpoint:
        async with self.db.read() as conn:
            row = (await conn.execute(select(registries).where(registries.c.id == endpoint_id))).first()
        if row is None:
            raise self._missing(endpoint_id)
        return _endpoint(row)

    async def listing(self, offset: int, limit: int, name: str | None = None) -> tuple[list[Endpoint], int]:
        """Endpoints ordered by id (those whose name contains ``name``), and their total."""
        condition = registries.c.name.contains(name, autoescape=True) if name else None
        query = select(registries).order_by(registries.c.id).offset(offset).limit(limit)
        count = select(func.count()).select_from(registries)
        if condition is not None:
            query, count = query.where(condition), count.where(condition)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            total = int((await conn.execute(count)).scalar_one())
        return [_endpoint(row) for row in rows], total

    async def connection(self, endpoint_id: int) -> Connection:
        """How to reach the endpoint, secret decrypted (for the upstream client only)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(registries).where(registries.c.id == endpoint_id))).first()
        if row is None:
            raise self._missing(endpoint_id)
        m = row._mapping
        secret = self.box.open(m["access_secret"]).decode() if m["access_secret"] else None
        return Connection(m["url"], m["access_key"], secret, bool(m["insecure"]), m["ca_certificate"])

    async def spec_connection(self, spec: EndpointSpec, endpoint_id: int | None) -> Connection:
        """The connection a ping checks: the spec's fields, the stored secret when the spec has none."""
        spec = check_spec(spec)
        secret = spec.access_secret
        if not secret and endpoint_id is not None and spec.access_key:
            secret = (await self.connection(endpoint_id)).password
        return Connection(spec.url, spec.access_key or None, secret, spec.insecure, spec.ca_certificate)

    @staticmethod
    def _missing(endpoint_id: int) -> EndpointError:
        return EndpointError("not_found", f"registry endpoint {endpoint_id} does not exist; list them with "
                             "GET /api/v2.0/registries")
