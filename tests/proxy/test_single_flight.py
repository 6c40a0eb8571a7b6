"""Single flight across nodes: 50 concurrent cold pulls of one 100 MiB layer through two ``moorage serve``
nodes (one PostgreSQL, one shared storage) cause exactly one fetch, counted in the upstream's access log,
and every client gets the right bytes. Then the streaming path: the first bytes reach a client while the
upstream is paused mid-layer, and a client that hangs up does not stop the fetch."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import require_tool
from tests.e2e.identity_helpers import start_token_moorage
from tests.e2e.servers import RegistryProcess, start_reference, start_together, throwaway_postgres_database
from tests.proxy.conftest import ADMIN_PASSWORD
from tests.proxy.helpers import access_count
from tests.proxy.shim import Shim
from tests.proxy.test_proxy_e2e import bind_proxy
from tests.proxy.upstream import push_image, random_layer

pytestmark = pytest.mark.e2e

LAYER = 100 * 1024 * 1024
PULLS = 50


@pytest.fixture
def upstream(proxy_workdir: Path) -> Iterator[RegistryProcess]:
    require_tool("docker-registry")
    server = start_reference(proxy_workdir, label=f"upstream-sf-{uuid.uuid4().hex[:6]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_nodes(proxy_workdir: Path, postgres_admin_url: str) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """Two nodes on one throwaway PostgreSQL database and one storage directory."""
    storage = proxy_workdir / f"shared-{uuid.uuid4().hex[:6]}"
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_proxy") as database_url:
        env = {"MOORAGE_STORAGE__FILESYSTEM__ROOTDIRECTORY": str(storage)}
        first, second = start_together([
            lambda: start_token_moorage(proxy_workdir, label="node-a", database_url=database_url, extra_env=env),
            lambda: start_token_moorage(proxy_workdir, label="node-b", database_url=database_url, extra_env=env),
        ])
        try:
            yield first, second
        finally:
            second.stop()
            first.stop()


def pull_digest(url: str) -> str:
    """GET a blob, hashing the streamed body; the hex SHA-256 of what arrived."""
    hasher = hashlib.sha256()
    with httpx.Client(timeout=300) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, response.read()[:300]
        for chunk in response.iter_bytes(1024 * 1024):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def test_fifty_cold_pulls_through_two_nodes_fetch_once(
    two_nodes: tuple[RegistryProcess, RegistryProcess], upstream: RegistryProcess
) -> None:
    node_a, node_b = two_nodes
    project = f"hub{uuid.uuid4().hex[:8]}"
    bind_proxy(node_a, upstream, project)
    image = push_image(upstream.url, "library/big", "1", [random_layer(LAYER)])
    digest = image.layers[0]
    path = f"/{project}/library/big/blobs/{digest}"
    urls = [f"{(node_a if i % 2 else node_b).url}/v2{path}" for i in range(PULLS)]
    with ThreadPoolExecutor(PULLS) as pool:
        got = list(pool.map(pull_digest, urls))
    assert got == [digest] * PULLS
    assert access_count(upstream.log_path, "GET", f"/v2/library/big/blobs/{digest}") == 1


def test_first_bytes_arrive_while_the_upstream_is_mid_layer_and_a_hang_up_does_not_stop_the_fetch(
    proxy_server: RegistryProcess, upstream: RegistryProcess
) -> None:
    shim = Shim(upstream.url).start()
    try:
        project = f"hub{uuid.uuid4().hex[:8]}"
        bind_proxy(proxy_server, upstream, project)
        # the endpoint of this project goes through the shim (rebinding is a PUT of registry_id)
        with httpx.Client(auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
            r = admin.post(f"{proxy_server.url}/api/v2.0/registries",
                           json={"name": f"shim-{project}", "type": "docker-registry", "url": shim.url})
            shim_id = int(r.headers["location"].rsplit("/", 1)[1])
            assert admin.put(f"{proxy_server.url}/api/v2.0/projects/{project}",
                             json={"registry_id": shim_id}).status_code == 200
        layer = random_layer(8 * 1024 * 1024)
        image = push_image(upstream.url, "library/stream", "1", [layer])
        shim.pause_after = 2 * 1024 * 1024
        url = f"{proxy_server.url}/v2/{project}/library/stream/blobs/{image.layers[0]}"
        received = 0
        with httpx.Client(timeout=60) as http, http.stream("GET", url) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes(64 * 1024):
                received += len(chunk)
                if received >= 1024 * 1024:
                    break
            # the client has a megabyte, and the upstream stops at 2 of 8 MiB until told to go on: the
            # first bytes did not wait for the layer
            assert shim.paused.wait(60) and not shim.resume.is_set()
        # the client hung up mid-layer; the fetch goes on when the upstream does
        shim.resume.set()
        assert pull_digest(url) == image.layers[0]
        assert shim.count("GET", f"/v2/library/stream/blobs/{image.layers[0]}") == 1
    finally:
        shim.stop()
