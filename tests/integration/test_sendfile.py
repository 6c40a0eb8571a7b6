"""``moorage serve``'s uvicorn protocol with ``http.response.zerocopysend`` (moorage.cli.sendfile), on real sockets.

A real uvicorn server runs in a thread with its own event loop, once on asyncio's loop and once
on uvloop (what ``moorage serve`` runs), with a small ASGI app that answers every request with a
slice of a file through the extension. Clients are plain blocking sockets, so that slow readers,
hang-ups and keep-alive are exactly what the test does.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn

from moorage.cli.sendfile import ZEROCOPYSEND, SendfileCycle, SendfileHttpToolsProtocol

MIB = 1024 * 1024


class _App:
    """``GET /?length=L[&offset=O][&count=C][&seek=S]``: Content-Length L, then one zerocopysend."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.extensions: list[dict[str, Any]] = []
        self.finished = 0  # sends that returned (the file is closed after each)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.extensions.append(dict(scope.get("extensions") or {}))
        query = {k: int(v[0]) for k, v in parse_qs(scope["query_string"].decode()).items()}
        with self.path.open("rb", buffering=0) as file:
            if "seek" in query:
                file.seek(query["seek"])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(query["length"]).encode())]})
            message: dict[str, Any] = {"type": ZEROCOPYSEND, "file": file}
            for key in ("offset", "count"):
                if key in query:
                    message[key] = query[key]
            if ZEROCOPYSEND in (scope.get("extensions") or {}):
                await send(message)
            else:  # TLS: the app must stream (what moorage.api.files does)
                await send({"type": "http.response.body", "body": file.read(query["length"])})
            if "seek" in query:
                assert file.tell() == query["seek"] + query["length"]  # the position advanced
        self.finished += 1


class _Server:
    def __init__(self, app: _App, loop: str, **tls: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, loop=loop, http=SendfileHttpToolsProtocol,
                                lifespan="off", log_config=None, access_log=False, **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(24 * MIB + 7)
    path = tmp_path_factory.mktemp("sendfile") / "blob"
    path.write_bytes(data)
    return path, data


@pytest.fixture(params=["asyncio", "uvloop"])
def served(request: pytest.FixtureRequest, blob: tuple[Path, bytes]) -> Iterator[tuple[int, _App, bytes]]:
    app = _App(blob[0])
    with _Server(app, request.param) as port:
        yield port, app, blob[1]


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_whole_file_ranges_and_file_position_on_one_keep_alive_connection(served: tuple[int, _App, bytes]) -> None:
    port, app, data = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    first_socket = None
    for query, expected in (
        (f"length={len(data)}", data),
        (f"length=1000&offset={5 * MIB}&count=1000", data[5 * MIB:5 * MIB + 1000]),
        (f"length={len(data) - 3 * MIB}&offset={3 * MIB}", data[3 * MIB:]),  # count: to the end
        (f"length={2 * MIB}&seek={MIB}&count={2 * MIB}", data[MIB:3 * MIB]),  # offset: the file's position
        ("length=0&offset=0&count=0", b""),
    ):
        conn.request("GET", f"/?{query}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == expected, query
        first_socket = first_socket or conn.sock
        assert conn.sock is first_socket  # keep-alive: the same connection answered every request
    conn.close()
    assert all(ZEROCOPYSEND in offered for offered in app.extensions)


def test_head_sends_the_headers_only(served: tuple[int, _App, bytes]) -> None:
    port, _, data = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("HEAD", f"/?length={len(data)}")
    head = conn.getresponse()
    assert head.status == 200 and head.getheader("content-length") == str(len(data))
    assert head.read() == b""
    conn.request("GET", "/?length=10&offset=0&count=10")  # no stray body bytes before the next answer
    assert conn.getresponse().read() == data[:10]
    conn.close()


def test_a_slow_reader_gets_every_byte(served: tuple[int, _App, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-pressure: the socket buffer fills, sendfile says EAGAIN, the event loop waits for the reader."""
    port, _, data = served
    waits = []
    original = SendfileCycle._writable

    async def counting(self: SendfileCycle, loop: Any, fd: int) -> None:
        waits.append(fd)
        await original(self, loop, fd)

    monkeypatch.setattr(SendfileCycle, "_writable", counting)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /?length={len(data)} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        received = bytearray()
        while len(received) < MIB // 2:  # slowly at first: the socket stays full longer than the sender spins
            received += sock.recv(64 * 1024)
            time.sleep(0.05)
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        digest = hashlib.sha256(body)
        got = len(body)
        while got < len(data):
            chunk = sock.recv(MIB)
            assert chunk, "the server closed the connection early"
            digest.update(chunk)
            got += len(chunk)
    assert head.startswith(b"HTTP/1.1 200") and got == len(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert waits, "the transfer never waited for the socket to drain"


def test_a_client_hanging_up_ends_the_transfer_and_the_server_goes_on(served: tuple[int, _App, bytes]) -> None:
    port, app, data = served
    for _ in range(3):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET /?length={len(data)} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert sock.recv(64 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    _wait_for(lambda: app.finished == 3, "the app's send did not return after the client hung up")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/?length=100&offset=1&count=100")
    assert conn.getresponse().read() == data[1:101]
    conn.close()


def test_a_client_that_stops_reading_and_closes_ends_the_transfer(served: tuple[int, _App, bytes]) -> None:
    """A plain close (FIN, no RST) while the server waits for the socket to drain."""
    port, app, data = served
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /?length={len(data)} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert sock.recv(1024)
        time.sleep(0.2)  # the server fills the buffers and waits
    _wait_for(lambda: app.finished == 1, "the app's send did not return after the client closed")


def test_a_file_shorter_than_announced_closes_the_connection(served: tuple[int, _App, bytes]) -> None:
    port, _, data = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/?length={len(data) + 10}&offset=0&count={len(data) + 10}")
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()


def test_tls_connections_are_not_offered_the_extension(
    blob: tuple[Path, bytes], tmp_path: Path
) -> None:
    """sendfile would bypass the TLS layer: over HTTPS the app is told to stream."""
    from moorage.certs import make_ca, make_server

    ca = make_ca(tmp_path)
    issued = make_server(tmp_path, ca.certificate, ca.key, ["127.0.0.1"])
    app = _App(blob[0])
    with _Server(app, "asyncio", ssl_certfile=str(issued.certificate), ssl_keyfile=str(issued.key)) as port:
        context = ssl.create_default_context(cafile=str(ca.certificate))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
        conn.request("GET", "/?length=1000&offset=0&count=1000")
        assert conn.getresponse().read() == blob[1][:1000]
        conn.close()
    assert app.extensions == [{}]
