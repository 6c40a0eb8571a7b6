"""OCI core: repositories, blobs and their links, manifests and references, tags, uploads.

Revision ID: 0001_core
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

DIGEST = sa.String(160)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_repositories"),
        sa.UniqueConstraint("name", name="uq_repositories_name"),
    )
    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blobs"),
        sa.UniqueConstraint("digest", name="uq_blobs_digest"),
    )
    op.create_table(
        "repository_blobs",
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("blob_id", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "blob_id", name="pk_repository_blobs"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], ondelete="CASCADE",
            name="fk_repository_blobs_repository_id_repositories",
        ),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blobs.id"], ondelete="CASCADE", name="fk_repository_blobs_blob_id_blobs"
        ),
    )
    op.create_index("ix_repository_blobs_blob_id", "repository_blobs", ["blob_id"])
    op.create_table(
        "manifests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("subject_digest", DIGEST, nullable=True),
        sa.Column("annotations", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_manifests"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], ondelete="CASCADE",
            name="fk_manifests_repository_id_repositories",
        ),
        sa.UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    )
    op.create_index("ix_manifests_subject", "manifests", ["repository_id", "subject_digest"])
    op.create_table(
        "manifest_references",
        sa.Column("manifest_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("manifest_id", "kind", "digest", name="pk_manifest_references"),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], ondelete="CASCADE",
            name="fk_manifest_references_manifest_id_manifests",
        ),
    )
    op.create_index("ix_manifest_references_digest", "manifest_references", ["digest"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("manifest_id", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], ondelete="CASCADE", name="fk_tags_repository_id_repositories"
        ),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], ondelete="CASCADE", name="fk_tags_manifest_id_manifests"
        ),
        sa.UniqueConstraint("repository_id", "name", name="uq_tags_repository_name"),
    )
    op.create_index("ix_tags_manifest_id", "tags", ["manifest_id"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hash_state", sa.LargeBinary, nullable=False),
        sa.Column("storage_state", sa.Text, nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], ondelete="CASCADE",
            name="fk_uploads_repository_id_repositories",
        ),
    )
    op.create_index("ix_uploads_updated_at", "uploads", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_updated_at", table_name="uploads")
    op.drop_table("uploads")
    op.drop_index("ix_tags_manifest_id", table_name="tags")
    op.drop_table("tags")
    op.drop_index("ix_manifest_references_digest", table_name="manifest_references")
    op.drop_table("manifest_references")
    op.drop_index("ix_manifests_subject", table_name="manifests")
    op.drop_table("manifests")
    op.drop_index("ix_repository_blobs_blob_id", table_name="repository_blobs")
    op.drop_table("repository_blobs")
    op.drop_table("blobs")
    op.drop_table("repositories")
