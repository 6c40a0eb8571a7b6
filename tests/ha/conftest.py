"""Several real ``moorage serve`` nodes on one PostgreSQL database and one storage directory.

* ``ha`` (module scope): three nodes + nginx (HTTP and HTTPS) round-robin, no Redis.
* ``ha_redis`` (parametrized ``none``/``single``/``cluster``/``sentinel``): the same with the
  Redis mode started from Debian's binaries; ``.redis`` lets a test stop or pause it.
* ``start_nodes`` starts extra, private nodes for tests that kill or stop one.

Everything runs on 127.0.0.1 free ports; every process started here is stopped here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.clients import Skopeo
from tests.e2e.servers import RegistryProcess, start_moorage, start_together, throwaway_postgres_database
from tests.ha.services import (
    NginxProxy,
    ensure_debian_package,
    start_nginx,
    start_redis,
    start_redis_cluster,
    start_redis_sentinel,
)

NGINX_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "moorage.conf"
NODE_ENV = {"MOORAGE_HTTP__WORKERS": "1", "MOORAGE_LOG__ACCESS_LOG": "true"}


def require(binary: str, package: str) -> None:
    """Install ``package`` when ``binary`` is missing (as root); skip, or fail under CI, otherwise."""
    if not ensure_debian_package(binary, package):
        skip_or_fail(f"`{binary}` is not installed (apt-get install {package})")


@dataclass
class Cluster:
    """Nodes sharing one database and one data dir, maybe behind nginx, maybe with Redis."""

    database_url: str
    shared_dir: Path
    nodes: list[RegistryProcess]
    proxy: NginxProxy | None = None
    redis: Any = None
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for node in self.nodes:
            node.stop()
        for stop in self.stoppers:
            stop()


def start_nodes(
    workdir: Path, database_url: str, shared_dir: Path, count: int, env: dict[str, str] | None = None,
    prefix: str = "node",
) -> list[RegistryProcess]:
    """``count`` nodes started at the same moment (one migrates, the others wait on its lock)."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    node_env = {**NODE_ENV, **(env or {}), "MOORAGE_DATA_DIR": str(shared_dir)}
    return start_together(
        [
            partial(start_moorage, workdir, database_url=database_url, label=f"{prefix}{i}", extra_env=node_env)
            for i in range(count)
        ]
    )


@pytest.fixture(scope="session")
def ha_tools() -> None:
    require("nginx", "nginx")
    require("openssl", "openssl")


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, ha_tools: None) -> Iterator[Cluster]:
    """Three nodes behind nginx on one throwaway PostgreSQL database, no Redis."""
    workdir = tmp_path_factory.mktemp("ha")
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_ha") as url:
        nodes = start_nodes(workdir, url, workdir / "shared", 3)
        cluster = Cluster(url, workdir / "shared", nodes)
        try:
            cluster.proxy = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], workdir / "nginx")
            yield cluster
        finally:
            cluster.stop()


def _redis_env(mode: str, workdir: Path, cluster_stoppers: list[Callable[[], None]]) -> tuple[dict[str, str], Any]:
    env = {"MOORAGE_REDIS__TIMEOUT": "0.3", "MOORAGE_REDIS__FENCE_LEASE": "1"}
    if mode == "none":
        return {}, None
    require("redis-server", "redis-server")
    if mode == "single":
        proc, port = start_redis(workdir / "redis")
        cluster_stoppers.append(proc.stop)
        return {**env, "MOORAGE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, proc
    if mode == "cluster":
        require("redis-cli", "redis-tools")
        redis_cluster = start_redis_cluster(workdir / "redis-cluster")
        cluster_stoppers.append(redis_cluster.stop)
        return {**env, "MOORAGE_REDIS__CLUSTER__ADDRESSES": f"[{', '.join(redis_cluster.addresses)}]"}, redis_cluster
    require("redis-sentinel", "redis-sentinel")
    require("redis-cli", "redis-tools")
    sentinel = start_redis_sentinel(workdir / "redis-sentinel")
    cluster_stoppers.append(sentinel.stop)
    return {
        **env,
        "MOORAGE_REDIS__SENTINEL__ADDRESSES": f"[{', '.join(sentinel.addresses)}]",
        "MOORAGE_REDIS__SENTINEL__MASTER": sentinel.name,
    }, sentinel


@pytest.fixture(params=["none", "single", "cluster", "sentinel"])
def ha_redis(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_url: str, ha_tools: None
) -> Iterator[Cluster]:
    """Three nodes behind nginx with the parametrized Redis mode."""
    stoppers: list[Callable[[], None]] = []
    try:
        env, redis = _redis_env(request.param, tmp_path, stoppers)
        with throwaway_postgres_database(postgres_admin_url, prefix="moorage_ha") as url:
            nodes = start_nodes(tmp_path, url, tmp_path / "shared", 3, env)
            cluster = Cluster(url, tmp_path / "shared", nodes, redis=redis)
            try:
                cluster.proxy = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], tmp_path / "nginx")
                yield cluster
            finally:
                cluster.stop()
    finally:
        for stop in stoppers:
            stop()


@pytest.fixture(scope="session")
def ha_skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    require("skopeo", "skopeo")
    return Skopeo(tmp_path_factory.mktemp("ha-skopeo"))


@pytest.fixture(scope="session")
def can_use_podman() -> None:
    if shutil.which("podman") is None:
        require("podman", "podman")
