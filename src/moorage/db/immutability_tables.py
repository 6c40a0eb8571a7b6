"""Tag immutability rules of projects (Harbor's "immutable tag rules"), on the shared ``metadata``.

A rule belongs to one project and goes with it (``ON DELETE CASCADE``). Its two patterns are
Harbor's doublestar patterns (:mod:`moorage.registry.patterns`), stored as the user wrote them
and compiled when saved and when a tag is moved or deleted.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["immutable_tag_rules"]

immutable_tag_rules = Table(
    "immutable_tag_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("tag_pattern", String(255), nullable=False),
    Column("repository_pattern", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Index("ix_immutable_tag_rules_project_id", "project_id"),
)
