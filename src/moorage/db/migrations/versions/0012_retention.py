"""Tag retention (policies, executions, tasks), last pull times, and stop requests for jobs.

Revision ID: 0012_retention
Revises: 0016_webhooks (and needs 0003_jobs: executions and stops point at ``jobs``)

Adds ``manifests.pulled_at`` (nullable: nothing was pulled as far as the registry knows), the
tables ``retention_policies``, ``retention_executions``, ``retention_tasks`` and ``job_stops``.
The downgrade drops them and the column (policies, their history and pull times are lost;
jobs that were ``stopped`` keep that state, which older code lists as an unknown state).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_retention"
down_revision = "0016_webhooks"
branch_labels = None
depends_on = "0003_jobs"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("pulled_at", TS, nullable=True))
    op.create_table(
        "job_stops",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("requested_at", TS, nullable=False),
    )
    op.create_table(
        "retention_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "retention_executions",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("policy_id", sa.Integer, sa.ForeignKey("retention_policies.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_index("ix_retention_executions_policy_id", "retention_executions", ["policy_id"])
    op.create_table(
        "retention_tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("execution_id", sa.Integer, sa.ForeignKey("retention_executions.job_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("retained", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_index("ix_retention_tasks_execution_id", "retention_tasks", ["execution_id"])


def downgrade() -> None:
    op.drop_index("ix_retention_tasks_execution_id", table_name="retention_tasks")
    op.drop_table("retention_tasks")
    op.drop_index("ix_retention_executions_policy_id", table_name="retention_executions")
    op.drop_table("retention_executions")
    op.drop_table("retention_policies")
    op.drop_table("job_stops")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("pulled_at")
