"""Registry endpoints and the proxy cache's own rows, on the shared ``metadata`` (docs/proxy-cache.md).

``registries`` are Harbor's endpoints (replication will use them too); the secret is stored
sealed with ``auth.secret_key`` (:class:`moorage.auth.keys.SecretBox`). ``proxy_projects`` binds
a project to an endpoint; the endpoint's name is copied there so a project whose endpoint was
deleted (``registry_id`` set to ``NULL``) can say which one it was. ``proxy_manifests`` and
``proxy_tags`` keep what was fetched before its blobs are all here (a manifest enters the
``manifests`` table only once every blob it references is linked), and when each tag was last
checked upstream. ``proxy_projects.cache_limit`` bounds what a project keeps (docs/proxy-cache.md,
"Cache size limit"). ``proxy_fetches`` is the single-flight lease of one blob fetch, shared by
every process and node through the database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from moorage.db.tables import DIGEST, TIMESTAMP, metadata

__all__ = ["proxy_fetches", "proxy_manifests", "proxy_projects", "proxy_tags", "registries"]

registries = Table(
    "registries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("url", String(1024), nullable=False),
    Column("description", Text, nullable=True),
    Column("credential_type", String(32), nullable=False),
    Column("access_key", String(255), nullable=True),
    Column("access_secret", Text, nullable=True),  # sealed (Fernet), never the plain secret
    Column("insecure", Boolean, nullable=False),
    Column("ca_certificate", Text, nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

proxy_projects = Table(
    "proxy_projects",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("registry_id", Integer, ForeignKey("registries.id", ondelete="SET NULL"), nullable=True),
    Column("registry_name", String(255), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    # The cache size limit in bytes (-1: none); over it, the least recently pulled artifacts are evicted
    # (moorage.proxy.eviction). The pointer names the project's latest eviction job, so that every node
    # enqueues the same next one (its dedup key is made from it): one eviction per project at a time.
    Column("cache_limit", BigInteger, nullable=False, server_default="-1"),
    Column("evict_job_id", Integer, nullable=True),
)

proxy_manifests = Table(
    "proxy_manifests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("fetched_at", TIMESTAMP, nullable=False),
    UniqueConstraint("repository", "digest", name="uq_proxy_manifests_repository_digest"),
)

proxy_tags = Table(
    "proxy_tags",
    metadata,
    Column("repository", String(255), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("checked_at", TIMESTAMP, nullable=False),
    PrimaryKeyConstraint("repository", "tag", name="pk_proxy_tags"),
)

proxy_fetches = Table(
    "proxy_fetches",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("holder", String(64), nullable=False),
    Column("lease_until", TIMESTAMP, nullable=False),
)
