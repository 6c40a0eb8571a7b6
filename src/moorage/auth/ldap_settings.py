"""``auth.ldap``: the directory an LDAP identity source binds to and searches (docs/sso.md).

Kept apart from :mod:`moorage.config` (which holds it as ``AuthSettings.ldap``) so the LDAP
keys, their defaults and their checks live next to each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["LdapSettings"]


class LdapSettings(BaseModel):
    """``auth.ldap``: connection, service account, user search and group search."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: ``ldap://host:389`` or ``ldaps://host:636``.
    url: str
    #: Upgrade an ``ldap://`` connection with StartTLS before binding (refused with ``ldaps://``).
    start_tls: bool = False
    #: PEM file of the CA that signed the directory's certificate (default: the system's CAs).
    ca_file: str | None = None
    #: Check the directory's certificate and host name; turn off only for a test directory.
    verify_certificate: bool = True
    #: The service account that searches (empty: anonymous search, when the directory allows it).
    bind_dn: str = ""
    bind_password: str = ""
    #: Seconds to connect and for each operation.
    timeout: float = Field(default=5.0, gt=0, le=60)
    #: Where users are, which entries are users, and the attribute that holds the login name.
    user_base: str
    user_filter: str = "(objectClass=person)"
    uid_attribute: str = "uid"
    user_scope: Literal["base", "one", "subtree"] = "subtree"
    email_attribute: str = "mail"
    realname_attribute: str = "cn"
    #: Where groups are, which entries are groups, and the group attribute that lists members
    #: (``member``/``uniqueMember`` hold user DNs, ``memberUid`` holds login names).
    group_base: str = ""
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
    group_membership_attribute: str = "member"
    group_name_attribute: str = "cn"
    group_scope: Literal["base", "one", "subtree"] = "subtree"
    #: Members of this group (a DN) are system administrators; others are not (empty: never set).
    admin_group_dn: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.lower().startswith(("ldap://", "ldaps://")):
            raise ValueError("auth.ldap.url must start with ldap:// or ldaps:// (e.g. ldaps://ldap.example.com:636)")
        return value

    @field_validator("user_filter", "group_filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        if not (value.startswith("(") and value.endswith(")")):
            raise ValueError("a search filter must be enclosed in parentheses, e.g. (objectClass=person)")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"auth.ldap.ca_file {value!r} is not a readable file; give the PEM file of the CA")
        return value

    @model_validator(mode="after")
    def _tls(self) -> LdapSettings:
        if self.start_tls and self.url.lower().startswith("ldaps://"):
            raise ValueError("auth.ldap.start_tls is for ldap:// URLs; ldaps:// is TLS from the start: drop one")
        if self.bind_dn and not self.bind_password:
            raise ValueError("auth.ldap.bind_password is required with auth.ldap.bind_dn")
        return self
