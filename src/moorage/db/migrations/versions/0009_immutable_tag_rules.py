"""Tag immutability rules per project (``immutable_tag_rules``), see docs/lifecycle.md.

Revision ID: 0009_immutable_tag_rules
Revises: 0008_gc_blob_state

A new table only: the downgrade drops it (the rules are lost, no other row changes).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_immutable_tag_rules"
down_revision = "0008_gc_blob_state"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "immutable_tag_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag_pattern", sa.String(255), nullable=False),
        sa.Column("repository_pattern", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_immutable_tag_rules_project_id", "immutable_tag_rules", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_immutable_tag_rules_project_id", table_name="immutable_tag_rules")
    op.drop_table("immutable_tag_rules")
