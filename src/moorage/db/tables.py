"""Table definitions (portable SQL: SQLite is the embedded default, PostgreSQL for HA).

Every link carries ``created_at`` so online GC can reason about "referenced since when"
(a blob linked after the GC mark started is never swept), and manifests record what
they reference in ``manifest_references`` so GC and replication never re-parse payloads.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "blobs",
    "manifest_references",
    "manifests",
    "metadata",
    "repositories",
    "repository_blobs",
    "tags",
    "uploads",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

DIGEST = String(160)
TIMESTAMP = DateTime(timezone=True)

#: ``project_id`` is the project that owns the repository (``NULL`` with ``auth.mode: none``, where
#: there are no projects): deleting a project deletes exactly its repositories, and a new project of
#: the same name starts empty instead of inheriting rows that only share the name prefix.
repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Index("ix_repositories_project_id", "project_id"),
)

#: Content known to the registry (stored once, whatever number of repositories link it).
blobs = Table(
    "blobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", DIGEST, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    # Online GC (docs/gc.md): ``active`` rows have their bytes; ``pending`` ones are being
    # published; ``deleting`` ones are being removed by GC. Only ``active`` blobs are visible.
    Column("state", String(16), nullable=False, server_default="active"),
    Column("state_at", TIMESTAMP, nullable=True),
    Index("ix_blobs_state", "state", "state_at"),
)

#: A blob is pullable from a repository only through a row here.
repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("blob_id", Integer, ForeignKey("blobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    PrimaryKeyConstraint("repository_id", "blob_id"),
    Index("ix_repository_blobs_blob_id", "blob_id"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("size", BigInteger, nullable=False),
    # The payload is also stored under blobs/ (content-addressed, Distribution's layout); keeping
    # it here makes a manifest GET one indexed row read instead of a storage round trip.
    Column("payload", LargeBinary, nullable=False),
    Column("subject_digest", DIGEST, nullable=True),
    Column("annotations", Text, nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    # When a client last pulled it (GET by tag or digest), written behind in batches
    # (moorage.registry.pull_times); retention's latestPulledN / nDaysSinceLastPull read it.
    Column("pulled_at", TIMESTAMP, nullable=True),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
    # "Is this digest a manifest anywhere?" (GC's garbage condition, a refused push's withdrawal):
    # one probe instead of a scan of every manifest (migration 0020, docs/scale.md).
    Index("ix_manifests_digest", "digest"),
)

#: What each manifest references: ``kind`` is ``blob`` (config, layers) or ``manifest`` (index children).
manifest_references = Table(
    "manifest_references",
    metadata,
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    PrimaryKeyConstraint("manifest_id", "kind", "digest"),
    Index("ix_manifest_references_digest", "digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    UniqueConstraint("repository_id", "name", name="uq_tags_repository_name"),
    Index("ix_tags_manifest_id", "manifest_id"),
)

#: Upload sessions: progress lives here so any node can take the next chunk.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("hash_state", LargeBinary, nullable=False),
    Column("storage_state", Text, nullable=True),
    # One writer at a time: a request appending to the upload holds this lease (renewed while
    # it streams), so concurrent chunks can never interleave bytes under one hash state.
    Column("lease_token", String(36), nullable=True),
    Column("lease_until", TIMESTAMP, nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    Index("ix_uploads_updated_at", "updated_at"),
)
