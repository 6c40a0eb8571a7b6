"""Registry-scale metadata (issue 17, docs/scale.md): an index on ``manifests.digest`` alone.

Revision ID: 0020_manifest_digest_index
Revises: 0021_proxy_cache_limit

Every manifest lookup of the ``/v2`` paths names its repository and uses
``uq_manifests_repository_digest``; the questions "is this digest any repository's manifest?"
did not: GC's garbage condition (``NOT EXISTS (… manifests.digest = blobs.digest)``, a
correlated sub-plan per blob, because it sits inside an ``OR``) and the withdrawal of a blob a
quota refused. Without this index PostgreSQL answers each with a full scan of the unique index
(estimated at 29,000 per blob with 500,000 manifests, 5.9e10 for a GC mark over 2,000,000 blobs);
with it, one index probe. Follows 0021 (landed first, also on 0019) to keep one head. Building it
on 500,000 manifests takes a few seconds and holds a write lock on ``manifests`` meanwhile.
"""

from __future__ import annotations

from alembic import op

revision = "0020_manifest_digest_index"
down_revision = "0021_proxy_cache_limit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_manifests_digest", "manifests", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_manifests_digest", table_name="manifests")
