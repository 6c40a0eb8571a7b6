"""Project quotas (``quotas``) and the blob set each project's usage counts (``project_blobs``), see docs/lifecycle.md.

Revision ID: 0011_quotas
Revises: 0013_oidc

Every existing project gets an unlimited quota (``-1``; the configured defaults apply to projects
created from now on) and its usage as it stands: each blob linked into one of its repositories,
once. The downgrade drops both tables (the limits are lost, no other row changes).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011_quotas"
down_revision = "0013_oidc"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("storage_limit", sa.BigInteger, nullable=False),
        sa.Column("count_limit", sa.BigInteger, nullable=False),
        sa.Column("storage_used", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "project_blobs",
        sa.Column(
            "project_id", sa.Integer, sa.ForeignKey("quotas.project_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("blob_id", sa.Integer, sa.ForeignKey("blobs.id"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "blob_id", name="pk_project_blobs"),
    )
    op.create_index("ix_project_blobs_blob_id", "project_blobs", ["blob_id"])
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO quotas (project_id, storage_limit, count_limit, storage_used, created_at, updated_at) "
            "SELECT id, -1, -1, 0, :t, :t FROM projects"
        ),
        {"t": datetime.now(UTC)},
    )
    bind.execute(
        sa.text(
            "INSERT INTO project_blobs (project_id, blob_id, size) "
            "SELECT DISTINCT r.project_id, b.id, b.size FROM repository_blobs rb "
            "JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.id = rb.blob_id "
            "WHERE r.project_id IS NOT NULL"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE quotas SET storage_used = (SELECT COALESCE(SUM(pb.size), 0) FROM project_blobs pb "
            "WHERE pb.project_id = quotas.project_id)"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_project_blobs_blob_id", table_name="project_blobs")
    op.drop_table("project_blobs")
    op.drop_table("quotas")
