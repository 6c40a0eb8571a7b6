"""User groups and who is in them (migration 0014), see moorage.auth.groups.

A group is what an identity source says a user belongs to: an LDAP group (by DN), an OIDC
``groups`` claim value, or a local group an administrator fills. Groups are project members like
users (``project_members.group_id``); a user's rights in a project are the union of their own
role and their groups' roles. Memberships of external groups are replaced at every login and
refresh by what the source says then, so leaving a directory group takes effect at the next one.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Table

from moorage.db.tables import TIMESTAMP, metadata

__all__ = ["user_group_members", "user_groups"]

#: ``group_type`` uses Harbor's numbers (1 LDAP, 2 local — Harbor's "HTTP" —, 3 OIDC).
#: ``group_key`` identifies the group within its type: the normalised DN of an LDAP group (so
#: ``CN=Dev,DC=x`` and ``cn=dev, dc=x`` are one group), the name otherwise.
user_groups = Table(
    "user_groups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("group_name", String(255), nullable=False),
    Column("group_type", Integer, nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("ldap_group_dn", String(512), nullable=True),
    Column("created_at", TIMESTAMP, nullable=False),
    Column("updated_at", TIMESTAMP, nullable=False),
    Index("uq_user_groups_type_key", "group_type", "group_key", unique=True),
)

user_group_members = Table(
    "user_group_members",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", Integer, ForeignKey("user_groups.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", TIMESTAMP, nullable=False),
    PrimaryKeyConstraint("user_id", "group_id"),
    Index("ix_user_group_members_group_id", "group_id"),
)
