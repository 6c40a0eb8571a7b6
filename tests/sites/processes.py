"""Real ``moorage serve`` nodes of two sites on one PostgreSQL, each site behind its own nginx.

Site ``a`` stores on Ceph RGW's S3 API, site ``b`` on the OpenStack Swift SAIO. Shared by the e2e
test (``tests/sites/test_e2e.py``) and ``benchmarks/multi_site.py``, so nothing here imports
pytest. Every process started here is stopped by :meth:`SiteCluster.stop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.servers import RegistryProcess, start_moorage, start_together
from tests.ha.services import NginxProxy, start_nginx
from tests.storage.objectstores import TEMPURL_KEY

__all__ = ["NGINX_TEMPLATE", "SiteCluster", "start_sites", "write_sites_config"]

NGINX_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "moorage.conf"


def write_sites_config(
    path: Path, database_url: str, rgw: Mapping[str, str], swift: Mapping[str, str], bucket: str, container: str,
    *, fallback: str = "stream", poll_seconds: float | None = None,
) -> Path:
    """The YAML every node of both sites reads (``MOORAGE_SITE`` picks the node's site)."""
    config: dict[str, Any] = {
        "database": {"url": database_url},
        "sites": {
            "a": {"storage": {"s3": {
                "accesskey": rgw["S3_ACCESS_KEY"], "secretkey": rgw["S3_SECRET_KEY"], "region": rgw["S3_REGION"],
                "regionendpoint": rgw["S3_ENDPOINT"], "bucket": bucket,
            }}},
            "b": {"storage": {"swift": {
                "authurl": swift["SWIFT_AUTH_URL"], "username": swift["SWIFT_USER"], "password": swift["SWIFT_KEY"],
                "container": container, "secretkey": TEMPURL_KEY,
            }}, "fallback": fallback},
        },
    }
    if poll_seconds is not None:
        config["jobs"] = {"poll_seconds": poll_seconds}
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class SiteCluster:
    """Each site's nodes and, when asked for, the nginx in front of them."""

    nodes: dict[str, list[RegistryProcess]]
    proxies: dict[str, NginxProxy] = field(default_factory=dict)

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        for nodes in self.nodes.values():
            for node in nodes:
                node.stop()


def start_sites(
    workdir: Path, database_url: str, config: Path, *, nodes_per_site: int = 2, nginx: bool = True,
    env: Mapping[str, str] | None = None,
) -> SiteCluster:
    """``nodes_per_site`` nodes of each site, started together (one migrates, the rest wait)."""
    base = {"MOORAGE_CONFIG": str(config), "MOORAGE_HTTP__WORKERS": "1", **(env or {})}
    starters = [
        partial(start_moorage, workdir, database_url=database_url, label=f"site{site}-{i}",
                extra_env={**base, "MOORAGE_SITE": site})
        for site in ("a", "b")
        for i in range(nodes_per_site)
    ]
    started = start_together(starters)
    cluster = SiteCluster({"a": started[:nodes_per_site], "b": started[nodes_per_site:]})
    try:
        if nginx:
            for site, nodes in cluster.nodes.items():
                cluster.proxies[site] = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], workdir / f"nginx-{site}")
    except BaseException:
        cluster.stop()
        raise
    return cluster
