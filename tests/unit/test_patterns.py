"""Harbor's doublestar patterns: what matches, and what cannot compile (refused when a rule is saved)."""

from __future__ import annotations

import pytest

from moorage.registry.patterns import PatternError, compile_pattern, full_match


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("v*", "v1.2", True),
        ("v*", "xv1", False),  # a full match, never a part
        ("v*", "v1/x", False),  # '*' stays within a path segment
        ("**", "team/app", True),
        ("**", "", True),
        ("**/app", "app", True),
        ("**/app", "a/b/app", True),
        ("**/app", "a/b/app2", False),
        ("{latest,stable}", "stable", True),
        ("{latest,stable}", "latest-1", False),
        ("v{1,2.{0,1}}", "v2.1", True),
        ("app{,-*}", "app", True),
        ("app{,-*}", "app-web", True),
        ("v?", "v1", True),
        ("v?", "v10", False),
        ("v[0-9]", "v7", True),
        ("v[!0-9]", "v7", False),
        ("v[!0-9]", "vx", True),
        ("1.0", "1x0", False),  # '.' is literal
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
    ],
)
def test_doublestar_full_match(pattern: str, name: str, matches: bool) -> None:
    assert full_match(pattern, name) is matches


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "empty"),
        ("{v1,v2", "never closed"),
        ("v1}", "closes no"),
        ("v[1-", "never closed"),
        ("v[]", "never closed"),
        ("v[9-1]", "bad character class"),
        ("v\\", "lone"),
        ("v\n", "control character"),
        ("v" * 256, "longer than"),
    ],
)
def test_patterns_that_cannot_compile(pattern: str, says: str) -> None:
    with pytest.raises(PatternError, match=says):
        compile_pattern(pattern)
