"""Every name and identifier the registry accepts, validated in one place before anything is written.

Repository names and tags (the distribution-spec grammar), project names, user names, robot
names and login names, and free-form identifiers from the configuration. Each grammar is
matched with :func:`re.fullmatch`: ``re.match(r"…$")`` also matches before a final newline,
which let ``"proja\\n"`` and ``"admin\\n"`` in as look-alikes of existing names (issue 10).
Before any grammar, :func:`unsafe_character` refuses control, format (zero-width) and
whitespace characters of every script, so the message names the offending code point.

The ``check_*`` functions raise :class:`InvalidNameError` (a ``ValueError``) that each entry
point renders its own way; :func:`validate_name` and :func:`validate_tag` raise the OCI
``NAME_INVALID``/``MANIFEST_INVALID`` errors of the ``/v2`` API.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType

from moorage.errors import RegistryError

__all__ = [
    "MAX_NAME_LENGTH",
    "ROBOT_PREFIX",
    "VALIDATORS",
    "InvalidNameError",
    "check_group_name",
    "check_identifier",
    "check_login",
    "check_project",
    "check_repository",
    "check_robot",
    "check_tag",
    "check_username",
    "ldap_filter_character",
    "unsafe_character",
    "validate_name",
    "validate_tag",
]

MAX_NAME_LENGTH = 255
ROBOT_PREFIX = "robot$"
#: Unicode categories never allowed in a name: controls, format characters (zero-width space,
#: bidi overrides), separators (no-break and ideographic spaces, line/paragraph separators),
#: surrogates, private use and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_PROJECT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,254}")
_ROBOT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


class InvalidNameError(ValueError):
    """A name that breaks its grammar; ``message`` says which rule and what to write instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def unsafe_character(value: str) -> str | None:
    """The first control, format or whitespace character of ``value`` (``None`` if there is none)."""
    for char in value:
        if char.isspace() or unicodedata.category(char) in _UNSAFE_CATEGORIES:
            return char
    return None


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def _check(what: str, value: str, pattern: re.Pattern[str], rule: str, max_length: int = MAX_NAME_LENGTH) -> str:
    bad = unsafe_character(value)
    if bad is not None:
        raise InvalidNameError(
            f"{what} {value!r} contains {_describe(bad)}, a control, invisible or whitespace character; "
            f"remove it ({rule})"
        )
    if len(value) > max_length:
        raise InvalidNameError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if pattern.fullmatch(value) is None:
        raise InvalidNameError(f"{what} {value!r} is invalid: {rule}")
    return value


def check_repository(name: str) -> str:
    """A repository name (``<project>/<path…>``, the distribution-spec grammar, at most 255 characters)."""
    return _check(
        "repository name", name, _REPOSITORY,
        "use lowercase letters, digits and separators ('.', '_', '__', '-') between them, with '/' between "
        "path components",
    )


def check_tag(tag: str) -> str:
    """A tag: up to 128 letters, digits, ``_``, ``.``, ``-``, not starting with ``.`` or ``-``."""
    return _check(
        "tag", tag, _TAG, "up to 128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'",
        max_length=128,
    )


def check_project(name: str) -> str:
    """A project name: the first component of its repositories, with single separators."""
    return _check(
        "project name", name, _PROJECT,
        "use lower-case letters, digits and single '.', '_' or '-' between them (it is the first component "
        "of repository names)",
    )


def check_username(name: str) -> str:
    """A user name (``robot$…`` and ``$`` are reserved for robot accounts)."""
    return _check(
        "username", name, _USERNAME,
        "use letters, digits, '.', '_', '@' or '-', starting with a letter or digit (names starting with "
        "'robot$' are reserved for robot accounts)",
    )


#: A group name: words of printable characters with single ASCII spaces between them.
_GROUP = re.compile(r"[^\s]+(?: [^\s]+)*")
#: The characters RFC 4515 gives a meaning in a search filter.
_LDAP_FILTER_CHARACTERS = frozenset("*()\\\0")


def check_group_name(name: str) -> str:
    """A user group's name (``/usergroups``): directory groups are often called ``Domain Admins``, so
    single ASCII spaces between words are allowed (a group name is never part of a path or a login);
    any other whitespace, control or invisible character is not."""
    rule = "use printable characters with single spaces between words, without leading or trailing spaces"
    bad = unsafe_character(name.replace(" ", ""))
    if bad is not None:
        raise InvalidNameError(f"group name {name!r} contains {_describe(bad)}, a control, invisible or "
                               f"whitespace character; remove it ({rule})")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"group name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if _GROUP.fullmatch(name) is None:
        raise InvalidNameError(f"group name {name!r} is invalid: {rule}")
    return name


def ldap_filter_character(value: str) -> str | None:
    """The first character of ``value`` that means something in an LDAP search filter (``*``, ``(``,
    ``)``, ``\\``, NUL), else ``None``: a login name holding one is an injection attempt, refused
    before any directory is asked (RFC 4515 section 3)."""
    for char in value:
        if char in _LDAP_FILTER_CHARACTERS:
            return char
    return None


def check_robot(name: str) -> str:
    """The short name of a robot account (what follows ``robot$`` or ``robot$<project>+``)."""
    return _check(
        "robot name", name, _ROBOT, "use lower-case letters, digits and single '.', '_' or '-' between them",
        max_length=200,
    )


def check_login(name: str) -> str:
    """A name that may log in: a user name, ``robot$<name>`` or ``robot$<project>+<name>``."""
    if not name.startswith(ROBOT_PREFIX):
        return check_username(name)
    project, plus, short = name[len(ROBOT_PREFIX):].rpartition("+")
    try:
        if plus:
            check_project(project)
        check_robot(short)
    except InvalidNameError as exc:
        raise InvalidNameError(
            f"robot account {name!r} is not a valid robot login (robot$<name> or robot$<project>+<name>): "
            f"{exc.message}"
        ) from None
    return name


_IDENTIFIER = re.compile(r"[\x21-\x7e]+")


def check_identifier(value: str, what: str = "identifier") -> str:
    """A free-form identifier from the configuration (``auth.service``, ``redis.key_prefix``): printable ASCII."""
    return _check(what, value, _IDENTIFIER, "use printable ASCII characters without spaces")


#: Every validator by the kind of name it checks (the property test runs over all of them).
VALIDATORS: Mapping[str, Callable[[str], str]] = MappingProxyType({
    "repository": check_repository,
    "tag": check_tag,
    "project": check_project,
    "username": check_username,
    "robot": check_robot,
    "login": check_login,
    "identifier": check_identifier,
})


def validate_name(name: str) -> str:
    """Return ``name`` or raise ``NAME_INVALID`` explaining the grammar."""
    try:
        return check_repository(name)
    except InvalidNameError as exc:
        raise RegistryError(
            "NAME_INVALID", exc.message, {"name": name if len(name) <= MAX_NAME_LENGTH else name[:64] + "..."}
        ) from None


def validate_tag(tag: str) -> str:
    """Return ``tag`` or raise ``MANIFEST_INVALID`` explaining the grammar.

    ``MANIFEST_INVALID``: the OCI spec has no tag error code (``TAG_INVALID`` is Distribution's
    own), and a tag is validated when a manifest is pushed under it. Reads of a reference that is
    no valid tag answer ``MANIFEST_UNKNOWN`` instead (``manifest_store.lookup_reference``).
    """
    try:
        return check_tag(tag)
    except InvalidNameError as exc:
        raise RegistryError("MANIFEST_INVALID", exc.message, {"tag": tag[:160]}) from None
