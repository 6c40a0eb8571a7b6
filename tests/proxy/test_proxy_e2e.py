"""podman and skopeo through a real ``moorage serve``: a proxy project by prefix, then the registry-mirror
mode with a real ``registries.conf``; the upstream is Debian's docker-registry (stopped mid-test once)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import ContainersTools, Skopeo, run
from tests.e2e.conftest import require_tool
from tests.e2e.servers import RegistryProcess, start_reference
from tests.proxy.conftest import ADMIN_PASSWORD, MIRROR_PROJECT, MIRRORED_HOST
from tests.proxy.helpers import access_count
from tests.proxy.upstream import push_image, tar_layer

pytestmark = pytest.mark.e2e


def rest(server: RegistryProcess, method: str, path: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(auth=("admin", ADMIN_PASSWORD), timeout=30) as http:
        return http.request(method, f"{server.url}/api/v2.0{path}", **kwargs)  # type: ignore[arg-type]


def bind_proxy(server: RegistryProcess, upstream: RegistryProcess, project: str) -> int:
    """An endpoint for ``upstream`` and a public proxy project ``project`` bound to it; the endpoint id."""
    r = rest(server, "POST", "/registries", json={"name": f"ep-{uuid.uuid4().hex[:8]}", "type": "docker-registry",
                                                  "url": upstream.url})
    assert r.status_code == 201, r.text
    registry_id = int(r.headers["location"].rsplit("/", 1)[1])
    r = rest(server, "POST", "/projects", json={"project_name": project, "public": True, "registry_id": registry_id})
    assert r.status_code == 201, r.text
    return registry_id


@pytest.fixture(scope="session")
def mirror_bound(proxy_server: RegistryProcess, open_upstream: RegistryProcess) -> RegistryProcess:
    """The server with ``hub-proxy`` (the project its ``proxy.mirrors`` names) bound to ``open_upstream``."""
    bind_proxy(proxy_server, open_upstream, MIRROR_PROJECT)
    return proxy_server


@pytest.fixture
def tools(tmp_path: Path, proxy_server: RegistryProcess) -> Iterator[ContainersTools]:
    require_tool("podman")
    made = ContainersTools(tmp_path / "containers", [proxy_server.host])
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def own_upstream(proxy_workdir: Path) -> Iterator[RegistryProcess]:
    """A docker-registry this test may stop."""
    require_tool("docker-registry")
    server = start_reference(proxy_workdir, label=f"upstream-{uuid.uuid4().hex[:6]}")
    try:
        yield server
    finally:
        server.stop()


def test_podman_pulls_through_a_proxy_project_and_keeps_pulling_when_upstream_stops(
    proxy_server: RegistryProcess, own_upstream: RegistryProcess, tools: ContainersTools, tmp_path: Path
) -> None:
    project = f"hub{uuid.uuid4().hex[:8]}"
    bind_proxy(proxy_server, own_upstream, project)
    layer, file_hash = tar_layer(2_000_000)
    image = push_image(own_upstream.url, "library/alpine", "3.20", [layer], label="e2e")
    ref = f"{proxy_server.host}/{project}/library/alpine:3.20"
    tools.podman("pull", "--tls-verify=false", ref)
    tools.assert_files_match(ref, {"payload.bin": file_hash})
    assert access_count(own_upstream.log_path, "GET", f"/v2/library/alpine/blobs/{image.layers[0]}") == 1
    own_upstream.stop()  # from now on only Moorage has it
    again = ContainersTools(tmp_path / "again", [proxy_server.host])
    try:
        again.podman("pull", "--tls-verify=false", ref)
        again.assert_files_match(ref, {"payload.bin": file_hash})
        digest_ref = f"{proxy_server.host}/{project}/library/alpine@{image.manifest_digest}"
        again.podman("pull", "--tls-verify=false", digest_ref)
    finally:
        again.cleanup()
    # a push into the proxy project is refused with the reason
    pushed = tools.podman("push", "--tls-verify=false", f"--creds=admin:{ADMIN_PASSWORD}", ref,
                          f"{proxy_server.host}/{project}/mine:1", check=False)
    assert pushed.returncode != 0 and "proxy projects are read-only" in pushed.stderr


def mirror_conf(path: Path, mirror: str) -> Path:
    """A ``registries.conf`` whose ``upstream.example`` has Moorage as its only mirror (plain HTTP)."""
    path.write_text(
        "unqualified-search-registries = []\n\n"
        f'[[registry]]\nlocation = "{MIRRORED_HOST}"\n\n'
        f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n'
    )
    return path


def test_podman_and_skopeo_pull_through_the_mirror_with_the_upstream_name_unchanged(
    mirror_bound: RegistryProcess, open_upstream: RegistryProcess, tools: ContainersTools, tmp_path: Path
) -> None:
    name = f"library/mirrored{uuid.uuid4().hex[:6]}"
    layer, file_hash = tar_layer(500_000)
    image = push_image(open_upstream.url, name, "3.20", [layer], label="mirror")
    # podman with the mirror configuration: the name it pulls is the upstream's (no project prefix)
    mirror_conf(Path(tools.env["CONTAINERS_REGISTRIES_CONF"]), mirror_bound.host)
    ref = f"{MIRRORED_HOST}/{name}:3.20"
    tools.podman("pull", ref)
    tools.assert_files_match(ref, {"payload.bin": file_hash})
    # the pull went through Moorage: the content is now in the mirror's proxy project
    with httpx.Client(timeout=30) as http:
        r = http.get(f"{mirror_bound.url}/api/v2.0/projects/{MIRROR_PROJECT}/repositories",
                     auth=("admin", ADMIN_PASSWORD))
    assert f"{MIRROR_PROJECT}/{name}" in [repo["name"] for repo in r.json()]
    # skopeo with the same kind of registries.conf (by digest this time)
    require_tool("skopeo")
    skopeo = Skopeo(tmp_path / "skopeo")
    conf = mirror_conf(tmp_path / "skopeo-registries.conf", mirror_bound.host)
    source = f"docker://{MIRRORED_HOST}/{name}@{image.manifest_digest}"
    run([*skopeo._base(), "--registries-conf", str(conf), "copy", source, f"oci:{tmp_path / 'copied'}:x"])
    # (skopeo compresses the layer for the OCI layout; the config keeps its digest)
    assert (tmp_path / "copied" / "blobs" / "sha256" / image.config.split(":")[1]).exists()
