"""OpenID Connect: ``oidc_identities`` (a user's provider subject, refresh token, CLI secret) and
``oidc_logins`` (authorization requests in flight), see docs/sso.md.

Revision ID: 0013_oidc
Revises: 0012_retention

New tables only: the downgrade drops them (OIDC users stay as plain users without a login method).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_oidc"
down_revision = "0012_retention"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("cli_secret", sa.Text, nullable=True),
        sa.Column("verified_until", TS, nullable=False),
        sa.Column("secret_expires_at", TS, nullable=False),
        sa.Column("refreshing_until", TS, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("last_login_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("uq_oidc_identities_issuer_subject", "oidc_identities", ["issuer", "subject"], unique=True)
    op.create_table(
        "oidc_logins",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("next_path", sa.String(2048), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_oidc_logins_expires_at", "oidc_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oidc_logins_expires_at", table_name="oidc_logins")
    op.drop_table("oidc_logins")
    op.drop_index("uq_oidc_identities_issuer_subject", table_name="oidc_identities")
    op.drop_table("oidc_identities")
