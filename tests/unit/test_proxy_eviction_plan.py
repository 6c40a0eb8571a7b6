"""The proxy cache's eviction choice (moorage.proxy.eviction_plan) and the cache-limit parser, without a database.

Properties against generated caches: blobs shared between artifacts counted once, usage at or under
the target whenever evicting what may be evicted can get there, the most recently used artifacts
always survive (what goes is a prefix of the oldest-first order), nothing more than needed goes,
pinned (immutable) artifacts never go, and the input order does not matter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.numbers import INT64_MAX
from moorage.proxy.eviction import InvalidCacheLimit, parse_cache_limit
from moorage.proxy.eviction_plan import CachedArtifact, plan_eviction

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def usage(units: list[CachedArtifact], sizes: dict[str, int], other: int = 0) -> int:
    return other + sum(sizes[d] for d in {d for u in units for d in u.blobs})


def test_the_least_recently_used_goes_and_shared_blobs_are_counted_once() -> None:
    sizes = {"base": 100, "a": 50, "b": 50, "c": 50, "ma": 1, "mb": 1, "mc": 1}
    units = [
        CachedArtifact("r@a", at(3), frozenset({"ma", "base", "a"})),  # pulled again last
        CachedArtifact("r@b", at(1), frozenset({"mb", "base", "b"})),
        CachedArtifact("r@c", at(2), frozenset({"mc", "base", "c"})),
    ]
    # base counted once: 100 + 3 * 51 = 253
    plan = plan_eviction(units, sizes, limit=220, target=210)
    assert (plan.usage_before, plan.evict, plan.usage_after) == (253, ("r@b",), 202)  # base stays: a needs it
    plan = plan_eviction(units, sizes, limit=220, target=200)
    assert (plan.evict, plan.usage_after) == (("r@b", "r@c"), 151)
    # under the limit: nothing, even over the target
    assert plan_eviction(units, sizes, limit=253, target=100).evict == ()
    # no limit
    assert plan_eviction(units, sizes, limit=-1, target=-1).evict == ()


def test_a_low_water_target_below_the_limit_evicts_further() -> None:
    sizes = {f"b{i}": 10 for i in range(10)}
    units = [CachedArtifact(f"r@{i}", at(i), frozenset({f"b{i}"})) for i in range(10)]  # 100 bytes
    assert plan_eviction(units, sizes, limit=95, target=95).evict == ("r@0",)
    assert plan_eviction(units, sizes, limit=95, target=80).evict == ("r@0", "r@1")


def test_pinned_artifacts_stay_and_other_bytes_cannot_be_freed() -> None:
    sizes = {"x": 60, "y": 60, "z": 60}
    units = [CachedArtifact("r@x", at(0), frozenset({"x"})), CachedArtifact("r@y", at(1), frozenset({"y"})),
             CachedArtifact("r@z", at(2), frozenset({"z"}))]
    plan = plan_eviction(units, sizes, limit=150, target=120, pinned=frozenset({"r@x"}))
    assert plan.evict == ("r@y",) and plan.usage_after == 120
    # 100 bytes in flight that no artifact needs yet: more must go
    plan = plan_eviction(units, sizes, limit=150, target=150, other_bytes=100)
    assert plan.evict == ("r@x", "r@y", "r@z") and plan.usage_after == 100


def test_ties_are_broken_by_key() -> None:
    sizes = {"p": 10, "q": 10}
    units = [CachedArtifact("r@q", at(0), frozenset({"q"})), CachedArtifact("r@p", at(0), frozenset({"p"}))]
    assert plan_eviction(units, sizes, limit=15, target=10).evict == ("r@p",)


@st.composite
def caches(draw: st.DrawFn) -> tuple[list[CachedArtifact], dict[str, int], int, int, int, frozenset[str]]:
    blob_names = [f"b{i}" for i in range(draw(st.integers(1, 12)))]
    sizes = {name: draw(st.integers(0, 1000)) for name in blob_names}
    count = draw(st.integers(0, 10))
    units = []
    for i in range(count):
        needs = draw(st.sets(st.sampled_from(blob_names), min_size=1, max_size=5))
        units.append(CachedArtifact(f"repo{i % 3}@sha256:{i:02d}", at(draw(st.integers(0, 20))), frozenset(needs)))
    total = usage(units, sizes)
    other = draw(st.integers(0, 300))
    limit = draw(st.integers(-1, total + other + 50))
    target = draw(st.integers(0, max(0, limit)))
    pinned = frozenset(draw(st.sets(st.sampled_from([u.key for u in units]), max_size=2)) if units else set())
    return units, sizes, other, limit, target, pinned


@settings(max_examples=400, deadline=None)
@given(caches(), st.randoms())
def test_eviction_properties(
    cache: tuple[list[CachedArtifact], dict[str, int], int, int, int, frozenset[str]], rnd: object
) -> None:
    units, sizes, other, limit, target, pinned = cache
    plan = plan_eviction(units, sizes, limit=limit, target=target, other_bytes=other, pinned=pinned)
    before = usage(units, sizes, other)
    assert plan.usage_before == before
    survivors = [u for u in units if u.key not in plan.evict]
    assert plan.usage_after == usage(survivors, sizes, other)  # shared blobs freed only with their last user
    if limit < 0 or before <= limit:
        assert plan.evict == ()
        return
    assert not pinned & set(plan.evict)
    evictable = sorted((u for u in units if u.key not in pinned), key=lambda u: (u.last_used, u.key))
    # what goes is the oldest-first prefix: every survivor that could go was used after everything evicted
    assert [u.key for u in evictable[: len(plan.evict)]] == list(plan.evict)
    # whenever evicting everything evictable reaches the target, the plan reaches it
    floor = usage([u for u in units if u.key in pinned], sizes, other)
    if floor <= target:
        assert plan.usage_after <= target
    else:
        assert len(plan.evict) == len(evictable)
    # and no more than needed: keeping the last one evicted would leave the usage over the target
    if plan.evict:
        kept_last = [u for u in units if u.key not in plan.evict[:-1]]
        assert usage(kept_last, sizes, other) > target
    # the order rows come back in does not matter
    shuffled = list(units)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert plan_eviction(shuffled, sizes, limit=limit, target=target, other_bytes=other, pinned=pinned) == plan


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0), ("-1", -1), (-1, -1), ("10737418240", 10737418240), (5, 5), ("007", 7), (str(INT64_MAX), INT64_MAX),
])
def test_cache_limits_that_parse(value: object, expected: int) -> None:
    assert parse_cache_limit(value) == expected


@pytest.mark.parametrize("value", [
    "", " 5", "5 ", "+5", "1_0", "10G", "1e9", "1.5", "-2", "--1", "٣", "²", str(INT64_MAX + 1), True, 1.5, -2,
    INT64_MAX + 1, None, [], {},
])
def test_cache_limits_that_are_refused_name_the_field(value: object) -> None:
    with pytest.raises(InvalidCacheLimit) as caught:
        parse_cache_limit(value)
    assert caught.value.message.startswith("metadata.proxy_cache_limit: ")
    assert caught.value.message.endswith("nothing was saved")
