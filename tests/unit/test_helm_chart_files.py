"""The Helm chart's own files agree with each other and with the project.

Rendering the chart needs the real ``helm``, built from the Go module proxy, which the test
machines cannot reach yet; what can be checked without it is checked here: the chart's version
metadata, and that the value sets in ``ci/`` set only keys ``values.yaml`` declares (a typo
there would otherwise be ignored by helm without a word).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "moorage"
FREE_FORM = {"config", "secretEnv", "annotations", "labels", "podAnnotations", "podLabels", "resources",
             "nodeSelector", "affinity", "streamingAnnotations"}
"""Maps whose keys are the operator's (or Kubernetes'), not the chart's."""


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def _unknown_keys(values: dict[str, Any], declared: dict[str, Any], prefix: str = "") -> list[str]:
    unknown = []
    for key, value in values.items():
        if key not in declared:
            unknown.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(declared[key], dict) and key not in FREE_FORM:
            unknown += _unknown_keys(value, declared[key], f"{prefix}{key}.")
    return unknown


def test_chart_metadata_matches_the_project() -> None:
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "moorage"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "appVersion is the image tag the chart deploys"


@pytest.mark.parametrize("value_set", sorted(p.name for p in (CHART / "ci").glob("*-values.yaml")))
def test_value_sets_use_only_declared_keys(value_set: str) -> None:
    unknown = _unknown_keys(_load(CHART / "ci" / value_set), _load(CHART / "values.yaml"))
    assert not unknown, f"{value_set} sets keys values.yaml does not declare: {unknown}"


def test_the_three_value_sets_exist() -> None:
    names = {p.name for p in (CHART / "ci").glob("*-values.yaml")}
    assert {"minimal-values.yaml", "ha-s3-values.yaml", "tls-sso-values.yaml"} <= names
