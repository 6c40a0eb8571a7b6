"""Identity tables on the shared ``metadata``: users, projects, members, robots, keys, audit, throttling.

Everything that decides who may do what lives in the shared database (DESIGN: "the database is
the source of truth for … users, projects"), so any node answers any request the same way:
the token-signing keys (``signing_keys``) and the failed-login counters (``login_failures``)
included, which is what makes ``docker login`` on node A valid on node B and keeps password
guessing throttled however a load balancer spreads the attempts.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
    or_,
    select,
)

from moorage.db.group_tables import user_group_members, user_groups  # noqa: F401  (project_members refers to it)
from moorage.db.tables import TIMESTAMP, metadata

__all__ = [
    "audit_log",
    "login_failures",
    "member_rows_of",
    "project_members",
    "projects",
    "revoked_sessions",
    "robots",
    "signing_keys",
    "users",
]

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("email", String(255), nullable=True),
    Column("realname", String(255), nullable=True),
    Column("comment", Text, nullable=True),
    Column("password_hash", String(255), nullable=False),
    Column("sysadmin", Boolean, nullable=False),
    # Credentials name the account by ``uid`` (random, never reused: a deleted and re-created
    # ``aguest`` is another account) and carry ``generation``, bumped by a password change.
    Column("uid", String(32), nullable=False, unique=True),
    Column("generation", Integer, nullable=False, server_default="0"),
    # The identity source that owns the account (``local``, ``ldap``, ``oidc``; migration 0014): the
    # only one asked for its credentials, whatever ``auth.sources`` says (see moorage.auth.sources).
    Column("source", String(16), nullable=False, server_default="local"),
    # A disabled user keeps its rows but may not log in; disabling bumps ``generation`` (migration 0018).
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

#: A project owns every repository named ``<project>/…``.
projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("public", Boolean, nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

#: A member is a user (``user_id``) or a user group (``group_id``, migration 0014), never both: one
#: id space for both kinds, as Harbor's ``/projects/{p}/members/{mid}``.
project_members = Table(
    "project_members",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("group_id", Integer, ForeignKey("user_groups.id", ondelete="CASCADE"), nullable=True),
    Column("role", String(32), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="ck_project_members_user_or_group"),
    Index("uq_project_members_project_user", "project_id", "user_id", unique=True),
    Index("uq_project_members_project_group", "project_id", "group_id", unique=True),
    Index("ix_project_members_user_id", "user_id"),
    Index("ix_project_members_group_id", "group_id"),
)

#: ``name`` is the full login name (``robot$ci`` or ``robot$<project>+ci``); ``permissions`` is JSON.
robots = Table(
    "robots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("level", String(16), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    Column("secret_hash", String(255), nullable=False),
    Column("permissions", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("expires_at", TIMESTAMP, nullable=True),
    # As for users: a secret refresh or a disable bumps ``generation`` and ends every token.
    Column("uid", String(32), nullable=False, unique=True),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
)

#: Token-signing keys, private halves Fernet-encrypted with ``auth.secret_key``.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    # The key that signs new tokens is the newest non-retired one; a retired key still verifies
    # until ``retired_at`` + the longest token lifetime has passed.
    Column("created_at", TIMESTAMP, nullable=False),
    Column("retired_at", TIMESTAMP, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("op_time", TIMESTAMP, nullable=False),
    Column("username", String(255), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("project", String(255), nullable=True),
    Column("client", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    #: How the caller authenticated: basic | robot | token | session | anonymous; on login rows
    #: the login method: password | robot | refresh_token (migration 0005).
    Column("auth_method", String(32), nullable=True),
    Index("ix_audit_log_op_time", "op_time"),
    Index("ix_audit_log_project", "project", "op_time"),
)

#: One row per (login name, client address): failures inside the window, and the lock-out end.
login_failures = Table(
    "login_failures",
    metadata,
    Column("username", String(255), nullable=False),
    Column("client", String(64), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("window_start", TIMESTAMP, nullable=False),
    Column("locked_until", TIMESTAMP, nullable=True),
    PrimaryKeyConstraint("username", "client"),
)


def member_rows_of(user_id: int) -> ColumnElement[bool]:
    """The ``project_members`` rows that give ``user_id`` a role: their own, and their groups'.

    The one definition of "member" that roles, visible projects and audit-log access all use, so
    a user whose rights come from a group sees and may do the same everywhere.
    """
    groups = select(user_group_members.c.group_id).where(user_group_members.c.user_id == user_id)
    return or_(project_members.c.user_id == user_id, project_members.c.group_id.in_(groups))


#: UI sessions logged out before they expired (their ``jti``): refused on every node. A row is kept
#: until the session would have expired anyway, then purged (migration 0018).
revoked_sessions = Table(
    "revoked_sessions",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("uid", String(32), nullable=False),
    Column("expires_at", TIMESTAMP, nullable=False),
    Index("ix_revoked_sessions_expires_at", "expires_at"),
)
