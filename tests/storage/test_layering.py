"""Storage never imports upward: not the registry, the config, ``moorage check`` or the API.

Read from the source (every ``import``, function-level ones included), so an import hidden in
a function to dodge a cycle (as the S3 and Swift drivers once imported ``moorage.checks``) fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import moorage.storage

STORAGE = Path(moorage.storage.__file__).parent


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_storage_imports_nothing_above_it() -> None:
    """``moorage.net`` (outbound TLS trust) and ``moorage.metrics`` (every metric) are leaves below storage."""
    upward = [
        f"{path.relative_to(STORAGE.parent)}: {name}"
        for path in sorted(STORAGE.rglob("*.py"))
        for name in _imports(path)
        if name.startswith("moorage.") and not name.startswith(("moorage.storage", "moorage.net", "moorage.metrics"))
    ]
    assert upward == []


def test_config_imports_cleanly_first() -> None:
    """``moorage.config`` imports the storage factory at module level: imported first in a fresh
    interpreter, an import cycle through storage would fail here."""
    subprocess.run([sys.executable, "-c", "import moorage.config"], check=True, timeout=60)
