"""The Grafana dashboard (``deploy/grafana/moorage.json``) queries only metrics and labels that exist.

Every ``moorage_*`` name in a panel query must be a sample name the registry can expose (a
counter's ``_total``, a histogram's ``_bucket``/``_sum``/``_count``, a gauge's own name), and every
label matched in ``{…}`` or grouped ``by (…)`` must be one of the labels of a metric in that query.
The names come from prometheus-client's registry of ``moorage.metrics`` and from the job backlog
collector, so renaming a metric without the dashboard fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import moorage
import moorage.metrics
from moorage.metrics import JobQueueCollector, JobStat

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "moorage.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _import_everything() -> None:
    """Import every module of the package, so a metric defined anywhere is in the registry."""
    for module in pkgutil.walk_packages(moorage.__path__, "moorage."):
        if not module.name.endswith("__main__") and not module.name.startswith("moorage.db.migrations"):
            importlib.import_module(module.name)


def _exposed() -> dict[str, set[str]]:
    """Sample name → its label names (``le`` for histogram buckets), for every Moorage metric."""
    _import_everything()
    # Label names of the metric objects moorage.metrics defines (a labelled metric with no sample yet
    # shows no labels in collect(); prometheus-client keeps them only in this attribute).
    declared = {metric._name: set(metric._labelnames)
                for metric in vars(moorage.metrics).values() if isinstance(metric, MetricWrapperBase)}
    families = list(REGISTRY.collect()) + list(
        JobQueueCollector([JobStat("k", "queued", 1, datetime.now(UTC))], datetime.now(UTC)).collect())
    exposed: dict[str, set[str]] = {}
    for family in families:
        if not family.name.startswith("moorage_"):
            continue
        labels = declared.get(family.name, set()) | {key for sample in family.samples for key in sample.labels}
        for suffix in _SUFFIXES[family.type]:
            exposed[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return exposed


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_panel_queries_metrics_that_exist() -> None:
    exposed = _exposed()
    queries = _queries()
    assert len(queries) >= 12
    for expr in queries:
        names = re.findall(r"\b(moorage_[a-z0-9_]+)", expr)
        assert names, expr
        for name in names:
            assert name in exposed, f"{name} (in {expr!r}) is not a metric Moorage exposes"
        known = set().union(*(exposed[name] for name in names))
        matched = re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!=|!~|=)", expr)
        grouped = [label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")]
        for label in matched + grouped:
            assert label in known, f"label {label!r} (in {expr!r}) is not a label of {names}"


def test_every_metric_is_defined_in_moorage_metrics() -> None:
    """One module holds every metric (it is what the docs and the dashboard are checked against)."""
    _exposed()
    declared = {metric._name for metric in vars(moorage.metrics).values() if isinstance(metric, MetricWrapperBase)}
    registered = {family.name for family in REGISTRY.collect() if family.name.startswith("moorage_")}
    assert registered <= declared, f"define these in moorage/metrics.py: {sorted(registered - declared)}"


def test_the_documented_metrics_are_the_exposed_ones() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"`(moorage_[a-z0-9_]+)`", doc))
    base = {re.sub(r"(_total|_bucket|_sum|_count)$", "", name) for name in _exposed()}
    assert {re.sub(r"_total$", "", name) for name in documented} == base
