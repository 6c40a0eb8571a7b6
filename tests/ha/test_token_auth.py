"""Token auth across three nodes behind nginx: no intermittent 401, ever.

The field report: two HA nodes signed tokens with different keys, so ``docker login`` (and
every pull after it) failed whenever the token request and the registry request landed on
different nodes. Here every request goes through nginx round-robin over three token-mode
nodes sharing one PostgreSQL database; the token endpoint, the REST API and ``/v2`` are hit
by real clients (podman login, skopeo with credentials) and by a raw loop that fetches a token
from one node and uses it on the next, many times. A single 401 fails the test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import ContainersTools, Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, AdminApi, basic, start_token_moorage
from tests.e2e.images import OciLayout, verify_dir
from tests.e2e.servers import RegistryProcess, start_together, throwaway_postgres_database
from tests.ha.conftest import NGINX_TEMPLATE
from tests.ha.services import NginxProxy, start_nginx

ROUNDS = 6
RAW_ROUNDS = 90
DEVELOPER_ROLE = 2


@pytest.fixture(scope="module")
def token_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, ha_tools: None
) -> Iterator[tuple[list[RegistryProcess], NginxProxy]]:
    workdir = tmp_path_factory.mktemp("ha-token")
    shared = workdir / "shared"
    shared.mkdir()
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_ha_token") as url:
        env = {"MOORAGE_DATA_DIR": str(shared), "MOORAGE_HTTP__WORKERS": "1"}
        # All three start at once: one migrates and creates the signing key set, the others wait.
        nodes = start_together(
            [
                partial(start_token_moorage, workdir, label=f"tnode{i}", database_url=url, extra_env=env)
                for i in range(3)
            ]
        )
        proxy: NginxProxy | None = None
        try:
            proxy = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], workdir / "nginx")
            yield nodes, proxy
        finally:
            if proxy is not None:
                proxy.stop()
            for node in nodes:
                node.stop()


def _host(proxy: NginxProxy) -> str:
    return f"127.0.0.1:{proxy.http_port}"


def _proxy_as_registry(proxy: NginxProxy, nodes: list[RegistryProcess]) -> RegistryProcess:
    """The REST helper only needs ``url``; the proxy stands in for a node."""
    return RegistryProcess("moorage", _host(proxy), nodes[0].data_dir, nodes[0].log_path, nodes[0].process, "proxy")


def _developer(nodes: list[RegistryProcess], proxy: NginxProxy) -> tuple[str, str]:
    """A fresh project and a developer of it, created through the proxy's REST API as admin."""
    api = AdminApi(_proxy_as_registry(proxy, nodes))
    try:
        project = api.project()
        return project, api.user(project, DEVELOPER_ROLE)
    finally:
        api.close()


def test_login_push_pull_through_nginx_never_401(
    token_cluster: tuple[list[RegistryProcess], NginxProxy], ha_skopeo: Skopeo, tmp_path: Path
) -> None:
    nodes, proxy = token_cluster
    project, user = _developer(nodes, proxy)
    layout = OciLayout(tmp_path / "layout")
    image = layout.add_image("v1", (256 * 1024, 64 * 1024))
    creds = f"{user}:{PASSWORD}"

    tools = ContainersTools(tmp_path / "containers", [_host(proxy)])
    try:
        for _ in range(3):  # podman login's token request and /v2 check may land on any node
            tools.podman("login", "--tls-verify=false", "-u", user, "-p", PASSWORD, _host(proxy))
            tools.podman("logout", _host(proxy))
    finally:
        tools.cleanup()

    for round_number in range(ROUNDS):
        remote = f"docker://{_host(proxy)}/{project}/app:r{round_number}"
        ha_skopeo.copy(image.ref, remote, "--dest-creds", creds)
        pulled = tmp_path / f"pulled-{round_number}"
        ha_skopeo.copy(remote, f"dir:{pulled}", "--src-creds", creds)
        assert verify_dir(pulled) == {b.digest for b in image.blobs}


def test_a_token_from_any_node_works_on_every_node(
    token_cluster: tuple[list[RegistryProcess], NginxProxy],
) -> None:
    """The raw loop: token from node i (direct), an upload started on node i+1 (direct), many times."""
    nodes, proxy = token_cluster
    project, user = _developer(nodes, proxy)
    repository = f"{project}/raw-{uuid.uuid4().hex[:6]}"
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:
        for i in range(RAW_ROUNDS):
            issuer, verifier = nodes[i % 3], nodes[(i + 1) % 3]
            token_response = http.get(
                f"{issuer.url}/service/token",
                params={"service": "moorage", "scope": f"repository:{repository}:pull,push"},
                headers=basic(user, PASSWORD),
            )
            assert token_response.status_code == 200, token_response.text
            token = token_response.json()["token"]
            started = http.post(
                f"{verifier.url}/v2/{repository}/blobs/uploads/", headers={"Authorization": f"Bearer {token}"}
            )
            if started.status_code != 202:
                failures.append(f"round {i}: {issuer.label} → {verifier.label}: {started.status_code} {started.text}")
        # The admin's Basic credentials on /v2 through the proxy work on every node too.
        for _ in range(6):
            catalog = http.get(f"{proxy.http_url}/v2/_catalog", headers=basic("admin", ADMIN_PASSWORD))
            if catalog.status_code != 200:
                failures.append(f"catalog via proxy: {catalog.status_code} {catalog.text}")
    assert failures == [], failures


def test_a_member_removed_on_one_node_is_refused_by_the_others_within_the_cache_time(
    token_cluster: tuple[list[RegistryProcess], NginxProxy],
) -> None:
    """Three processes: the token comes from node 0, the removal is made on node 1, the token is
    used on node 2, which had just read (and cached) the old membership."""
    from moorage.auth.policy import CACHE_SECONDS

    nodes, proxy = token_cluster
    project, user = _developer(nodes, proxy)
    repository = f"{project}/removed"
    with httpx.Client(timeout=30) as http:
        token = http.get(f"{nodes[0].url}/service/token", headers=basic(user, PASSWORD),
                         params={"service": "moorage", "scope": f"repository:{repository}:pull,push"}).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert http.post(f"{nodes[2].url}/v2/{repository}/blobs/uploads/", headers=bearer).status_code == 202
        admin = basic("admin", ADMIN_PASSWORD)
        members = http.get(f"{nodes[1].url}/api/v2.0/projects/{project}/members", headers=admin).json()
        member_id = next(m["id"] for m in members if m["entity_name"] == user)
        removed = http.delete(f"{nodes[1].url}/api/v2.0/projects/{project}/members/{member_id}", headers=admin)
        assert removed.status_code == 200, removed.text
        time.sleep(CACHE_SECONDS)
        for node in nodes:
            refused = http.post(f"{node.url}/v2/{repository}/blobs/uploads/", headers=bearer)
            assert refused.status_code == 403, (node.label, refused.text)
            assert "does not exist or you are not a member of it" in refused.text
