"""Online garbage collection: a state for every blob row (``active``, ``pending``, ``deleting``).

Revision ID: 0008_gc_blob_state
Revises: 0007_repository_project

``state_at`` is when the row last changed state; existing rows are ``active`` since they were
created. See docs/gc.md for the protocol these columns carry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_gc_blob_state"
down_revision = "0007_repository_project"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("state_at", TS, nullable=True))
    op.execute("UPDATE blobs SET state_at = created_at")
    op.create_index("ix_blobs_state", "blobs", ["state", "state_at"])


def downgrade() -> None:
    op.drop_index("ix_blobs_state", table_name="blobs")
    # Rows a GC run or a publish left half-way are not known to the older schema: a pending row
    # may have no bytes and a deleting one may have lost them, so they go (their bytes are orphans).
    # Links first: SQLite migrations run with foreign keys off (no cascade), see moorage.db.migrate.
    op.execute("DELETE FROM repository_blobs WHERE blob_id IN (SELECT id FROM blobs WHERE state <> 'active')")
    op.execute("DELETE FROM blobs WHERE state <> 'active'")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("state_at")
        batch.drop_column("state")
