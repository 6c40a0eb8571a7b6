"""Repository names and tags, validated with the distribution-spec grammar before anything is written."""

from __future__ import annotations

import re

from moorage.errors import RegistryError

__all__ = ["MAX_NAME_LENGTH", "validate_name", "validate_tag"]

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")


def validate_name(name: str) -> str:
    """Return ``name`` or raise ``NAME_INVALID`` explaining the grammar."""
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(
            "NAME_INVALID",
            f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}",
            {"name": name[:64] + "..."},
        )
    if not _NAME.match(name):
        raise RegistryError(
            "NAME_INVALID",
            f"invalid repository name {name!r}: use lowercase letters, digits and separators "
            "('.', '_', '__', '-') between them, with '/' between path components",
            {"name": name},
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` or raise ``TAG_INVALID`` explaining the grammar."""
    if not _TAG.match(tag):
        raise RegistryError(
            "TAG_INVALID",
            f"invalid tag {tag!r}: up to 128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'",
            {"tag": tag},
        )
    return tag
