"""Two ``moorage serve`` processes on one PostgreSQL database and one data directory.

Proves the design property of the OCI-core issue: upload progress (bytes, resumable hash
state, storage write state) lives in the database and storage, so each chunk of one
upload may land on a different process; and migrations are safe when both start at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import RegistryProcess, start_moorage, start_together, throwaway_postgres_database


@pytest.fixture
def two_nodes(postgres_admin_url: str, tmp_path: Path) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    shared = tmp_path / "shared-data"
    shared.mkdir()
    with throwaway_postgres_database(postgres_admin_url) as url:
        # Both start at the same moment on an empty database: one migrates, the other waits.
        nodes = start_together(
            [
                partial(
                    start_moorage, tmp_path, database_url=url, label=f"node{i}",
                    extra_env={"MOORAGE_DATA_DIR": str(shared)},
                )
                for i in (1, 2)
            ]
        )
        try:
            yield nodes[0], nodes[1]
        finally:
            for node in nodes:
                node.stop()


def test_each_chunk_on_another_process(two_nodes: tuple[RegistryProcess, RegistryProcess]) -> None:
    first, second = two_nodes
    data = os.urandom(5 * 1024 * 1024 + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = "multi/chunks"
    with httpx.Client(timeout=60) as http:
        start = http.post(f"{first.url}/v2/{name}/blobs/uploads/")
        assert start.status_code == 202
        path = start.headers["location"].split("/v2/", 1)[1]
        chunk = 700_000
        nodes = [first, second]
        for index, offset in enumerate(range(0, len(data), chunk)):
            piece = data[offset : offset + chunk]
            node = nodes[index % 2]
            response = http.patch(
                f"{node.url}/v2/{path}", content=piece,
                headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
            )
            assert response.status_code == 202, (node.label, response.text)
            status = http.get(f"{nodes[(index + 1) % 2].url}/v2/{path}")
            assert status.headers["range"] == f"0-{offset + len(piece) - 1}"
        done = http.put(f"{second.url}/v2/{path}", params={"digest": digest})
        assert done.status_code == 201, done.text
        for node in nodes:
            pulled = http.get(f"{node.url}/v2/{name}/blobs/{digest}")
            assert pulled.status_code == 200
            assert hashlib.sha256(pulled.content).hexdigest() == digest[7:]
