"""Any request may reach any node: chunks spread over nodes, nginx's Location headers, health.

These drive the nodes with httpx directly (and through nginx), so each request's node is
chosen by the test, not by chance.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import httpx

from tests.ha.conftest import Cluster


def _repo() -> str:
    return f"ha/{uuid.uuid4().hex[:10]}"


def test_each_chunk_of_one_upload_on_a_different_node(ha: Cluster) -> None:
    nodes = ha.nodes
    data = os.urandom(3 * 1024 * 1024 + 77)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = _repo()
    chunk = 400_000
    with httpx.Client(timeout=60) as http:
        start = http.post(f"{nodes[0].url}/v2/{name}/blobs/uploads/")
        assert start.status_code == 202, start.text
        path = start.headers["location"].split("/v2/", 1)[1]
        used = set()
        for index, offset in enumerate(range(0, len(data), chunk)):
            node = nodes[index % len(nodes)]
            used.add(node.host)
            piece = data[offset : offset + chunk]
            response = http.patch(
                f"{node.url}/v2/{path}", content=piece,
                headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
            )
            assert response.status_code == 202, (node.label, response.text)
        # Before the PUT the blob exists nowhere: no partial blob is ever served.
        for node in nodes:
            assert http.head(f"{node.url}/v2/{name}/blobs/{digest}").status_code == 404
        done = http.put(f"{nodes[-1].url}/v2/{path}", params={"digest": digest})
        assert done.status_code == 201, done.text
        assert used == {n.host for n in nodes}
        assert ha.proxy is not None
        for base in [*(n.url for n in nodes), ha.proxy.http_url]:
            pulled = http.get(f"{base}/v2/{name}/blobs/{digest}")
            assert pulled.status_code == 200
            assert hashlib.sha256(pulled.content).hexdigest() == digest.removeprefix("sha256:")


def test_location_headers_are_absolute_for_the_proxy_address(ha: Cluster) -> None:
    assert ha.proxy is not None
    name = _repo()
    with httpx.Client(timeout=30, verify=False) as http:
        for base in (ha.proxy.http_url, ha.proxy.https_url):
            start = http.post(f"{base}/v2/{name}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["location"]
            # Built from X-Forwarded-Proto/Host that nginx set: the client's scheme and address.
            assert location.startswith(f"{base}/v2/{name}/blobs/uploads/"), (base, location)
            data = b"through the proxy " + base.encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            done = http.put(location, params={"digest": digest}, content=data)
            assert done.status_code == 201, done.text
            assert done.headers["location"] == f"{base}/v2/{name}/blobs/{digest}"
            assert http.get(done.headers["location"]).content == data


def test_relative_location_headers_through_the_proxy(
    ha: Cluster, tmp_path_factory: object
) -> None:
    from tests.ha.conftest import NGINX_TEMPLATE, start_nodes
    from tests.ha.services import start_nginx

    workdir = tmp_path_factory.mktemp("relative")  # type: ignore[attr-defined]
    nodes = start_nodes(workdir, ha.database_url, ha.shared_dir, 1, {"MOORAGE_HTTP__RELATIVEURLS": "true"},
                        prefix="relative")
    proxy = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], workdir / "nginx")
    try:
        name = _repo()
        with httpx.Client(timeout=30, verify=False) as http:
            for base in (proxy.http_url, proxy.https_url):
                start = http.post(f"{base}/v2/{name}/blobs/uploads/")
                assert start.status_code == 202
                location = start.headers["location"]
                assert location.startswith(f"/v2/{name}/blobs/uploads/"), location
                data = os.urandom(1000)
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                done = http.put(f"{base}{location}", params={"digest": digest}, content=data)
                assert done.status_code == 201, done.text
                assert done.headers["location"] == f"/v2/{name}/blobs/{digest}"
    finally:
        proxy.stop()
        for node in nodes:
            node.stop()


def test_health_and_ping_through_the_proxy_and_on_each_node(ha: Cluster) -> None:
    assert ha.proxy is not None
    with httpx.Client(timeout=30, verify=False) as http:
        for base in [*(n.url for n in ha.nodes), ha.proxy.http_url, ha.proxy.https_url]:
            assert http.get(f"{base}/api/v2.0/ping").text == "Pong"
            health = http.get(f"{base}/api/v2.0/health")
            assert health.status_code == 200, health.text
            components = {c["name"]: c for c in health.json()["components"]}
            assert components["database"]["status"] == "healthy"
            assert components["storage"]["status"] == "healthy"


def test_large_blob_streams_through_nginx_without_a_size_limit(ha: Cluster) -> None:
    """nginx's default client_max_body_size is 1 MiB; the shipped config lifts it."""
    assert ha.proxy is not None
    data = os.urandom(24 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = _repo()
    with httpx.Client(timeout=120, verify=False) as http:
        for base in (ha.proxy.https_url,):
            done = http.post(f"{base}/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
            assert done.status_code == 201, done.text
            pulled = http.get(f"{base}/v2/{name}/blobs/{digest}")
            assert pulled.status_code == 200 and hashlib.sha256(pulled.content).hexdigest() == digest[7:]
