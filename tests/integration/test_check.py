"""``moorage check`` as an operator runs it: a real process, real database and storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MOORAGE = [sys.executable, "-m", "moorage.cli"]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_") or k.startswith("MOORAGE_TEST_")}
    environ.update({"MOORAGE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **env})
    return subprocess.run([*MOORAGE, "check"], check=False, capture_output=True, text=True, env=environ, timeout=120)


def test_healthy_embedded_default_passes(tmp_path: Path) -> None:
    environ = {**os.environ, "MOORAGE_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([*MOORAGE, "db", "upgrade"], check=True, env=environ, capture_output=True, timeout=120)
    result = _check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("database migrated", "storage write", "storage read", "storage list", "storage delete"):
        assert name in result.stdout
    assert "filesystem type" in result.stdout  # the driver's own check, through the Protocol
    assert "all 10 checks passed" in result.stderr


def test_unmigrated_and_unreachable_databases_fail_with_the_fix(tmp_path: Path, postgres_admin_url: str) -> None:
    missing = _check(tmp_path)
    assert missing.returncode == 1
    assert "does not exist" in missing.stdout and "moorage db upgrade" in missing.stdout
    unreachable = _check(tmp_path, MOORAGE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.returncode == 1
    assert "Connection refused" in unreachable.stdout or "connection" in unreachable.stdout.lower()
    assert "check database.url" in unreachable.stdout
    empty = _check(tmp_path, MOORAGE_DATABASE_URL=postgres_admin_url)  # reachable, never migrated
    assert empty.returncode == 1 and "database migrated" in empty.stdout and "moorage db upgrade" in empty.stdout


def test_unwritable_storage_fails(tmp_path: Path) -> None:
    environ = {**os.environ, "MOORAGE_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([*MOORAGE, "db", "upgrade"], check=True, env=environ, capture_output=True, timeout=120)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the storage root should be")
    result = _check(tmp_path, MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY=str(blocker))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
