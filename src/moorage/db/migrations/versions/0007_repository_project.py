"""Repositories belong to a project through ``project_id`` (was: only by the name's first component).

Revision ID: 0007_repository_project
Revises: 0006_account_generation

The back-fill links every repository whose name starts with ``<project>/`` to that project;
repositories without one (pushed with ``auth.mode: none``) keep ``NULL`` and join the project
of their first name component when it is created. The comparison is ``substr`` on the exact
prefix, not ``LIKE``, because ``_`` is a wildcard there and valid in project names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_repository_project"
down_revision = "0006_account_generation"
branch_labels = None
depends_on = None

_FK = "fk_repositories_project_id_projects"
_INDEX = "ix_repositories_project_id"


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("project_id", sa.Integer, nullable=True))
        batch.create_foreign_key(_FK, "projects", ["project_id"], ["id"], ondelete="CASCADE")
        batch.create_index(_INDEX, ["project_id"])
    repositories = sa.table("repositories", sa.column("name", sa.String), sa.column("project_id", sa.Integer))
    projects = sa.table("projects", sa.column("id", sa.Integer), sa.column("name", sa.String))
    owner = (
        sa.select(projects.c.id)
        .where(
            sa.func.substr(repositories.c.name, 1, sa.func.length(projects.c.name) + 1)
            == projects.c.name + sa.literal("/")
        )
        .scalar_subquery()
    )
    op.execute(repositories.update().values(project_id=owner))


def downgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.drop_index(_INDEX)
        batch.drop_constraint(_FK, type_="foreignkey")
        batch.drop_column("project_id")
