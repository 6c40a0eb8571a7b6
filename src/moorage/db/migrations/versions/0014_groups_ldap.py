"""User groups, group members of projects, and the identity source of each account.

Revision ID: 0014_groups_ldap
Revises: 0009_immutable_tag_rules

``user_groups`` and ``user_group_members`` are new; ``project_members`` gets ``group_id`` (and
``user_id`` becomes nullable: a member is a user or a group); ``users`` gets ``source``
(``local`` for every existing account). The downgrade deletes group members of projects first
(their rows have no user), then drops what the upgrade added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_groups_ldap"
down_revision = "0009_immutable_tag_rules"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_FK = "fk_project_members_group_id_user_groups"
_CHECK = "ck_project_members_user_or_group"


def upgrade() -> None:
    op.create_table(
        "user_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("group_type", sa.Integer, nullable=False),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.Column("ldap_group_dn", sa.String(512), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("uq_user_groups_type_key", "user_groups", ["group_type", "group_key"], unique=True)
    op.create_table(
        "user_group_members",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "group_id"),
    )
    op.create_index("ix_user_group_members_group_id", "user_group_members", ["group_id"])
    with op.batch_alter_table("project_members") as batch:
        batch.add_column(sa.Column("group_id", sa.Integer, nullable=True))
        batch.alter_column("user_id", existing_type=sa.Integer, nullable=True)
        batch.create_foreign_key(_FK, "user_groups", ["group_id"], ["id"], ondelete="CASCADE")
        batch.create_check_constraint(_CHECK, "(user_id IS NULL) <> (group_id IS NULL)")
        batch.create_index("uq_project_members_project_group", ["project_id", "group_id"], unique=True)
        batch.create_index("ix_project_members_group_id", ["group_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="local"))


def downgrade() -> None:
    op.execute("DELETE FROM project_members WHERE group_id IS NOT NULL")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("project_members") as batch:
        batch.drop_index("ix_project_members_group_id")
        batch.drop_index("uq_project_members_project_group")
        batch.drop_constraint(_CHECK, type_="check")
        batch.drop_constraint(_FK, type_="foreignkey")
        batch.alter_column("user_id", existing_type=sa.Integer, nullable=False)
        batch.drop_column("group_id")
    op.drop_table("user_group_members")
    op.drop_table("user_groups")
