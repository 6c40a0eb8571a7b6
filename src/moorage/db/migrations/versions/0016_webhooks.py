"""Webhook policies and their delivery log (``webhook_policies``, ``webhook_deliveries``), see docs/deploy.md.

Revision ID: 0016_webhooks
Revises: 0014_groups_ldap

New tables only: the downgrade drops them (policies and the delivery log are lost; queued
``webhook.deliver`` jobs then find no delivery and end without sending).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_webhooks"
down_revision = "0014_groups_ldap"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("event_types", sa.Text, nullable=False),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_webhook_policies_project_name"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy_id", sa.Integer, sa.ForeignKey("webhook_policies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("target_index", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("notify_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("policy_id", "event_id", "target_index", name="uq_webhook_deliveries_event"),
    )
    op.create_index("ix_webhook_deliveries_policy_id", "webhook_deliveries", ["policy_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_policy_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_policies")
