"""GC schedule and execution records (``gc_schedule``, ``gc_executions``), see docs/gc.md.

Revision ID: 0010_gc_executions
Revises: 0003_jobs

New tables only, on the jobs branch (executions point at ``jobs``): the downgrade drops them
(the schedule and the run summaries are lost; the jobs themselves stay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_gc_executions"
down_revision = "0003_jobs"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gc_schedule",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schedule_type", sa.String(16), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "gc_executions",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("manifests", sa.Integer, nullable=False),
        sa.Column("blobs", sa.Integer, nullable=False),
        sa.Column("bytes_freed", sa.BigInteger, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gc_executions")
    op.drop_table("gc_schedule")
