"""Retention policies as Harbor writes them, parsed and checked before anything is saved.

A policy is Harbor's ``RetentionPolicy``: ``algorithm`` ``or`` (an artifact is kept when any
rule keeps it), up to 15 ``rules``, a ``trigger`` (``Schedule`` with ``settings.cron``; an
empty cron means manual runs only) and a ``scope`` (``{"level": "project", "ref": <id>}``).
A rule has a ``template`` with its one parameter in ``params``, ``tag_selectors`` and
``scope_selectors.repository`` (doublestar patterns, :mod:`moorage.registry.patterns`, the
one pattern module; decorations ``matches``/``excludes`` and ``repoMatches``/``repoExcludes``)
and the tag selector's ``extras`` ``{"untagged": true|false}``, as Harbor's selector reads it.

Every refusal is an :class:`InvalidPolicy` naming the request field (``rules[0].params.latestPushedK``),
so the REST API can answer 400 with it and save nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.registry.patterns import PatternError, compile_pattern

__all__ = [
    "MAX_DAYS",
    "MAX_RULES",
    "TEMPLATES",
    "InvalidPolicy",
    "RetentionRule",
    "Selector",
    "parse_rules",
    "rules_json",
]

#: Harbor's templates and the parameter each takes (``always`` takes none).
TEMPLATES: dict[str, str | None] = {
    "latestPushedK": "latestPushedK",
    "latestPulledN": "latestPulledN",
    "nDaysSinceLastPush": "nDaysSinceLastPush",
    "nDaysSinceLastPull": "nDaysSinceLastPull",
    "always": None,
}
#: What the templates keep, for ``GET /retentions/metadatas`` and logs.
TEMPLATE_NAMES = {
    "latestPushedK": "retain the most recently pushed # artifacts",
    "latestPulledN": "retain the most recently pulled # artifacts",
    "nDaysSinceLastPush": "retain the artifacts pushed within the last # days",
    "nDaysSinceLastPull": "retain the artifacts pulled within the last # days",
    "always": "retain always",
}
#: Harbor allows 15 rules per policy.
MAX_RULES = 15
#: A count parameter's ceiling (a 32-bit column elsewhere; nobody keeps more artifacts per repository).
MAX_COUNT = 2_147_483_647
#: Days are turned into a time window: 100 years is more than any registry has existed.
MAX_DAYS = 36_500
_TAG_DECORATIONS = ("matches", "excludes")
_REPO_DECORATIONS = ("repoMatches", "repoExcludes")


class InvalidPolicy(ValueError):
    """A policy refused before anything is stored; ``field`` is the request field to name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Selector:
    """One doublestar selector: ``decoration`` says whether a match selects or excludes."""

    decoration: str
    pattern: str
    #: Tag selectors only: whether untagged artifacts go with the decoration (Harbor's ``extras``).
    untagged: bool = False

    @property
    def excludes(self) -> bool:
        return self.decoration in ("excludes", "repoExcludes")

    def selects_repository(self, name: str) -> bool:
        """Whether a repository (its name inside the project) passes this selector."""
        return (compile_pattern(self.pattern).fullmatch(name) is not None) != self.excludes

    def selects_tags(self, tags: Sequence[str]) -> bool:
        """Harbor's tag selection: ``matches`` takes an artifact when any tag matches, ``excludes``
        when any tag does not; an untagged artifact is taken per ``untagged`` (inverted for ``excludes``)."""
        if not tags:
            return self.untagged != self.excludes
        regex = compile_pattern(self.pattern)
        if self.excludes:
            return any(regex.fullmatch(tag) is None for tag in tags)
        return any(regex.fullmatch(tag) is not None for tag in tags)

    def as_json(self, tag: bool) -> dict[str, str]:
        extras = json.dumps({"untagged": self.untagged}) if tag else ""
        return {"kind": "doublestar", "decoration": self.decoration, "pattern": self.pattern, "extras": extras}


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One rule; ``value`` is its template's parameter (``0`` for ``always``)."""

    template: str
    value: int
    tag_selectors: tuple[Selector, ...]
    repository_selectors: tuple[Selector, ...]
    disabled: bool = False

    def applies_to(self, repository: str) -> bool:
        """Whether the rule looks at the repository at all (its name inside the project)."""
        return not self.disabled and all(s.selects_repository(repository) for s in self.repository_selectors)

    def describe(self) -> str:
        return TEMPLATE_NAMES[self.template].replace("#", str(self.value))

    def as_json(self, index: int) -> dict[str, Any]:
        parameter = TEMPLATES[self.template]
        return {
            "id": index + 1,
            "priority": 0,
            "disabled": self.disabled,
            "action": "retain",
            "template": self.template,
            "params": {parameter: self.value} if parameter else {},
            "tag_selectors": [s.as_json(True) for s in self.tag_selectors],
            "scope_selectors": {"repository": [s.as_json(False) for s in self.repository_selectors]},
        }


def _selector(raw: Any, field: str, decorations: tuple[str, ...], tag: bool) -> Selector:
    if not isinstance(raw, Mapping):
        raise InvalidPolicy(field, 'must be an object like {"kind": "doublestar", "decoration": '
                                   f'"{decorations[0]}", "pattern": "**"}}')
    kind = raw.get("kind", "doublestar")
    if kind != "doublestar":
        raise InvalidPolicy(f"{field}.kind", f"{kind!r} is not supported; use 'doublestar'")
    decoration = raw.get("decoration") or decorations[0]
    if decoration not in decorations:
        raise InvalidPolicy(f"{field}.decoration", f"{decoration!r} is not one of {', '.join(decorations)}")
    pattern = raw.get("pattern")
    if not isinstance(pattern, str):
        raise InvalidPolicy(f"{field}.pattern", "required: a doublestar pattern such as '**' or 'v{1,2}.*'")
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise InvalidPolicy(f"{field}.pattern", f"{pattern!r} is not a valid pattern: {exc}") from None
    # Harbor's default: untagged artifacts go with "matches" (kept as before), not with "excludes".
    untagged = decoration == "matches"
    extras = raw.get("extras") or ""
    if tag and extras:
        if not isinstance(extras, str):
            raise InvalidPolicy(f"{field}.extras", 'must be a JSON string such as "{\\"untagged\\": true}"')
        try:
            decoded = json.loads(extras)
        except ValueError:
            raise InvalidPolicy(f"{field}.extras", f'{extras!r} is not JSON; use "{{\\"untagged\\": true}}"') from None
        if not isinstance(decoded, dict) or not isinstance(decoded.get("untagged", False), bool):
            raise InvalidPolicy(f"{field}.extras", 'must be a JSON object whose "untagged" is true or false')
        untagged = bool(decoded.get("untagged", False))
    return Selector(decoration, pattern, untagged)


def _value(template: str, params: Any, field: str) -> int:
    parameter = TEMPLATES[template]
    if parameter is None:
        return 0
    if not isinstance(params, Mapping) or parameter not in params:
        raise InvalidPolicy(f"{field}.params.{parameter}", f"required: the template {template} needs it, "
                                                           f'e.g. {{"{parameter}": 10}}')
    value = params[parameter]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Harbor's UI sends JSON numbers that JavaScript may have made floats
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(f"{field}.params.{parameter}", f"must be a whole number, not {value!r}")
    if value < 0:
        raise InvalidPolicy(f"{field}.params.{parameter}", f"must be 0 or more, not {value}")
    ceiling = MAX_DAYS if template.startswith("nDays") else MAX_COUNT
    if value > ceiling:
        raise InvalidPolicy(f"{field}.params.{parameter}", f"must be at most {ceiling:,}, not {value}")
    return value


def _rule(raw: Any, field: str) -> RetentionRule:
    if not isinstance(raw, Mapping):
        raise InvalidPolicy(field, "must be an object with template, params, tag_selectors and scope_selectors")
    template = raw.get("template")
    if template not in TEMPLATES:
        raise InvalidPolicy(f"{field}.template", f"{template!r} is not a rule template; use one of "
                                                 f"{', '.join(TEMPLATES)}")
    action = raw.get("action") or "retain"
    if action != "retain":
        raise InvalidPolicy(f"{field}.action", f"{action!r} is not supported; rules retain ('retain')")
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        raise InvalidPolicy(f"{field}.disabled", f"must be true or false, not {disabled!r}")
    value = _value(str(template), raw.get("params"), field)
    tag_raw = raw.get("tag_selectors")
    if not isinstance(tag_raw, list) or not tag_raw:
        raise InvalidPolicy(f"{field}.tag_selectors", 'give at least one selector, e.g. [{"kind": "doublestar", '
                                                      '"decoration": "matches", "pattern": "**"}]')
    tags = tuple(_selector(s, f"{field}.tag_selectors[{i}]", _TAG_DECORATIONS, True) for i, s in enumerate(tag_raw))
    scope = raw.get("scope_selectors")
    if scope is None:
        scope = {"repository": [{"decoration": "repoMatches", "pattern": "**"}]}
    if not isinstance(scope, Mapping):
        raise InvalidPolicy(f"{field}.scope_selectors", 'must be an object: {"repository": [selector, ...]}')
    unknown = sorted(set(scope) - {"repository"})
    if unknown:
        raise InvalidPolicy(f"{field}.scope_selectors.{unknown[0]}", "unknown scope; only 'repository' is supported")
    repo_raw = scope.get("repository")
    if not isinstance(repo_raw, list) or not repo_raw:
        raise InvalidPolicy(f"{field}.scope_selectors.repository", "give at least one selector, e.g. "
                                                                   '[{"decoration": "repoMatches", "pattern": "**"}]')
    repos = tuple(
        _selector(s, f"{field}.scope_selectors.repository[{i}]", _REPO_DECORATIONS, False)
        for i, s in enumerate(repo_raw)
    )
    return RetentionRule(str(template), value, tags, repos, disabled)


def parse_rules(algorithm: Any, raw_rules: Any) -> list[RetentionRule]:
    """The policy's rules, checked; :class:`InvalidPolicy` naming the first bad field."""
    if algorithm not in (None, "", "or"):
        raise InvalidPolicy("algorithm", f"{algorithm!r} is not supported; use 'or' (kept if any rule keeps it)")
    if not isinstance(raw_rules, list):
        raise InvalidPolicy("rules", "must be a list of rules")
    if len(raw_rules) > MAX_RULES:
        raise InvalidPolicy("rules", f"a policy has at most {MAX_RULES} rules, not {len(raw_rules)}")
    return [_rule(raw, f"rules[{i}]") for i, raw in enumerate(raw_rules)]


def rules_json(rules: Sequence[RetentionRule]) -> list[dict[str, Any]]:
    """The rules as stored and as the API returns them (Harbor's shape)."""
    return [rule.as_json(i) for i, rule in enumerate(rules)]
