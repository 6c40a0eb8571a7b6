"""``/projects/{project_name_or_id}/immutabletagrules``: Harbor's tag immutability rule API.

The body is Harbor's ``ImmutableRule``: the tag pattern in ``tag_selectors[0].pattern``, the
repository pattern in ``scope_selectors.repository[0].pattern`` (both doublestar, ``kind``
``doublestar``; only the ``matches``/``repoMatches`` decorations are supported), ``disabled``.
Anyone who may see the project may list its rules; only its project admins and system
administrators may change them (:meth:`moorage.auth.policy.Policy.immutability_denial`).
The rules themselves are applied by the domain (:mod:`moorage.registry.immutability`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from moorage.api.rest.common import (
    ApiError,
    Caller,
    CallerDep,
    Id,
    PageDep,
    paginate,
    project_rights,
    visible_project,
)
from moorage.api.rest.deps import ImmutableRulesDep
from moorage.auth.identity import Project
from moorage.registry.immutability import ImmutableRule, ImmutableRules, InvalidRule

router = APIRouter(tags=["immutable"])

_FIELDS = {"tag_pattern": "tag_selectors[0].pattern", "repository_pattern": "scope_selectors.repository[0].pattern"}


class Selector(BaseModel):
    kind: str = Field(default="doublestar", max_length=32)
    decoration: str = Field(default="", max_length=32)
    pattern: str = Field(max_length=1000)
    extras: str = Field(default="", max_length=1000)


class RuleIn(BaseModel):
    """Harbor's ``ImmutableRule``; ``id``, ``priority``, ``action``, ``template`` and ``params`` are accepted and ignored."""

    id: int | None = None
    priority: int | None = None
    disabled: bool | None = None
    action: str | None = Field(default=None, max_length=64)
    template: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] | None = None
    tag_selectors: list[Selector] | None = Field(default=None, max_length=1)
    scope_selectors: dict[str, list[Selector]] | None = None


class RuleOut(BaseModel):
    id: int
    project_id: int
    priority: int
    disabled: bool
    action: str
    template: str
    params: dict[str, Any]
    tag_selectors: list[dict[str, str]]
    scope_selectors: dict[str, list[dict[str, str]]]


def _out(rule: ImmutableRule) -> RuleOut:
    return RuleOut(
        id=rule.id, project_id=rule.project_id, priority=0, disabled=rule.disabled, action="immutable",
        template="immutable_template", params={},
        tag_selectors=[{"kind": "doublestar", "decoration": "matches", "pattern": rule.tag_pattern, "extras": ""}],
        scope_selectors={"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                         "pattern": rule.repository_pattern, "extras": ""}]},
    )


def _selector(selector: Selector, field: str, decorations: tuple[str, ...]) -> str:
    if selector.kind != "doublestar":
        raise ApiError(400, f"{field}.kind: {selector.kind!r} is not a supported kind; use 'doublestar'")
    if selector.decoration not in ("", *decorations):
        raise ApiError(400, f"{field}.decoration: {selector.decoration!r} is not supported; use "
                            f"{decorations[0]!r} (exclusions are not supported)")
    return selector.pattern


def _patterns(body: RuleIn) -> tuple[str | None, str | None]:
    """The tag and repository patterns a body sets (``None``: not given); 400 naming the field otherwise."""
    tag = repository = None
    if body.tag_selectors is not None:
        if not body.tag_selectors:
            raise ApiError(400, "tag_selectors: give one selector, e.g. [{\"kind\":\"doublestar\",\"pattern\":\"v*\"}]")
        tag = _selector(body.tag_selectors[0], "tag_selectors[0]", ("matches",))
    if body.scope_selectors is not None:
        unknown = sorted(set(body.scope_selectors) - {"repository"})
        if unknown:
            raise ApiError(400, f"scope_selectors.{unknown[0]}: unknown scope; only 'repository' is supported")
        selectors = body.scope_selectors.get("repository")
        if selectors is not None:
            if len(selectors) != 1:
                raise ApiError(400, "scope_selectors.repository: give exactly one selector")
            repository = _selector(selectors[0], "scope_selectors.repository[0]", ("repoMatches",))
    return tag, repository


def _invalid(exc: InvalidRule) -> ApiError:
    return ApiError(400, f"{_FIELDS.get(exc.field, exc.field)}: {exc.message}; nothing was saved")


async def _managed_project(who: Caller, name_or_id: str) -> Project:
    """The project once the caller may change its rules (project admin or system administrator)."""
    who.require_login()
    rights = await project_rights(who, name_or_id)
    denial = who.identity.policy.immutability_denial(who.subject, rights)
    if denial is not None:
        raise ApiError.of(denial.error())
    if rights.project is None:  # visible means it exists; kept for the type checker
        raise ApiError(404, who.identity.policy.hidden_message(rights.project_name))
    return rights.project


async def _rule(rules: ImmutableRules, project: Project, rule_id: int) -> ImmutableRule:
    rule = await rules.get(project.id, rule_id)
    if rule is None:
        raise ApiError(404, f"rule {rule_id} is not a tag immutability rule of project {project.name!r}; list them "
                            f"with GET /api/v2.0/projects/{project.name}/immutabletagrules")
    return rule


def _describe(rule: ImmutableRule) -> str:
    state = "disabled" if rule.disabled else "enabled"
    return f"tags {rule.tag_pattern!r} in repositories {rule.repository_pattern!r}, {state}"


@router.get("/projects/{project_name_or_id}/immutabletagrules", response_model=list[RuleOut])
async def list_rules(request: Request, response: Response, project_name_or_id: str, who: CallerDep,
                     page: PageDep, rules: ImmutableRulesDep) -> list[RuleOut]:
    project, _ = await visible_project(who, project_name_or_id)
    found = await rules.list(project.id)
    paginate(request, response, page, len(found))
    return [_out(rule) for rule in found[page.offset: page.offset + page.page_size]]


@router.post("/projects/{project_name_or_id}/immutabletagrules", status_code=201, response_model=None)
async def create_rule(request: Request, response: Response, project_name_or_id: str, body: RuleIn,
                      who: CallerDep, rules: ImmutableRulesDep) -> None:
    project = await _managed_project(who, project_name_or_id)
    tag, repository = _patterns(body)
    if tag is None:
        raise ApiError(400, "tag_selectors[0].pattern: required, e.g. 'v*' or '{latest,stable}'")
    try:
        rule = await rules.create(project.id, tag, repository if repository is not None else "**",
                                  bool(body.disabled))
    except InvalidRule as exc:
        raise _invalid(exc) from None
    await who.audit("create", "immutable_tag_rule", f"rule {rule.id}", project.name, detail=_describe(rule))
    response.headers["Location"] = f"{request.url.path}/{rule.id}"


@router.put("/projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}", response_model=None)
async def update_rule(project_name_or_id: str, immutable_rule_id: Id, body: RuleIn, who: CallerDep,
                      rules: ImmutableRulesDep) -> None:
    """Changes the fields the body gives (Harbor sends the whole rule; ``{"disabled": true}`` alone works too)."""
    project = await _managed_project(who, project_name_or_id)
    rule = await _rule(rules, project, immutable_rule_id)
    tag, repository = _patterns(body)
    try:
        after = await rules.update(rule, tag_pattern=tag, repository_pattern=repository, disabled=body.disabled)
    except InvalidRule as exc:
        raise _invalid(exc) from None
    if after is None:
        raise ApiError(404, f"rule {rule.id} of project {project.name!r} was deleted meanwhile")
    await who.audit("update", "immutable_tag_rule", f"rule {rule.id}", project.name,
                    detail=f"{_describe(rule)} -> {_describe(after)}")


@router.delete("/projects/{project_name_or_id}/immutabletagrules/{immutable_rule_id}", response_model=None)
async def delete_rule(project_name_or_id: str, immutable_rule_id: Id, who: CallerDep,
                      rules: ImmutableRulesDep) -> None:
    project = await _managed_project(who, project_name_or_id)
    rule = await _rule(rules, project, immutable_rule_id)
    if not await rules.delete(rule):
        raise ApiError(404, f"rule {rule.id} of project {project.name!r} was deleted meanwhile")
    await who.audit("delete", "immutable_tag_rule", f"rule {rule.id}", project.name, detail=_describe(rule))
