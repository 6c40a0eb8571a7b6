"""Server-side logout and disabled users: ``revoked_sessions`` and ``users.disabled``, see docs/ui.md.

Revision ID: 0018_ui_sessions
Revises: 0015_registries_proxy

``revoked_sessions`` holds the id (``jti``) of every UI session logged out before it expired, so a
copied session cookie stops working on every node once its owner logs out; a row is useless after
``expires_at`` and is purged then. ``users.disabled`` refuses an account's logins and ends its
credentials without deleting it (its memberships and audit rows stay). The downgrade drops both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_ui_sessions"
down_revision = "0015_registries_proxy"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revoked_sessions",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
    op.drop_index("ix_revoked_sessions_expires_at", table_name="revoked_sessions")
    op.drop_table("revoked_sessions")
