"""Nodes that die or are asked to stop: kill -9 mid-upload, SIGTERM with a slow upload in flight.

Each test starts its own two nodes (it kills or stops one), on a throwaway PostgreSQL database
and one shared storage directory.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import RegistryProcess, throwaway_postgres_database
from tests.ha.conftest import start_nodes


@pytest.fixture
def two_nodes_database(postgres_admin_url: str) -> Iterator[str]:
    """The throwaway PostgreSQL database the two nodes share."""
    with throwaway_postgres_database(postgres_admin_url, prefix="moorage_ha") as url:
        yield url


@pytest.fixture
def two_nodes(tmp_path: Path, two_nodes_database: str) -> Iterator[list[RegistryProcess]]:
    nodes = start_nodes(tmp_path, two_nodes_database, tmp_path / "shared", 2)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _wait_for_lease(database_url: str, upload_id: str) -> None:
    """Block until a node holds the write lease of ``upload_id`` (it is streaming a chunk)."""
    import psycopg

    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute("SELECT lease_token FROM uploads WHERE id = %s", (upload_id,)).fetchone() in (None, (None,)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no node took the lease of upload {upload_id}")
            time.sleep(0.02)


def _refused(host: str) -> bool:
    address, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=1):
            return False
    except OSError:
        return True


def test_kill_9_mid_chunk_then_resume_on_another_node(two_nodes: list[RegistryProcess]) -> None:
    victim, survivor = two_nodes
    data = os.urandom(4 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = f"ha/{uuid.uuid4().hex[:10]}"
    half = len(data) // 2
    killed = threading.Event()

    def first_chunk_then_die() -> Iterator[bytes]:
        # Half of the first chunk reaches the victim; then it is SIGKILLed under our feet.
        yield data[: half // 2]
        yield data[half // 2 : half]
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait(30)
        killed.set()
        yield data[half : half + 1024]

    with httpx.Client(timeout=60) as http:
        start = http.post(f"{victim.url}/v2/{name}/blobs/uploads/")
        path = start.headers["location"].split("/v2/", 1)[1]
        with pytest.raises(httpx.TransportError):
            http.patch(f"{victim.url}/v2/{path}", content=first_chunk_then_die())
        assert killed.is_set()
        # The client resumes at the other node: status first, then the rest from its Range.
        deadline = time.monotonic() + 60
        while True:
            status = http.get(f"{survivor.url}/v2/{path}")
            assert status.status_code == 204, status.text
            # Distribution's convention: "0-0" for an empty upload (a 1-byte one cannot occur here).
            end = int(status.headers["range"].rsplit("-", 1)[1])
            offset = end + 1 if status.headers["range"] != "0-0" else 0
            assert 0 <= offset <= half + 1024
            rest = data[offset:]
            response = http.patch(
                f"{survivor.url}/v2/{path}", content=rest,
                headers={"Content-Range": f"{offset}-{len(data) - 1}"},
            )
            if response.status_code == 202:
                break
            # 416 while the dead node's upload lease (15 s) runs out; anything else is a bug.
            assert response.status_code == 416, response.text
            assert time.monotonic() < deadline, (response.text, offset)
            time.sleep(0.5)
            assert http.head(f"{survivor.url}/v2/{name}/blobs/{digest}").status_code == 404
        assert http.head(f"{survivor.url}/v2/{name}/blobs/{digest}").status_code == 404
        done = http.put(f"{survivor.url}/v2/{path}", params={"digest": digest})
        assert done.status_code == 201, done.text
        pulled = http.get(f"{survivor.url}/v2/{name}/blobs/{digest}")
        assert pulled.status_code == 200
        assert hashlib.sha256(pulled.content).hexdigest() == digest.removeprefix("sha256:")


def test_sigterm_finishes_the_upload_in_flight_and_takes_no_new_requests(
    two_nodes: list[RegistryProcess], two_nodes_database: str
) -> None:
    stopping, other = two_nodes
    data = os.urandom(2 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = f"ha/{uuid.uuid4().hex[:10]}"
    refused = threading.Event()
    outcome: dict[str, object] = {}
    with httpx.Client(timeout=30) as http:
        start = http.post(f"{stopping.url}/v2/{name}/blobs/uploads/")
        assert start.status_code == 202, start.text
    path = start.headers["location"].split("/v2/", 1)[1]
    upload_id = start.headers["docker-upload-uuid"]

    def slow_body() -> Iterator[bytes]:
        yield data[:65536]
        # SIGTERM only once the node is provably inside the request: it holds the upload's write
        # lease (taken before it streams the body). Signalled earlier, the request could still be
        # in the socket buffer, and a server that has not read a request yet rightly drops it.
        _wait_for_lease(two_nodes_database, upload_id)
        os.killpg(stopping.process.pid, signal.SIGTERM)
        if not refused.wait(60):
            raise RuntimeError("the stopping node kept accepting connections")
        for offset in range(65536, len(data), 65536):
            yield data[offset : offset + 65536]

    def upload() -> None:
        with httpx.Client(timeout=120) as http:
            try:
                outcome["response"] = http.patch(f"{stopping.url}/v2/{path}", content=slow_body())
            except Exception as exc:  # noqa: BLE001 - reported by the assertions below
                outcome["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 60
    while not _refused(stopping.host):
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.05)
    refused.set()
    thread.join(120)
    assert "error" not in outcome, outcome
    response = outcome["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 202, response.text
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM;
    # the log proves the order: shutdown began, the upload was answered, then the app stopped.
    assert stopping.process.wait(60) in (0, -signal.SIGTERM)
    log = stopping.log_path.read_text()
    shutting = log.index("Shutting down")
    answered = log.index(f"/v2/{name}/blobs/uploads/", shutting)
    assert shutting < answered < log.index("Application shutdown complete", answered)
    with httpx.Client(timeout=30) as http:
        done = http.put(f"{other.url}/v2/{path}", params={"digest": digest})
        assert done.status_code == 201, done.text
        pulled = http.get(f"{other.url}/v2/{name}/blobs/{digest}")
        assert pulled.status_code == 200 and pulled.content == data
