"""Imports point one way: entry points (api, app, cli, web) → services → domain (registry, auth) → db, storage.

Read from the source, function-level imports included, so an import hidden in a function to dodge
a cycle fails too. (Storage's own rule is ``tests/storage/test_layering.py``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import moorage

PACKAGE = Path(moorage.__file__).parent

#: Layer (a top-level module or package of moorage) → the layers it may import besides itself.
ALLOWED: dict[str, set[str]] = {
    "db": set(),
    #: The artifact events fan-out: a leaf that publishers and subscribers share.
    "events": set(),
    #: Every metric is defined in moorage.metrics, a leaf any layer may record into.
    "metrics": set(),
    #: Outbound TLS trust and address rules: a leaf every layer may ask (storage included).
    "net": set(),
    "registry": {"db", "errors", "metrics", "numbers", "storage"},
    "health": {"db", "registry", "storage"},
    "cache": {"config", "db", "errors", "metrics", "registry"},
    "jobs": {"config", "db", "errors", "registry"},
    #: GC is a job over the registry's tables and storage; it must never reach up into the API.
    "gc": {"cache", "config", "db", "errors", "jobs", "registry", "storage"},
    #: Webhooks are jobs over their own tables; secrets sealed with auth's key box; never the API.
    "webhooks": {"auth", "config", "db", "errors", "events", "jobs", "metrics", "net"},
    #: Retention is a job too: it reads and deletes through the registry's services, never the API.
    "retention": {"db", "errors", "jobs", "registry"},
    #: Other registries: endpoints (secrets sealed with auth's SecretBox) and their client; no registry rules.
    "upstream": {"auth", "db", "net"},
    #: The proxy cache reads through the registry's services; it knows nothing of HTTP. Its evictions are jobs.
    "proxy": {"config", "db", "errors", "jobs", "metrics", "net", "numbers", "registry", "upstream"},
    #: Replication is a job between this registry's services and an endpoint's client; never the API.
    "replication": {"db", "errors", "events", "jobs", "net", "registry", "upstream"},
    #: Multi-site: every site's storage and the copy jobs between them, under the registry's services.
    "sites": {"config", "db", "errors", "jobs", "net", "registry", "storage"},
}
#: Only entry points may import these.
#: ``web`` is the UI's entry point (DESIGN.md: ``/`` → moorage.web), like ``api`` and ``cli``.
ENTRY_ONLY = {"api": {"api", "app", "web"}, "app": {"app"}, "services": {"api", "app", "cli", "web"}}


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("moorage.")}
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_only_below_them(layer: str) -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports moorage.{name}"
        for path in SOURCES
        if _layer(path) == layer
        for name in sorted(_imports(path) - ALLOWED[layer] - {layer})
    ]
    assert wrong == []


def test_only_entry_points_import_the_api_and_the_service_container() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports moorage.{name}"
        for path in SOURCES
        for name in sorted(_imports(path) & set(ENTRY_ONLY))
        if _layer(path) not in ENTRY_ONLY[name]
    ]
    assert wrong == []
