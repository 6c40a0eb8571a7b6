"""Tag retention policies, their executions and per-repository tasks (Harbor's ``/retentions``).

A policy belongs to one project and goes with it (``ON DELETE CASCADE``); its rules are
stored as the normalised JSON the REST API returns, validated (patterns compiled, templates
and parameters checked) before they are saved (:mod:`moorage.retention.rules`).

An execution *is* a ``retention.run`` job (``job_id``): the job table makes one execution
cluster-wide and holds its state; the row says which policy, whether it was a dry run and
what triggered it, and is written in the transaction that enqueues the job. A task is one
repository of one execution, written when the run has evaluated (and acted on) it.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["retention_executions", "retention_policies", "retention_tasks"]

retention_policies = Table(
    "retention_policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("algorithm", String(16), nullable=False),
    Column("rules", Text, nullable=False),
    #: The schedule (``moorage.jobs.cron``), ``""`` for none (manual runs only).
    Column("cron", String(255), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

retention_executions = Table(
    "retention_executions",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("policy_id", Integer, ForeignKey("retention_policies.id", ondelete="CASCADE"), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("started_at", TIMESTAMP, nullable=True),
    Column("ended_at", TIMESTAMP, nullable=True),
    Index("ix_retention_executions_policy_id", "policy_id"),
)

retention_tasks = Table(
    "retention_tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("execution_id", Integer, ForeignKey("retention_executions.job_id", ondelete="CASCADE"), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("total", Integer, nullable=False),
    Column("retained", Integer, nullable=False),
    Column("started_at", TIMESTAMP, nullable=False),
    Column("ended_at", TIMESTAMP, nullable=True),
    Column("log", Text, nullable=False),
    Index("ix_retention_tasks_execution_id", "execution_id"),
)
