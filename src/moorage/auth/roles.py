"""Harbor's project roles and what each may do to repositories (the table docs/identity.md shows).

Harbor numbers roles (``role_id``) in its member API; the numbers are kept so scripts written
for Harbor's API send the same values here.

=============  =======  ====  ====  ======  =================================
role           role_id  pull  push  delete  project administration
=============  =======  ====  ====  ======  =================================
projectAdmin   1        yes   yes   yes     members, robots, metadata, delete
maintainer     4        yes   yes   yes     robots
developer      2        yes   yes   no      no
guest          3        yes   no    no      no (sees members and logs)
limitedGuest   5        yes   no    no      no (sees neither)
=============  =======  ====  ====  ======  =================================

A system administrator may do everything everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALL_ACTIONS",
    "ROLE_ACTIONS",
    "ROLE_IDS",
    "ROLE_NAMES",
    "can_manage_members",
    "can_manage_robots",
    "can_see_members",
    "member_viewer_roles",
    "strongest",
]

ALL_ACTIONS = frozenset({"pull", "push", "delete"})

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "projectAdmin": ALL_ACTIONS,
    "maintainer": ALL_ACTIONS,
    "developer": frozenset({"pull", "push"}),
    "guest": frozenset({"pull"}),
    "limitedGuest": frozenset({"pull"}),
}

ROLE_IDS: dict[str, int] = {"projectAdmin": 1, "developer": 2, "guest": 3, "maintainer": 4, "limitedGuest": 5}
ROLE_NAMES: dict[int, str] = {number: name for name, number in ROLE_IDS.items()}


#: From the strongest role down: a user with several roles in a project (their own and their
#: groups') has the union of their actions, which is what the strongest one allows.
_RANK = ("projectAdmin", "maintainer", "developer", "guest", "limitedGuest")


def strongest(roles: Iterable[str]) -> str | None:
    """The strongest of ``roles`` (``None`` for none): what a user holding all of them may do."""
    held = set(roles)
    return next((role for role in _RANK if role in held), None)


def can_manage_members(role: str | None, sysadmin: bool) -> bool:
    return sysadmin or role == "projectAdmin"


def can_manage_robots(role: str | None, sysadmin: bool) -> bool:
    return sysadmin or role in ("projectAdmin", "maintainer")


#: Roles that see a project's members and its audit log (all but limitedGuest).
_MEMBER_VIEWERS = frozenset({"projectAdmin", "maintainer", "developer", "guest"})


def can_see_members(role: str | None, sysadmin: bool) -> bool:
    return sysadmin or role in _MEMBER_VIEWERS


def member_viewer_roles() -> frozenset[str]:
    """The roles :func:`can_see_members` accepts, for queries over many projects at once."""
    return _MEMBER_VIEWERS


def minimum_role_for(action: str) -> str:
    """The lowest role that allows ``action`` (for error messages that say what to ask for)."""
    return {"pull": "limitedGuest", "push": "developer", "delete": "maintainer"}.get(action, "projectAdmin")
