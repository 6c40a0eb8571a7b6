"""Audit rows record how the caller authenticated (``auth_method``).

Revision ID: 0005_audit_auth_method
Revises: 0002_identity

``basic`` (a user's password), ``robot`` (a robot's secret), ``token`` (a bearer token),
``session``, ``anonymous``; login rows carry the login method (``password``, ``robot``,
``refresh_token``). With it, a credential used where it should not be (a robot's token driving
the REST API, a password where a robot is expected) can be told from normal use. Rows written
before this revision keep ``NULL``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_audit_auth_method"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("auth_method", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("auth_method")
