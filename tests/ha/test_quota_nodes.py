"""Quota usage stays exact with two ``moorage serve`` processes on one PostgreSQL pushing into one project at once.

The usage the quota reports (``GET /api/v2.0/quotas/{id}`` on either node) is compared with a
count made here from the links themselves (every blob linked into a repository of the project,
once) and with the sizes the test itself pushed, after each phase:

1. images whose layers overlap pushed into eight repositories at once, every blob pushed through
   both nodes (monolithic on one, chunked across both), layers mounted between repositories;
2. repository deletes and blob unlinks racing more pushes of the same layers;
3. a GC run (a third process) racing pushes after manifests were deleted;
4. a limit: twelve blobs pushed at once into room for five; exactly five land, the refused leave
   no blob row, and the usage is the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.identity_helpers import ADMIN_PASSWORD, basic, start_token_moorage
from tests.e2e.servers import RegistryProcess, moorage_command, start_together, throwaway_postgres_database

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ADMIN = basic("admin", ADMIN_PASSWORD)


class Nodes:
    def __init__(self, nodes: list[RegistryProcess], database_url: str, shared: Path) -> None:
        self.nodes = nodes
        self.database_url = database_url
        self.shared = shared

    def url(self, i: int) -> str:
        return self.nodes[i % len(self.nodes)].url


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Nodes]:
    workdir = tmp_path_factory.mktemp("ha-quota")
    shared = workdir / "shared"
    shared.mkdir()
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_quota") as url:
        env = {"MOORAGE_DATA_DIR": str(shared), "MOORAGE_HTTP__WORKERS": "1"}
        nodes = start_together(
            [partial(start_token_moorage, workdir, label=f"qnode{i}", database_url=url, extra_env=env)
             for i in range(2)]
        )
        try:
            yield Nodes(nodes, url, shared)
        finally:
            for node in nodes:
                node.stop()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _counted(database_url: str, project_id: int) -> tuple[int, int]:
    """(what the quota row says, what the links say) for the project."""
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT storage_used FROM quotas WHERE project_id = %s", (project_id,)).fetchone()
        linked = conn.execute(
            "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.id IN (SELECT rb.blob_id FROM repository_blobs rb "
            "JOIN repositories r ON r.id = rb.repository_id WHERE r.project_id = %s)", (project_id,)
        ).fetchone()
    assert stored is not None and linked is not None
    return int(stored[0]), int(linked[0])


async def _exact(http: httpx.AsyncClient, nodes: Nodes, project_id: int) -> int:
    """The usage, after checking that both nodes report it and that it matches the links."""
    reported = set()
    for i in range(2):
        r = await http.get(f"{nodes.url(i)}/api/v2.0/quotas/{project_id}", headers=ADMIN)
        assert r.status_code == 200, r.text
        reported.add(int(r.json()["used"]["storage"]))
    stored, linked = _counted(nodes.database_url, project_id)
    assert reported == {stored} and stored == linked, (reported, stored, linked)
    return stored


def _path(r: httpx.Response) -> str:
    """The path (and query) of an upload's ``Location``, to send the next request to another node."""
    return httpx.URL(r.headers["Location"]).raw_path.decode()


async def _blob(http: httpx.AsyncClient, nodes: Nodes, name: str, data: bytes, i: int) -> int:
    """Push one blob: monolithic on one node, or POST on one node, PATCH on the other, PUT on the first."""
    digest = _digest(data)
    if i % 2:
        r = await http.post(f"{nodes.url(i)}/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data,
                            headers=ADMIN)
        return r.status_code
    r = await http.post(f"{nodes.url(i)}/v2/{name}/blobs/uploads/", headers=ADMIN)
    if r.status_code != 202:
        return r.status_code
    r = await http.patch(f"{nodes.url(i + 1)}{_path(r)}", content=data,
                         headers={**ADMIN, "Content-Type": "application/octet-stream"})
    if r.status_code != 202:
        return r.status_code
    r = await http.put(f"{nodes.url(i)}{_path(r)}", params={"digest": digest}, headers=ADMIN)
    return r.status_code


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    def desc(media_type: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}

    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer) for layer in layers],
    }).encode()


async def _image(http: httpx.AsyncClient, nodes: Nodes, name: str, config: bytes, layers: list[bytes],
                 start: int, *, tolerate: bool = False) -> bytes:
    """Push config, layers (alternating nodes) and the manifest; returns the manifest."""
    for j, blob in enumerate((config, *layers)):
        status = await _blob(http, nodes, name, blob, start + j)
        assert tolerate or status == 201, (name, status)
    manifest = _manifest(config, layers)
    r = await http.put(f"{nodes.url(start)}/v2/{name}/manifests/v1", content=manifest,
                       headers={**ADMIN, "Content-Type": OCI_MANIFEST})
    assert tolerate or r.status_code == 201, r.text
    return manifest


async def _project(http: httpx.AsyncClient, nodes: Nodes, storage_limit: int) -> tuple[str, int]:
    name = f"quota{uuid.uuid4().hex[:8]}"
    r = await http.post(f"{nodes.url(0)}/api/v2.0/projects", headers=ADMIN,
                        json={"project_name": name, "storage_limit": storage_limit})
    assert r.status_code == 201, r.text
    return name, int(r.headers["Location"].rsplit("/", 1)[1])


async def _phases(nodes: Nodes) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        project, pid = await _project(http, nodes, -1)
        pool = [os.urandom(20_000 + 1000 * k) for k in range(10)]
        configs = [json.dumps({"os": "linux", "repo": r}).encode() for r in range(14)]

        def layers_of(r: int) -> list[bytes]:
            return [pool[(r + k) % len(pool)] for k in (0, 1, 3)]

        # 1. eight images at once, overlapping layers, both nodes, plus mounts between repositories
        async def mount(i: int) -> int:
            r = await http.post(f"{nodes.url(i)}/v2/{project}/m{i}/blobs/uploads/", headers=ADMIN,
                                params={"mount": _digest(pool[i % len(pool)]), "from": f"{project}/r{i % 8}"})
            return r.status_code

        manifests = await asyncio.gather(
            *(_image(http, nodes, f"{project}/r{r}", configs[r], layers_of(r), r) for r in range(8))
        )
        assert await asyncio.gather(*(mount(i) for i in range(6))) == [201] * 6
        expected = sum(map(len, {*pool[:10], *configs[:8], *manifests}))  # every pool layer is used by some image
        assert await _exact(http, nodes, pid) == expected

        # 2. deletes racing pushes of the same layers
        async def delete_repository(r: int) -> None:
            got = await http.delete(f"{nodes.url(r)}/api/v2.0/projects/{project}/repositories/r{r}", headers=ADMIN)
            assert got.status_code == 200, got.text

        async def unlink(i: int) -> None:  # the mounted layers are referenced by no manifest in m{i}
            got = await http.delete(f"{nodes.url(i + 1)}/v2/{project}/m{i}/blobs/{_digest(pool[i % len(pool)])}",
                                    headers=ADMIN)
            assert got.status_code in (202, 404), got.text

        await asyncio.gather(
            *(delete_repository(r) for r in range(4)),
            *(unlink(i) for i in range(6)),
            *(_image(http, nodes, f"{project}/r{r}", configs[r], layers_of(r), r) for r in range(8, 12)),
        )
        await _exact(http, nodes, pid)

        # 3. GC (a third process) racing pushes, after manifests went
        for r in (4, 5):
            got = await http.delete(f"{nodes.url(r)}/v2/{project}/r{r}/manifests/{_digest(manifests[r])}",
                                    headers=ADMIN)
            assert got.status_code == 202, got.text
        env = {**os.environ, "MOORAGE_DATABASE_URL": nodes.database_url, "MOORAGE_DATA_DIR": str(nodes.shared)}

        def collect() -> subprocess.CompletedProcess[str]:
            return subprocess.run([*moorage_command(), "gc", "run", "--grace-period", "0s"], env=env,
                                  capture_output=True, text=True, timeout=300, check=False)

        gc = asyncio.create_task(asyncio.to_thread(collect))
        await asyncio.gather(
            *(_image(http, nodes, f"{project}/r{r}", configs[r], layers_of(r), r, tolerate=True)
              for r in range(12, 14)),
        )
        gc_done = await gc
        assert gc_done.returncode == 0, gc_done.stdout + gc_done.stderr
        await _exact(http, nodes, pid)

        # 4. twelve blobs at once into room for five
        limited, lid = await _project(http, nodes, 5 * 4096)
        blobs = [os.urandom(4096) for _ in range(12)]
        statuses = await asyncio.gather(
            *(_blob(http, nodes, f"{limited}/r{i % 3}", data, i) for i, data in enumerate(blobs))
        )
        assert sorted(statuses) == [201] * 5 + [403] * 7, statuses
        assert await _exact(http, nodes, lid) == 5 * 4096
        with psycopg.connect(nodes.database_url) as conn:
            for status, data in zip(statuses, blobs, strict=True):
                rows = conn.execute("SELECT count(*) FROM blobs WHERE digest = %s", (_digest(data),)).fetchone()
                assert rows is not None and rows[0] == (1 if status == 201 else 0)


def test_quota_usage_is_exact_with_two_nodes_pushing_deleting_and_collecting(two_nodes: Nodes) -> None:
    asyncio.run(_phases(two_nodes))
