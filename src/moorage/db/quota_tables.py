"""Project quotas and the per-project blob set that their storage usage is made of (docs/lifecycle.md).

``quotas`` has one row per project (``project_id`` is also the quota's id in the REST API):
the hard limits (``-1``: unlimited) and ``storage_used``, the sum of ``project_blobs.size``.
``project_blobs`` holds each blob linked into at least one repository of the project once,
whatever the number of repositories that link it (Harbor counts a blob once per project).

Both change only inside the transactions that link or unlink blobs, under the quota row's lock
(:mod:`moorage.registry.quota`). ``project_blobs.project_id`` refers to the quota row, not to
``projects``: the insert's key check then touches the row the writer already holds, never the
project row that a project delete locks. ``blob_id`` has no ``ON DELETE CASCADE`` on purpose:
a blob row deleted by a path that did not release it from its projects fails instead of leaving
``storage_used`` too high.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, Table

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["project_blobs", "quotas"]

quotas = Table(
    "quotas",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("storage_limit", BigInteger, nullable=False),
    Column("count_limit", BigInteger, nullable=False),
    Column("storage_used", BigInteger, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

project_blobs = Table(
    "project_blobs",
    metadata,
    Column("project_id", Integer, ForeignKey("quotas.project_id", ondelete="CASCADE"), nullable=False),
    Column("blob_id", Integer, ForeignKey("blobs.id"), nullable=False),
    Column("size", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "blob_id"),
    Index("ix_project_blobs_blob_id", "blob_id"),
)
