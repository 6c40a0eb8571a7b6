"""Online GC on Ceph RGW S3, Ceph RGW Swift and OpenStack Swift: skopeo pushes two images (one
layer large enough to be a Swift SLO of several segments), deletes one, ``moorage gc run`` runs
beside the serving registry, then no key of the deleted image is left in the bucket/container
(segments included) and the kept image is pulled back and re-hashed."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from moorage.config import load_settings
from moorage.services import Services
from tests.e2e.clients import Skopeo
from tests.e2e.images import OciLayout, verify_dir
from tests.e2e.servers import moorage_command, start_moorage
from tests.e2e.test_object_storage import BACKENDS, MIB, _storage_env


async def _keys(env: dict[str, str]) -> list[str]:
    services = Services.from_settings(load_settings(environ=env))
    try:
        return [info.path async for info in services.storage.list("blobs")]
    finally:
        await services.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_on_object_storage(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, skopeo: Skopeo, layout: OciLayout
) -> None:
    env = {**_storage_env(request, backend), "MOORAGE_STORAGE__REDIRECT__DISABLE": "true"}
    server = start_moorage(tmp_path, label=f"moorage-gc-{backend}", extra_env=env)
    try:
        keep = layout.add_image("keep", (64 * 1024,))
        deleted = layout.add_image("deleted", (6 * MIB, 32 * 1024))
        remote = f"docker://{server.host}/e2e/gc-objects"
        skopeo.copy(keep.ref, f"{remote}:keep")
        skopeo.copy(deleted.ref, f"{remote}:deleted")
        skopeo.delete(f"{remote}:deleted")
        garbage = {
            deleted.manifest.digest,
            deleted.config.digest,
            *(layer.digest for layer in deleted.layers),
        }
        cli_env = {**os.environ, **env, "MOORAGE_DATA_DIR": str(server.data_dir)}
        result = subprocess.run(
            [*moorage_command(), "gc", "run", "--grace-period", "0s"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"deleted 0 manifest(s) and {len(garbage)} blob(s)" in result.stderr
        keys = asyncio.run(_keys(cli_env))
        left = [key for key in keys for digest in garbage if digest.split(":", 1)[1] in key]
        assert left == []  # data keys and Swift segments alike
        assert any(keep.manifest.digest.split(":", 1)[1] in key for key in keys)
        pulled = tmp_path / "pulled"
        skopeo.copy(f"{remote}:keep", f"dir:{pulled}")
        assert verify_dir(pulled) == {keep.config.digest, *(layer.digest for layer in keep.layers)}
    finally:
        server.stop()
