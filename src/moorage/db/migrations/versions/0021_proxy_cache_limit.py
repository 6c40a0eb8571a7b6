"""Proxy-cache size limit: ``proxy_projects.cache_limit`` and the pointer to the latest eviction job.

Revision ID: 0021_proxy_cache_limit
Revises: 0019_sites

Two columns on an existing table. Existing proxy projects get ``-1`` (no limit), so nothing is
evicted until an operator sets one. The downgrade drops both columns (the limits are lost).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_proxy_cache_limit"
down_revision = "0019_sites"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proxy_projects") as batch:
        batch.add_column(sa.Column("cache_limit", sa.BigInteger, nullable=False, server_default="-1"))
        batch.add_column(sa.Column("evict_job_id", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proxy_projects") as batch:
        batch.drop_column("evict_job_id")
        batch.drop_column("cache_limit")
