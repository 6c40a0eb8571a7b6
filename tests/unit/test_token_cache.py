"""The per-process cache of verified bearer tokens (issue 17, manifest hot path): what it returns,
when an entry ends, and how many it keeps. The clock is the test's, so nothing waits."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.auth.token_cache import VerifiedTokens


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(exp: float, **extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "uid": "u-1", "gen": 0, "exp": exp, "access": [], **extra}


def test_a_cached_token_returns_the_claims_it_was_verified_with_for_that_purpose_only() -> None:
    clock = Clock()
    cache = VerifiedTokens(clock=clock)
    verified = claims(clock.now + 600, access=[{"type": "repository", "name": "p/app", "actions": ["pull"]}])
    assert cache.get("tok", "registry") is None
    cache.put("tok", "registry", verified)
    got = cache.get("tok", "registry")
    assert got == verified
    got["sub"] = "mallory"  # a caller editing its copy changes nothing for the next one
    assert cache.get("tok", "registry") == verified
    assert cache.get("tok", "api") is None and cache.get("tok", "refresh") is None
    assert cache.get("tok2", "registry") is None and cache.get("to", "registry") is None


def test_an_entry_ends_at_the_token_exp() -> None:
    clock = Clock()
    cache = VerifiedTokens(max_seconds=3600, clock=clock)
    cache.put("tok", "registry", claims(clock.now + 10))
    clock.now += 9.9
    assert cache.get("tok", "registry") is not None
    clock.now += 0.1  # at exp exactly: verified again (where jwt's leeway, not the cache, decides)
    assert cache.get("tok", "registry") is None
    assert len(cache) == 0


def test_an_entry_ends_after_max_seconds_even_when_exp_is_later() -> None:
    clock = Clock()
    cache = VerifiedTokens(max_seconds=30, clock=clock)
    cache.put("tok", "registry", claims(clock.now + 1800))
    clock.now += 29.5
    assert cache.get("tok", "registry") is not None
    clock.now += 0.5
    assert cache.get("tok", "registry") is None


@pytest.mark.parametrize("exp", [None, "9999999999", True, 999_990.0, 1_000_000.0])
def test_a_token_without_a_usable_future_exp_is_not_kept(exp: object) -> None:
    """Expired (inside jwt's leeway), at exp, or with no numeric ``exp``: never cached."""
    cache = VerifiedTokens(clock=Clock())
    cache.put("tok", "registry", claims(0) | {"exp": exp})
    assert cache.get("tok", "registry") is None and len(cache) == 0


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache = VerifiedTokens(max_entries=3, clock=clock)
    for name in ("a", "b", "c"):
        cache.put(name, "registry", claims(clock.now + 600, sub=name))
    assert cache.get("a", "registry") is not None  # "a" used: "b" is now the oldest
    cache.put("d", "registry", claims(clock.now + 600, sub="d"))
    assert len(cache) == 3
    assert cache.get("b", "registry") is None
    assert [cache.get(n, "registry")["sub"] for n in ("a", "c", "d")] == ["a", "c", "d"]  # type: ignore[index]
    for n in range(100):
        cache.put(f"flood-{n}", "registry", claims(clock.now + 600))
    assert len(cache) == 3


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        VerifiedTokens(max_entries=0)
