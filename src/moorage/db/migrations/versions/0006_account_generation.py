"""Accounts get an immutable random ``uid`` and a ``generation`` that credentials are bound to.

Revision ID: 0006_account_generation
Revises: 0005_audit_auth_method

Tokens used to name a user by its name only: a deleted and re-created ``aguest`` inherited the
old one's tokens, and a password change or robot secret refresh left access tokens valid until
they expired. Existing rows get a fresh ``uid``, so tokens issued before this upgrade (which
carry none) are refused and clients log in again.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0006_account_generation"
down_revision = "0005_audit_auth_method"
branch_labels = None
depends_on = None

_TABLES = ("users", "robots")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
            batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
        rows = sa.table(table, sa.column("id", sa.Integer), sa.column("uid", sa.String(32)))
        conn = op.get_bind()
        for (row_id,) in conn.execute(sa.select(rows.c.id)).all():
            conn.execute(sa.update(rows).where(rows.c.id == row_id).values(uid=uuid.uuid4().hex))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("uid", existing_type=sa.String(32), nullable=False)
            batch.create_unique_constraint(f"uq_{table}_uid", ["uid"])


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_uid", type_="unique")
            batch.drop_column("generation")
            batch.drop_column("uid")
