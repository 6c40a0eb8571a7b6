"""Which site holds each blob's bytes (docs/multi-site.md), on the shared ``metadata``.

A row ``(blob_id, site)`` is written in the transaction that makes the bytes count at that site:
the publish of a push there, or the end of a copy from another site (after the digest was
verified). No row: the site does not have the bytes (or they are still being copied), and a
read there is served from a site that has one. Rows go with their blob (``CASCADE``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Table

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["blob_sites"]

blob_sites = Table(
    "blob_sites",
    metadata,
    Column("blob_id", Integer, ForeignKey("blobs.id", ondelete="CASCADE"), nullable=False),
    Column("site", String(64), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    PrimaryKeyConstraint("blob_id", "site"),
    Index("ix_blob_sites_site", "site"),
)
