"""Which repositories and tags a replication policy selects (Harbor's ``filters``).

A policy carries a list of filters, each ``{"type": ..., "value": ..., "decoration": ...}``:

* ``name``: a doublestar pattern (:mod:`moorage.registry.patterns`) over the repository name
  *without* the project (Harbor's semantics: ``library/**`` selects every repository of project
  ``library``; a pattern with no ``/`` is matched against the name inside the project too);
* ``tag``: a doublestar pattern over the tag; ``decoration`` ``matches`` (default) or
  ``excludes``; a leading ``!`` is shorthand for ``excludes``;
* ``resource``: ``image`` (container images and indexes) or ``artifact`` (everything else);
  absent means both.

Filters are compiled when the policy is saved, so a pattern that cannot compile is refused with
the field named (``filters[1].value``) and nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.registry.patterns import PatternError, compile_pattern

__all__ = ["FILTER_TYPES", "FilterError", "Selection", "compile_filters"]

FILTER_TYPES = ("name", "tag", "resource")
RESOURCE_TYPES = ("image", "artifact")

#: Media types of what Harbor calls an "image": container images and indexes of them.
IMAGE_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
})
IMAGE_CONFIG_TYPES = frozenset({
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "",
})


class FilterError(ValueError):
    """A filter that cannot be used; ``field`` names it as the API shows it (``filters[0].value``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Selection:
    """The compiled filters of one policy: ask it whether a repository, a tag or a type is selected."""

    names: tuple[re.Pattern[str], ...] = ()
    tags_in: tuple[re.Pattern[str], ...] = ()
    tags_out: tuple[re.Pattern[str], ...] = ()
    resource: str | None = None

    def repository(self, name: str) -> bool:
        """Whether repository ``name`` (``project/path``) is selected by every name filter."""
        inside = name.partition("/")[2]
        return all(p.fullmatch(name) is not None or p.fullmatch(inside) is not None for p in self.names)

    def tag(self, tag: str) -> bool:
        """Whether ``tag`` passes: matches every ``matches`` filter and no ``excludes`` one."""
        return all(p.fullmatch(tag) for p in self.tags_in) and not any(p.fullmatch(tag) for p in self.tags_out)

    def artifact(self, media_type: str, config_media_type: str | None, artifact_type: str | None) -> bool:
        """Whether an artifact of this kind passes the ``resource`` filter."""
        if self.resource is None:
            return True
        is_image = media_type in IMAGE_MEDIA_TYPES and not artifact_type and (config_media_type or "") in IMAGE_CONFIG_TYPES
        return is_image == (self.resource == "image")

    @property
    def filters_tags(self) -> bool:
        """Whether any tag filter exists (untagged artifacts are then never selected)."""
        return bool(self.tags_in or self.tags_out)


def _pattern(field: str, value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise FilterError(field, "must be a pattern string such as 'library/**' or 'v1.*'")
    try:
        return compile_pattern(value)
    except PatternError as exc:
        raise FilterError(field, f"{exc}; see docs/replication.md for the pattern syntax") from None


def compile_filters(filters: Sequence[Mapping[str, Any]] | None) -> Selection:
    """Compile Harbor-shaped ``filters``; :class:`FilterError` names the first bad field."""
    names: list[re.Pattern[str]] = []
    tags_in: list[re.Pattern[str]] = []
    tags_out: list[re.Pattern[str]] = []
    resource: str | None = None
    for index, item in enumerate(filters or ()):
        where = f"filters[{index}]"
        if not isinstance(item, Mapping):
            raise FilterError(where, "must be an object with 'type' and 'value'")
        kind = item.get("type")
        if kind not in FILTER_TYPES:
            raise FilterError(f"{where}.type", f"unknown filter type {kind!r}; use one of {', '.join(FILTER_TYPES)}")
        value = item.get("value")
        decoration = item.get("decoration") or "matches"
        if decoration not in ("matches", "excludes"):
            raise FilterError(f"{where}.decoration", "must be 'matches' or 'excludes'")
        if kind == "resource":
            if value not in RESOURCE_TYPES:
                raise FilterError(f"{where}.value", f"resource must be one of {', '.join(RESOURCE_TYPES)}")
            resource = str(value)
        elif kind == "name":
            if decoration != "matches":
                raise FilterError(f"{where}.decoration", "a name filter only 'matches'")
            names.append(_pattern(f"{where}.value", value))
        else:
            if isinstance(value, str) and value.startswith("!"):
                value, decoration = value[1:], "excludes"
            (tags_out if decoration == "excludes" else tags_in).append(_pattern(f"{where}.value", value))
    return Selection(tuple(names), tuple(tags_in), tuple(tags_out), resource)
