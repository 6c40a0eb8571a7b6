"""Project quotas with skopeo and podman against token-mode ``moorage serve``: what the user sees on a refusal.

Both print the registry's ``DENIED`` message, so it must name the project, its usage, the limit
and how to raise it; after the limit is raised (the way the message says), the same push works.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import ClientError, ContainersTools, Skopeo, run
from tests.e2e.conftest import require_tool
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, basic, start_token_moorage, uid
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess

KIB = 1024
CREDS = f"admin:{ADMIN_PASSWORD}"


@pytest.fixture(scope="module")
def reg(e2e_workdir: Path) -> Iterator[RegistryProcess]:
    server = start_token_moorage(e2e_workdir, label="moorage-quota")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(reg: RegistryProcess) -> Iterator[AdminApi]:
    admin = AdminApi(reg)
    try:
        yield admin
    finally:
        admin.close()


def _project(api: AdminApi, storage_limit: int) -> tuple[str, int]:
    name = uid("quota")
    r = api.http.post("/projects", json={"project_name": name, "storage_limit": storage_limit})
    assert r.status_code == 201, r.text
    return name, int(r.headers["Location"].rsplit("/", 1)[1])


def _failure(argv: list[str]) -> str:
    with pytest.raises(ClientError) as info:
        run(argv)
    output = info.value.result.stdout + info.value.result.stderr
    print(f"\n--- client output ---\n{output}")  # what the user sees, shown with -s
    return output


def _used(api: AdminApi, quota_id: int) -> int:
    r = api.http.get(f"/quotas/{quota_id}")
    assert r.status_code == 200, r.text
    return int(r.json()["used"]["storage"])


def _absent(reg: RegistryProcess, name: str, digest: str) -> None:
    r = httpx.head(f"{reg.url}/v2/{name}/blobs/{digest}", headers=basic("admin", ADMIN_PASSWORD))
    assert r.status_code == 404, (digest, r.status_code)


def test_skopeo_prints_project_usage_limit_and_how_to_raise_it(
    reg: RegistryProcess, api: AdminApi, layout: OciLayout, skopeo: Skopeo
) -> None:
    project, quota_id = _project(api, 100 * KIB)
    image = layout.add_image("big", (160 * KIB,))
    target = f"docker://{reg.host}/{project}/app:v1"
    argv = ["skopeo", "--policy", str(skopeo.policy), "copy", "--retry-times", "0", "--dest-tls-verify=false",
            "--dest-creds", CREDS, image.ref, target]

    output = _failure(argv)
    layer = image.layers[0]
    used = _used(api, quota_id)  # skopeo pushes the layer first: nothing went in
    assert used == 0
    assert (f"denied: quota exceeded: project '{project}' uses {used} bytes of its storage limit of 100.0 KiB "
            f"(102400 bytes) and this push needs 160.") in output
    assert f"PUT /api/v2.0/quotas/{quota_id} with hard.storage set to the new limit in bytes" in output
    _absent(reg, f"{project}/app", layer.digest)

    # the manifest is the last straw: its blobs fit, it does not
    r = api.http.put(f"/quotas/{quota_id}", json={"hard": {"storage": image.config.size + layer.size + 10}})
    assert r.status_code == 200, r.text
    output = _failure(argv)
    assert f"denied: quota exceeded: project '{project}' uses" in output
    assert f"needs {image.manifest.size} bytes more" in output
    r = httpx.get(f"{reg.url}/v2/{project}/app/manifests/v1", headers=basic("admin", ADMIN_PASSWORD))
    assert r.status_code == 404

    r = api.http.put(f"/quotas/{quota_id}", json={"hard": {"storage": -1}})  # what the message says to do
    assert r.status_code == 200, r.text
    skopeo.copy(image.ref, target, "--dest-creds", CREDS)
    assert _used(api, quota_id) == image.config.size + layer.size + image.manifest.size


def test_podman_push_prints_the_refusal(reg: RegistryProcess, api: AdminApi, layout: OciLayout,
                                        tmp_path: Path) -> None:
    require_tool("podman")
    project, quota_id = _project(api, 64 * KIB)
    image = layout.add_image("v1", (96 * KIB,))
    tools = ContainersTools(tmp_path / "containers", [reg.host])
    try:
        out = tools.podman("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, reg.host)
        assert "Login Succeeded" in out.stdout
        loaded = tools.podman("pull", "-q", image.ref).stdout.strip()
        ref = f"{reg.host}/{project}/app:v1"
        tools.podman("tag", loaded, ref)
        pushed = tools.podman("push", ref, check=False)
        output = pushed.stdout + pushed.stderr
        print(f"\n--- podman output ---\n{output}")  # what the user sees, shown with -s
        assert pushed.returncode != 0
        assert f"denied: quota exceeded: project '{project}' uses" in output
        assert "of its storage limit of 64.0 KiB (65536 bytes)" in output
        assert f"PUT /api/v2.0/quotas/{quota_id}" in output
        assert _used(api, quota_id) <= 64 * KIB
    finally:
        tools.cleanup()
