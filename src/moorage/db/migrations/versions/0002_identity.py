"""Identity: users, projects, members, robot accounts, signing keys, audit log, login throttling.

Revision ID: 0002_identity
Revises: 0001_core

A branch of its own beside ``0003_jobs`` (migrations run with ``upgrade heads``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_identity"
down_revision = "0001_core"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("realname", sa.String(255), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("sysadmin", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_projects_owner_id_users", ondelete="SET NULL"
        ),
    )
    op.create_table(
        "project_members",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_project_members"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_members_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_project_members_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "uq_project_members_project_user", "project_members", ["project_id", "user_id"], unique=True
    )
    op.create_index("ix_project_members_user_id", "project_members", ["user_id"])
    op.create_table(
        "robots",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("project_id", sa.Integer, nullable=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("permissions", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_robots"),
        sa.UniqueConstraint("name", name="uq_robots_name"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_robots_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_signing_keys"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("op_time", TS, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_op_time", "audit_log", ["op_time"])
    op.create_index("ix_audit_log_project", "audit_log", ["project", "op_time"])
    op.create_table(
        "login_failures",
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.PrimaryKeyConstraint("username", "client", name="pk_login_failures"),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_index("ix_audit_log_project", table_name="audit_log")
    op.drop_index("ix_audit_log_op_time", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("signing_keys")
    op.drop_table("robots")
    op.drop_index("ix_project_members_user_id", table_name="project_members")
    op.drop_index("uq_project_members_project_user", table_name="project_members")
    op.drop_table("project_members")
    op.drop_table("projects")
    op.drop_table("users")
