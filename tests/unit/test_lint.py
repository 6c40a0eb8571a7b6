"""STYLE.md asks for ``mypy --strict`` and ``ruff`` clean code: the suite holds every commit to it.

Both tools are pinned in ``requirements-test.lock`` and read their settings from
``pyproject.toml`` (``[tool.mypy] strict = true``, ``[tool.ruff]``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", "src", "tests", "benchmarks")
    assert result.returncode == 0, f"ruff check failed; fix these (or `ruff check --fix`):\n{result.stdout}"


def test_mypy_strict_finds_nothing() -> None:
    result = _run("mypy", "--no-incremental", "src")
    assert result.returncode == 0, f"mypy --strict failed on src/; fix these:\n{result.stdout}{result.stderr}"
