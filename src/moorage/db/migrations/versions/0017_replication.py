"""Replication policies, executions and tasks (docs/replication.md).

Revision ID: 0017_replication
Revises: 0018_ui_sessions

New tables only: the downgrade drops them (policies and their history are lost, nothing else).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_replication"
down_revision = "0018_ui_sessions"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replication_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("src_registry_id", sa.Integer, sa.ForeignKey("registries.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("dest_registry_id", sa.Integer, sa.ForeignKey("registries.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("dest_namespace", sa.String(255), nullable=True),
        sa.Column("dest_namespace_replace_count", sa.Integer, nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("replicate_deletion", sa.Boolean, nullable=False),
        sa.Column("override", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("speed_kb", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "replication_executions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy_id", sa.Integer, sa.ForeignKey("replication_policies.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, unique=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_text", sa.Text, nullable=False),
        sa.Column("start_time", TS, nullable=False),
        sa.Column("end_time", TS, nullable=True),
    )
    op.create_index("ix_replication_executions_policy_id", "replication_executions", ["policy_id"])
    op.create_table(
        "replication_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("execution_id", sa.Integer, sa.ForeignKey("replication_executions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("src_resource", sa.String(512), nullable=False),
        sa.Column("dst_resource", sa.String(512), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("start_time", TS, nullable=True),
        sa.Column("end_time", TS, nullable=True),
        sa.UniqueConstraint("execution_id", "operation", "src_resource", "reference", name="uq_replication_tasks_work"),
    )


def downgrade() -> None:
    op.drop_table("replication_tasks")
    op.drop_index("ix_replication_executions_policy_id", table_name="replication_executions")
    op.drop_table("replication_executions")
    op.drop_table("replication_policies")
