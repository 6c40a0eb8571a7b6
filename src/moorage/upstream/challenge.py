"""``WWW-Authenticate`` challenges and ``Retry-After`` values as upstream registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Challenge", "parse_challenge", "parse_retry_after"]

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: ``scheme`` lower-cased (``bearer``, ``basic``), its parameters by lower-cased name."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or ``None`` when there is none.

    Registries send one challenge (Distribution, Harbor, Docker Hub, quay, ghcr); quoted values
    may hold commas (``scope="repository:a:pull,push"``), so parameters are read with a regex
    rather than split on commas.
    """
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
              for match in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    ``None`` when absent or unreadable; a date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
