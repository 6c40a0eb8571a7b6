"""Multi-site: which site holds each blob (docs/multi-site.md).

Revision ID: 0019_sites
Revises: 0017_replication

A new table only. Blobs stored before it have no row: a single-site deployment never reads the
table, and a read at a site that lacks such a blob tries every other site (docs/multi-site.md).
The downgrade drops the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_sites"
down_revision = "0017_replication"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_sites",
        sa.Column("blob_id", sa.Integer, sa.ForeignKey("blobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", "site"),
    )
    op.create_index("ix_blob_sites_site", "blob_sites", ["site"])


def downgrade() -> None:
    op.drop_index("ix_blob_sites_site", table_name="blob_sites")
    op.drop_table("blob_sites")
