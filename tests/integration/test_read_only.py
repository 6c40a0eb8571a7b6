"""Read-only maintenance mode holds below HTTP: REST, ``/v2`` and the CLI are refused by the same guard.

Content is pushed by a writable node first; a second node on the same database and storage runs
with ``storage.maintenance.readonly.enabled`` and must refuse every change, whatever the door,
while it keeps serving reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.oci_client import push_image
from tests.integration.test_check import MOORAGE
from tests.integration.test_identity_helpers import make_idp

READ_ONLY = {"MOORAGE_STORAGE__MAINTENANCE__READONLY__ENABLED": "true"}
MESSAGE = "read-only maintenance mode"


async def test_rest_and_v2_changes_are_refused_and_reads_served(database_url: str, tmp_path: Path) -> None:
    async for writable in make_idp(database_url, tmp_path):
        project = await writable.project()
        name = f"{project}/app"
        writable.http.headers.update(writable.admin)
        digest, _ = await push_image(writable.http, name, "v1", [b"read-only layer"])
    async for node in make_idp(database_url, tmp_path, **READ_ONLY):
        admin = node.admin
        repo = f"/projects/{project}/repositories/app"
        refused = [
            await node.api("DELETE", repo, admin),
            await node.api("DELETE", f"{repo}/artifacts/{digest}", admin),
            await node.api("DELETE", f"{repo}/artifacts/{digest}/tags/v1", admin),
            await node.api("DELETE", f"/projects/{project}", admin),
        ]
        for r in refused:
            assert r.status_code == 403 and MESSAGE in r.json()["errors"][0]["message"], r.text
        for r in (
            await node.http.delete(f"/v2/{name}/manifests/{digest}", headers=admin),
            await node.http.post(f"/v2/{name}/blobs/uploads/", headers=admin),
        ):
            assert r.status_code == 405 and MESSAGE in r.json()["errors"][0]["message"], r.text
        assert (await node.api("GET", "/systeminfo", admin)).json()["read_only"] is True
        # nothing changed, and reads are served
        assert (await node.api("GET", f"{repo}/artifacts/v1", admin)).json()["digest"] == digest
        assert (await node.http.get(f"/v2/{name}/manifests/v1", headers=admin)).status_code == 200


def test_cli_changes_are_refused(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_") or k.startswith("MOORAGE_TEST_")}
    environ.update({"MOORAGE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **READ_ONLY})

    def moorage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MOORAGE, *args], check=False, capture_output=True, text=True, env=environ, timeout=120)

    assert moorage("db", "upgrade").returncode == 0
    purge = moorage("uploads", "purge", "--older-than", "1s")
    assert purge.returncode == 1 and MESSAGE in purge.stderr and "Traceback" not in purge.stderr, purge.stderr
    counted = moorage("uploads", "purge", "--older-than", "1s", "--dry-run")  # counting changes nothing
    assert counted.returncode == 0 and "would purge 0" in counted.stdout, counted.stderr
    imported = moorage("import-distribution")
    assert imported.returncode == 1 and MESSAGE in imported.stderr, imported.stderr
    collected = moorage("gc", "run")
    assert collected.returncode == 1 and MESSAGE in collected.stderr, collected.stderr
