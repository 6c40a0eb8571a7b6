"""The Helm chart's own files agree with each other and with the project.

Rendering the chart needs the real ``helm``, built from the Go module proxy, which the test
machines cannot reach yet; what can be checked without it is checked here: the chart's version
metadata, and ``values.schema.json``, which helm itself applies to the merged values on every
install, upgrade, lint and template. It refuses unknown keys, so a misspelt value stops helm
instead of being silently ignored; the defaults and every value set in ``ci/`` must pass it.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "moorage"
VALUE_SETS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def _merged(overrides: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with ``overrides`` merged over it, maps key by key, as helm merges ``-f`` files."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(copy.deepcopy(_load(CHART / "values.yaml")), overrides)


def _errors(values: dict[str, Any]) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


def test_chart_metadata_matches_the_project() -> None:
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "moorage"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "appVersion is the image tag the chart deploys"


def test_values_schema_is_draft7_and_the_defaults_pass_it() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads((CHART / "values.schema.json").read_text()))
    assert _errors(_merged({})) == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_value_sets_pass_the_schema(value_set: str) -> None:
    assert _errors(_merged(_load(CHART / "ci" / value_set))) == []


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"persistance": {"enabled": True}}, ": Additional properties are not allowed ('persistance' was unexpected)"),
        ({"storage": {"s3": {"bucktet": "registry"}}}, "storage.s3: Additional properties are not allowed ('bucktet' was unexpected)"),
        ({"replicaCount": "3"}, "replicaCount: '3' is not of type 'integer'"),
        ({"auth": {"mode": "oidc"}}, "auth.mode: 'oidc' is not one of"),
        ({"database": {"url": "mysql://db/moorage"}}, "database.url: 'mysql://db/moorage' does not match"),
        ({"secretEnv": {"LDAP_PASSWORD": "x"}}, "secretEnv: 'LDAP_PASSWORD' does not match"),
    ],
)
def test_values_schema_refuses_misspelt_and_wrong_values(overrides: dict[str, Any], error: str) -> None:
    errors = _errors(_merged(overrides))
    assert any(error in e for e in errors), errors


def test_the_three_value_sets_exist() -> None:
    assert {"minimal-values.yaml", "ha-s3-values.yaml", "tls-sso-values.yaml"} <= set(VALUE_SETS)
