"""Replication policies, their executions and tasks (Harbor's model), on the shared ``metadata``.

A policy copies from a source to a destination; one side is this registry (``NULL`` registry)
and the other an endpoint of ``registries`` (push-based: ``dest_registry_id`` set; pull-based:
``src_registry_id`` set). An endpoint in use by a policy cannot be deleted (``RESTRICT``).

An execution is one run of a policy and belongs to the job that runs it (``job_id`` unique): a
job claimed again after a crash finds its execution and carries on instead of starting another,
and one event enqueues one job whatever the number of nodes (the job table's dedup key). Its
counters are not stored: they are counted from the tasks, so they can never disagree with them.
A task is one artifact (or one tag deletion); ``(execution_id, operation, src_resource,
reference)`` is unique, so planning the same execution twice adds nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["replication_executions", "replication_policies", "replication_tasks"]

replication_policies = Table(
    "replication_policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("src_registry_id", Integer, ForeignKey("registries.id", ondelete="RESTRICT"), nullable=True),
    Column("dest_registry_id", Integer, ForeignKey("registries.id", ondelete="RESTRICT"), nullable=True),
    Column("dest_namespace", String(255), nullable=True),
    Column("dest_namespace_replace_count", Integer, nullable=False),
    Column("filters", Text, nullable=False),  # JSON list, Harbor's shape, compiled when saved
    Column("trigger_type", String(16), nullable=False),  # manual | scheduled | event_based
    Column("cron", String(255), nullable=True),
    Column("replicate_deletion", Boolean, nullable=False),
    Column("override", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("speed_kb", Integer, nullable=False),  # KiB/s, -1: unlimited
    Column("concurrency", Integer, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

replication_executions = Table(
    "replication_executions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("policy_id", Integer, ForeignKey("replication_policies.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, unique=True),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # InProgress | Succeed | Failed | Stopped
    Column("status_text", Text, nullable=False),
    Column("start_time", TIMESTAMP, nullable=False),
    Column("end_time", TIMESTAMP, nullable=True),
    Index("ix_replication_executions_policy_id", "policy_id"),
)

replication_tasks = Table(
    "replication_tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("execution_id", Integer, ForeignKey("replication_executions.id", ondelete="CASCADE"), nullable=False),
    Column("operation", String(16), nullable=False),  # copy | deletion
    Column("resource_type", String(32), nullable=False),  # image | artifact
    Column("src_resource", String(512), nullable=False),
    Column("dst_resource", String(512), nullable=False),
    Column("reference", String(255), nullable=False),  # the tag, or the digest of an untagged artifact
    Column("status", String(16), nullable=False),  # Pending | InProgress | Succeed | Failed | Stopped
    Column("bytes", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("log", Text, nullable=False),
    Column("start_time", TIMESTAMP, nullable=True),
    Column("end_time", TIMESTAMP, nullable=True),
    UniqueConstraint("execution_id", "operation", "src_resource", "reference", name="uq_replication_tasks_work"),
)
