"""Webhook policies of projects and their delivery log (Harbor's notification policies and jobs).

A policy belongs to one project and goes with it (``ON DELETE CASCADE``); its deliveries go with
the policy. ``targets`` and ``event_types`` are JSON text (portable between SQLite and
PostgreSQL); a target's HMAC secret is stored sealed with ``auth.secret_key``, never in clear.

A delivery row is one event sent to one target of one policy. ``(policy_id, event_id,
target_index)`` is unique, and the job that sends it carries the same triple in its dedup key,
so an event is delivered once per target whichever node saw it and however often it is enqueued.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["webhook_deliveries", "webhook_policies"]

webhook_policies = Table(
    "webhook_policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("event_types", Text, nullable=False),
    Column("targets", Text, nullable=False),
    Column("creator", String(255), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_webhook_policies_project_name"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("policy_id", Integer, ForeignKey("webhook_policies.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("target_index", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("notify_type", String(16), nullable=False),
    #: Harbor's job states: Pending, Running, Scheduled (waiting to retry), Success, Error, Stopped.
    Column("status", String(16), nullable=False),
    #: The event as Harbor's default payload (JSON); the target's format is applied when sending.
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    UniqueConstraint("policy_id", "event_id", "target_index", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_policy_id", "policy_id", "id"),
)
