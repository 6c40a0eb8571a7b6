"""Retention: the policy parser (bad input names the field) and the pure evaluation, property-tested.

The laws, for any artifacts and any rules: every artifact is kept or removed (never both); the
input's order does not matter; adding a rule never removes more; a repository no rule applies
to loses nothing; each template keeps exactly what it says (checked against a direct model).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.retention.evaluate import Candidate, evaluate
from moorage.retention.rules import InvalidPolicy, RetentionRule, Selector, parse_rules, rules_json
from moorage.retention.service import parse_cron

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TAG_NAMES = ["latest", "v1", "v1.1", "v2", "dev-a", "dev-b", "stable"]
PATTERNS = ["**", "v*", "{latest,stable}", "dev-*", "v1.*", "nomatch"]
REPO_PATTERNS = ["**", "app", "team/*", "{app,web}", "nomatch"]


def rule(template: str = "always", value: int = 0, tags: str = "**", decoration: str = "matches",
         untagged: bool | None = None, repo: str = "**", repo_decoration: str = "repoMatches") -> dict[str, Any]:
    selector: dict[str, Any] = {"kind": "doublestar", "decoration": decoration, "pattern": tags}
    if untagged is not None:
        selector["extras"] = json.dumps({"untagged": untagged})
    params = {template: value} if template != "always" else {}
    return {"template": template, "params": params, "tag_selectors": [selector],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo_decoration, "pattern": repo}]}}


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    count = draw(st.integers(0, 12))
    out = []
    for i in range(count):
        tags = tuple(sorted(draw(st.sets(st.sampled_from(TAG_NAMES), max_size=3))))
        pushed = NOW - timedelta(hours=draw(st.integers(0, 24 * 60)))
        pulled = draw(st.one_of(st.none(), st.integers(0, 24 * 60).map(lambda h: NOW - timedelta(hours=h))))
        out.append(Candidate(f"sha256:{i:064x}", tags, pushed, pulled))
    return out


@st.composite
def rules(draw: st.DrawFn) -> RetentionRule:
    template = draw(st.sampled_from(["latestPushedK", "latestPulledN", "nDaysSinceLastPush", "nDaysSinceLastPull",
                                     "always"]))
    raw = rule(template, draw(st.integers(0, 20)), draw(st.sampled_from(PATTERNS)),
               draw(st.sampled_from(["matches", "excludes"])), draw(st.one_of(st.none(), st.booleans())),
               draw(st.sampled_from(REPO_PATTERNS)), draw(st.sampled_from(["repoMatches", "repoExcludes"])))
    raw["disabled"] = draw(st.booleans()) and draw(st.booleans())
    return parse_rules("or", [raw])[0]


REPOS = st.sampled_from(["app", "web", "team/app", "other"])


@settings(max_examples=200, deadline=None)
@given(candidates(), st.lists(rules(), max_size=4), REPOS)
def test_every_artifact_is_kept_or_removed_and_order_does_not_matter(
    found: list[Candidate], policy: list[RetentionRule], repository: str
) -> None:
    result = evaluate(policy, repository, found, NOW)
    assert set(result.kept).isdisjoint(result.removed)
    assert set(result.kept) | set(result.removed) == {c.digest for c in found}
    reversed_result = evaluate(policy, repository, list(reversed(found)), NOW)
    assert set(reversed_result.removed) == set(result.removed)
    if not any(r.applies_to(repository) for r in policy):
        assert result.removed == [] and not result.applies


@settings(max_examples=200, deadline=None)
@given(candidates(), st.lists(rules(), min_size=1, max_size=3), rules(), REPOS)
def test_adding_a_rule_never_removes_more(
    found: list[Candidate], policy: list[RetentionRule], extra: RetentionRule, repository: str
) -> None:
    before = evaluate(policy, repository, found, NOW)
    after = evaluate([*policy, extra], repository, found, NOW)
    if before.applies:  # a repository no rule applied to keeps everything; a first applicable rule may remove
        assert set(after.removed) <= set(before.removed)


def _selected(r: RetentionRule, c: Candidate) -> bool:
    """Harbor's tag selection, restated: matches = any tag matches; excludes = any tag does not match."""
    s = r.tag_selectors[0]
    if not c.tags:
        return s.untagged if s.decoration == "matches" else not s.untagged
    hits = [Selector("matches", s.pattern).selects_tags((t,)) for t in c.tags]
    return any(hits) if s.decoration == "matches" else not all(hits)


@settings(max_examples=200, deadline=None)
@given(candidates(), rules())
def test_each_template_keeps_what_it_says(found: list[Candidate], r: RetentionRule) -> None:
    repository = "app"
    result = evaluate([r], repository, found, NOW)
    if not r.applies_to(repository):
        assert result.removed == []
        return
    selected = [c for c in found if _selected(r, c)]
    kept = set(result.kept)
    if r.template == "always":
        assert kept == {c.digest for c in selected}
    elif r.template == "latestPushedK":
        assert len(kept) == min(r.value, len(selected))
        if kept and len(kept) < len(selected):  # nothing removed is newer than something kept
            oldest_kept = min(c.pushed_at for c in selected if c.digest in kept)
            assert all(c.pushed_at <= oldest_kept for c in selected if c.digest not in kept)
    elif r.template == "latestPulledN":
        assert len(kept) == min(r.value, len(selected))
        never = datetime.min.replace(tzinfo=UTC)
        if kept and len(kept) < len(selected):
            oldest_kept = min(c.pulled_at or never for c in selected if c.digest in kept)
            assert all((c.pulled_at or never) <= oldest_kept for c in selected if c.digest not in kept)
    elif r.template == "nDaysSinceLastPush":
        assert kept == {c.digest for c in selected if c.pushed_at >= NOW - timedelta(days=r.value)}
    else:
        assert kept == {c.digest for c in selected
                        if c.pulled_at is not None and c.pulled_at >= NOW - timedelta(days=r.value)}


def test_harbor_example_keep_two_newest_releases_and_latest_and_drop_untagged() -> None:
    policy = parse_rules("or", [rule("latestPushedK", 2, "v*", untagged=False),
                                rule("always", tags="{latest,stable}", untagged=False)])
    found = [
        Candidate("sha256:a", ("v1",), NOW - timedelta(days=5)),
        Candidate("sha256:b", ("v2",), NOW - timedelta(days=4)),
        Candidate("sha256:c", ("v3",), NOW - timedelta(days=3)),
        Candidate("sha256:d", ("latest", "dev"), NOW - timedelta(days=9)),
        Candidate("sha256:e", (), NOW - timedelta(days=1)),
        Candidate("sha256:f", ("dev",), NOW - timedelta(days=1)),
    ]
    result = evaluate(policy, "app", found, NOW)
    assert result.removed == ["sha256:a", "sha256:e", "sha256:f"]
    assert result.kept["sha256:c"] == "rule 1: retain the most recently pushed 2 artifacts"
    assert result.kept["sha256:d"] == "rule 2: retain always"


def test_repository_excludes_and_disabled_rules_leave_repositories_alone() -> None:
    found = [Candidate("sha256:a", ("v1",), NOW)]
    policy = parse_rules("or", [rule("latestPushedK", 0, repo="app", repo_decoration="repoExcludes")])
    assert evaluate(policy, "app", found, NOW).removed == []
    assert evaluate(policy, "web", found, NOW).removed == ["sha256:a"]
    disabled = parse_rules("or", [{**rule("latestPushedK", 0), "disabled": True}])
    assert evaluate(disabled, "web", found, NOW).removed == []


def test_rules_round_trip_through_their_json() -> None:
    policy = parse_rules("or", [rule("latestPulledN", 3, "v{1,2}.*", "excludes", untagged=True, repo="team/**")])
    assert parse_rules("or", rules_json(policy)) == policy
    assert rules_json(policy)[0]["tag_selectors"][0]["extras"] == '{"untagged": true}'


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([rule("latestPushedK", -1)], "rules[0].params.latestPushedK"),
        ([{**rule("latestPushedK", 1), "params": {}}], "rules[0].params.latestPushedK"),
        ([{**rule("nDaysSinceLastPull", 1), "params": {"nDaysSinceLastPull": "7"}}], "rules[0].params.nDaysSinceLastPull"),
        ([rule("nDaysSinceLastPush", 10**9)], "rules[0].params.nDaysSinceLastPush"),
        ([rule("always"), {**rule(), "template": "keepEverythingForever"}], "rules[1].template"),
        ([rule(tags="v{1,2")], "rules[0].tag_selectors[0].pattern"),
        ([rule(tags="[")], "rules[0].tag_selectors[0].pattern"),
        ([rule(repo="}")], "rules[0].scope_selectors.repository[0].pattern"),
        ([rule(decoration="regex")], "rules[0].tag_selectors[0].decoration"),
        ([{**rule(), "tag_selectors": []}], "rules[0].tag_selectors"),
        ([{**rule(), "scope_selectors": {"namespace": []}}], "rules[0].scope_selectors.namespace"),
        ([{**rule(), "tag_selectors": [{"pattern": "**", "extras": "{untagged"}]}], "rules[0].tag_selectors[0].extras"),
        ([rule()] * 16, "rules"),
        ("not a list", "rules"),
    ],
)
def test_bad_rules_name_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_rules("or", raw)
    assert caught.value.field == field


@pytest.mark.parametrize("cron", ["0 61 * * *", "* * *", "1 0 0 * * *", "0 0 32 * *"])
def test_a_bad_cron_names_the_field(cron: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_cron({"kind": "Schedule", "settings": {"cron": cron}})
    assert caught.value.field == "trigger.settings.cron"
    assert parse_cron({"kind": "Schedule", "settings": {"cron": ""}}) == ""
    assert parse_cron({"kind": "Schedule", "settings": {"cron": "0 0 3 * * *"}}) == "0 0 3 * * *"
    with pytest.raises(InvalidPolicy, match="algorithm"):
        parse_rules("and", [])


def test_untagged_artifacts_follow_harbors_default_unless_extras_say() -> None:
    untagged = [Candidate("sha256:u", (), NOW)]
    kept_by_default = parse_rules("or", [rule("always", tags="v*")])  # matches: untagged go with it
    assert evaluate(kept_by_default, "app", untagged, NOW).removed == []
    removed = parse_rules("or", [rule("always", tags="v*", untagged=False)])
    assert evaluate(removed, "app", untagged, NOW).removed == ["sha256:u"]
