"""skopeo (and podman) push and pull through nginx round-robin over three nodes, per Redis mode.

Repeated rounds prove there is no intermittent failure (a 401 or a missing blob on the node
that did not see the push). Midway Redis is *paused* (SIGSTOP: it keeps its data and answers
nothing, the nastiest failure), a manifest is deleted while it is paused, and after it is
resumed the deleted manifest must be gone on every node — no stale cache entry may come back.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.clients import ContainersTools, Skopeo
from tests.e2e.images import OciLayout, verify_dir
from tests.ha.conftest import Cluster, require

ROUNDS = 4
LAYERS = (512 * 1024, 1024 * 1024, 64 * 1024)


def _pause(redis: Any) -> list[Any]:
    """SIGSTOP every Redis server process of the mode (the Sentinels keep running)."""
    if redis is None:
        return []
    if hasattr(redis, "masters"):
        procs = [proc for proc, _ in redis.masters]
    elif hasattr(redis, "master"):
        procs = [redis.master[0]]
    else:
        procs = [redis]
    for proc in procs:
        proc.pause()
    return procs


def test_push_pull_rounds_through_nginx_with_redis_lost_midway(
    ha_redis: Cluster, ha_skopeo: Skopeo, tmp_path: Path
) -> None:
    assert ha_redis.proxy is not None
    proxy = ha_redis.proxy
    layout = OciLayout(tmp_path / "layout")
    image = layout.add_image("v1", LAYERS)
    repo = f"ha/{uuid.uuid4().hex[:8]}"
    paused: list[Any] = []
    deleted_digest = ""
    try:
        for round_number in range(ROUNDS):
            if round_number == ROUNDS // 2:
                paused = _pause(ha_redis.redis)
            tag = f"r{round_number}"
            remote = f"docker://{proxy.host}/{repo}:{tag}"
            ha_skopeo.copy(image.ref, remote)
            pulled = tmp_path / f"pulled-{round_number}"
            ha_skopeo.copy(remote, f"dir:{pulled}")
            manifest = json.loads((pulled / "manifest.json").read_text())
            assert [layer["digest"] for layer in manifest["layers"]] == [b.digest for b in image.layers]
            assert verify_dir(pulled) == {b.digest for b in image.blobs}  # every blob re-hashed
            with httpx.Client(timeout=30) as http:
                for node in ha_redis.nodes:  # every node answers the same, cache or not
                    got = http.get(f"{node.url}/v2/{repo}/manifests/{tag}",
                                   headers={"Accept": image.manifest.media_type})
                    assert got.status_code == 200, (node.label, got.text)
                    assert got.headers["docker-content-digest"] == image.manifest.digest
        # While Redis is still paused: delete the manifest (its tags go with it).
        deleted_digest = image.manifest.digest
        with httpx.Client(timeout=60) as http:
            deleted = http.delete(f"{proxy.http_url}/v2/{repo}/manifests/{deleted_digest}")
            assert deleted.status_code == 202, deleted.text
    finally:
        for proc in paused:
            proc.resume()
    with httpx.Client(timeout=30) as http:
        for _ in range(2):  # twice: once maybe reconnecting, once with Redis surely back
            for node in ha_redis.nodes:
                for reference in (deleted_digest, "r0", f"r{ROUNDS - 1}"):
                    got = http.get(f"{node.url}/v2/{repo}/manifests/{reference}",
                                   headers={"Accept": image.manifest.media_type})
                    assert got.status_code == 404, (node.label, reference, got.status_code)
    # And pushing again after the outage works through every layer of the stack.
    ha_skopeo.copy(image.ref, f"docker://{proxy.host}/{repo}:again")
    ha_skopeo.copy(f"docker://{proxy.host}/{repo}:again", f"dir:{tmp_path / 'again'}")
    assert verify_dir(tmp_path / "again") == {b.digest for b in image.blobs}


def test_podman_push_pull_through_nginx(ha_redis: Cluster, tmp_path: Path) -> None:
    require("podman", "podman")
    assert ha_redis.proxy is not None
    layout = OciLayout(tmp_path / "layout")
    image = layout.add_image("v1", LAYERS)
    tools = ContainersTools(tmp_path / "containers", [ha_redis.proxy.host])
    try:
        local = f"localhost/ha-source:{uuid.uuid4().hex[:6]}"
        tools.podman("pull", f"oci:{image.ref.removeprefix('oci:')}")
        tools.podman("tag", tools.podman("images", "-q").stdout.split()[0], local)
        for round_number in range(2):
            remote = f"{ha_redis.proxy.host}/ha/podman:{round_number}"
            tools.podman("push", local, remote)
            tools.podman("rmi", remote, check=False)
            tools.podman("pull", remote)
            tools.assert_files_match(remote, image.files)  # every layer file hashes like the original
    finally:
        tools.cleanup()
