"""OpenID Connect tables (migration ``0013_oidc``): who a provider's subject is here, and logins in flight.

Kept apart from ``users``: an OIDC user is an ordinary ``users`` row (roles, members, tokens
work unchanged) linked here to the provider's ``(issuer, subject)``, which never changes while the
``preferred_username`` may. Secrets are Fernet-encrypted with ``auth.secret_key`` (the key set's
:class:`~moorage.auth.keys.SecretBox`, another HKDF purpose): a database dump alone reveals no
refresh token and no CLI secret.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["oidc_identities", "oidc_logins"]

oidc_identities = Table(
    "oidc_identities",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("issuer", String(255), nullable=False),
    Column("subject", String(255), nullable=False),
    #: Encrypted; NULL when the provider gave none (the CLI secret then lives ``cli_secret_lifetime``).
    Column("refresh_token", Text, nullable=True),
    #: Encrypted CLI secret (shown to its owner in ``/users/current``, as Harbor does); NULL until set.
    Column("cli_secret", Text, nullable=True),
    #: Until when the provider's last word (ID token) holds; after it a refresh is due.
    Column("verified_until", TIMESTAMP, nullable=False),
    #: Refresh-less identities: the CLI secret's end (last web login + ``cli_secret_lifetime``).
    Column("secret_expires_at", TIMESTAMP, nullable=False),
    #: One node refreshes at a time (a rotated refresh token used twice revokes the grant at most providers).
    Column("refreshing_until", TIMESTAMP, nullable=True),
    #: The provider refused a refresh (user removed or disabled there): refused until the next web login.
    Column("revoked", Boolean, nullable=False),
    #: The groups claim as last seen (JSON list).
    Column("groups", Text, nullable=False),
    Column("last_login_at", TIMESTAMP, nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    Index("uq_oidc_identities_issuer_subject", "issuer", "subject", unique=True),
)

#: Authorization requests in flight: the state (SHA-256), its nonce and PKCE verifier, where to go next.
#: Any node may receive the callback; a row is consumed by one DELETE, so a replayed callback finds nothing.
oidc_logins = Table(
    "oidc_logins",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("next_path", String(2048), nullable=False),
    Column("expires_at", TIMESTAMP, nullable=False),
    Index("ix_oidc_logins_expires_at", "expires_at"),
)
