"""Registry endpoints and the proxy cache (``registries``, ``proxy_*``), see docs/proxy-cache.md.

Revision ID: 0015_registries_proxy
Revises: 0011_quotas

New tables only: the downgrade drops them (endpoints, proxy bindings and what the cache knew
about upstream tags are lost; the cached blobs and manifests in the ordinary tables stay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_registries_proxy"
down_revision = "0011_quotas"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DIGEST = sa.String(160)


def upgrade() -> None:
    op.create_table(
        "registries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("credential_type", sa.String(32), nullable=False),
        sa.Column("access_key", sa.String(255), nullable=True),
        sa.Column("access_secret", sa.Text, nullable=True),
        sa.Column("insecure", sa.Boolean, nullable=False),
        sa.Column("ca_certificate", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("name", name="uq_registries_name"),
    )
    op.create_table(
        "proxy_projects",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("registry_id", sa.Integer, sa.ForeignKey("registries.id", ondelete="SET NULL"), nullable=True),
        sa.Column("registry_name", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "proxy_manifests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("fetched_at", TS, nullable=False),
        sa.UniqueConstraint("repository", "digest", name="uq_proxy_manifests_repository_digest"),
    )
    op.create_table(
        "proxy_tags",
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("repository", "tag", name="pk_proxy_tags"),
    )
    op.create_table(
        "proxy_fetches",
        sa.Column("digest", DIGEST, primary_key=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("lease_until", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("proxy_fetches", "proxy_tags", "proxy_manifests", "proxy_projects", "registries"):
        op.drop_table(table)
