"""What a retention policy keeps and removes in one repository: a pure function, no I/O.

Harbor's semantics (``algorithm: or``): each enabled rule whose repository selectors take the
repository selects candidates with its tag selectors (each narrowing the previous), then keeps
some of them per its template; an artifact is kept when any rule keeps it and removed
otherwise. A repository no rule applies to is left alone: everything in it is kept.

* ``latestPushedK``: the K most recently pushed (ties: the digest, so the answer is stable);
* ``latestPulledN``: the N most recently pulled; never pulled counts as pulled before anything;
* ``nDaysSinceLastPush``: pushed within N days of ``now``;
* ``nDaysSinceLastPull``: pulled within N days of ``now`` (never pulled: not kept);
* ``always``: every selected artifact.

The job (:mod:`moorage.retention.job`) feeds it the repository's artifacts and acts on the
answer; the property tests (tests/unit/test_retention_evaluate.py) pin the laws: every
artifact is kept or removed, adding a rule never removes more, the input order does not
matter, a repository no rule applies to loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from moorage.retention.rules import RetentionRule

__all__ = ["Candidate", "Evaluation", "evaluate"]

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An artifact of the repository as retention sees it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    pulled_at: datetime | None = None


@dataclass(slots=True)
class Evaluation:
    """Digests kept, each with the first rule (by position) that keeps it, and digests removed."""

    kept: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    #: ``False`` when no enabled rule applies to the repository (nothing removed).
    applies: bool = True


def _newest(candidates: Iterable[Candidate], when: str) -> list[Candidate]:
    def key(c: Candidate) -> tuple[datetime, datetime, str]:
        moment = c.pushed_at if when == "push" else (c.pulled_at or _NEVER)
        return moment, c.pushed_at, c.digest

    return sorted(candidates, key=key, reverse=True)


def _kept_by(rule: RetentionRule, selected: list[Candidate], now: datetime) -> list[Candidate]:
    if rule.template == "always":
        return selected
    if rule.template == "latestPushedK":
        return _newest(selected, "push")[: rule.value]
    if rule.template == "latestPulledN":
        return _newest(selected, "pull")[: rule.value]
    since = now - timedelta(days=rule.value)
    if rule.template == "nDaysSinceLastPush":
        return [c for c in selected if c.pushed_at >= since]
    if rule.template == "nDaysSinceLastPull":
        return [c for c in selected if c.pulled_at is not None and c.pulled_at >= since]
    raise ValueError(f"unknown retention template {rule.template!r}")  # parse_rules lets none through


def evaluate(
    rules: Sequence[RetentionRule], repository: str, candidates: Sequence[Candidate], now: datetime
) -> Evaluation:
    """Which of ``candidates`` (the artifacts of ``repository``, its name inside the project) the
    rules keep; ``removed`` lists the others in the input's order. Digests must be distinct."""
    result = Evaluation()
    applicable = [(i, rule) for i, rule in enumerate(rules) if rule.applies_to(repository)]
    if not applicable:
        result.applies = False
        result.kept = {c.digest: "no enabled rule applies to this repository" for c in candidates}
        return result
    for index, rule in applicable:
        selected = [c for c in candidates if all(s.selects_tags(c.tags) for s in rule.tag_selectors)]
        for kept in _kept_by(rule, selected, now):
            result.kept.setdefault(kept.digest, f"rule {index + 1}: {rule.describe()}")
    result.removed = [c.digest for c in candidates if c.digest not in result.kept]
    return result
