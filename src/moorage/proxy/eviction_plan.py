"""Which cached artifacts a proxy project gives up when it is over its cache limit: a pure function.

Kept apart from the database and the job (:mod:`.eviction`) so that the choice can be tested on its
own, with generated inputs (``tests/unit/test_proxy_eviction_plan.py``).

The usage is counted as the project's quota counts it: every blob once, however many artifacts or
repositories of the project need it. Evicting an artifact frees only the blobs that no surviving
artifact needs, so an old artifact whose layers a newer one shares frees little, and the choice
goes on to the next one. Artifacts leave in order of last use (last pull, or when they were fetched
if never pulled since), oldest first, ties broken by key so that the answer does not depend on the
order rows come back in; the first prefix of that order that brings the usage to ``target`` is the
answer. Why a target below the limit: evicting down to the limit exactly would make the next cold
pull evict again; a low-water mark (``proxy.eviction_low_water``, 90 % by default) leaves room.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["CachedArtifact", "EvictionPlan", "plan_eviction"]


@dataclass(frozen=True, slots=True)
class CachedArtifact:
    """One evictable unit: a repository's top-level artifact with what it needs.

    ``blobs`` holds every digest the artifact keeps stored: its own manifest, config and layers, and
    those of its index children and referrers (which go with it).
    """

    key: str
    last_used: datetime
    blobs: frozenset[str]


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """The artifacts to evict, oldest first, and the usage before and after (bytes)."""

    evict: tuple[str, ...]
    usage_before: int
    usage_after: int


def plan_eviction(
    artifacts: Iterable[CachedArtifact],
    sizes: Mapping[str, int],
    *,
    limit: int,
    target: int,
    other_bytes: int = 0,
    pinned: frozenset[str] = frozenset(),
) -> EvictionPlan:
    """The least recently used artifacts to evict so that the usage ends at ``target`` or below.

    ``sizes`` maps each digest to its size (a digest missing counts 0); ``other_bytes`` is usage
    that eviction cannot free (blobs linked but needed by no artifact yet: a fetch in progress).
    Nothing is evicted while the usage is at most ``limit`` or when ``limit`` is negative
    (unlimited). ``pinned`` artifacts (held by an immutable tag) are never chosen. When even
    evicting every other artifact cannot reach ``target``, all of them are chosen.
    """
    units = list(artifacts)
    needed: Counter[str] = Counter()
    for unit in units:
        needed.update(unit.blobs)
    usage = other_bytes + sum(sizes.get(digest, 0) for digest in needed)
    if limit < 0 or usage <= limit:
        return EvictionPlan((), usage, usage)
    evict: list[str] = []
    after = usage
    for unit in sorted((u for u in units if u.key not in pinned), key=lambda u: (u.last_used, u.key)):
        if after <= target:
            break
        evict.append(unit.key)
        for digest in unit.blobs:
            needed[digest] -= 1
            if needed[digest] == 0:
                after -= sizes.get(digest, 0)
    return EvictionPlan(tuple(evict), usage, after)
