"""A small HTTP shim on a real socket in front of an upstream registry, misbehaving on demand.

Modes: ``pass`` (forward), ``429`` (Too Many Requests with ``Retry-After``), ``503``, ``hang`` (wait
``hang_seconds`` before forwarding: a timeout for a client with a shorter one). ``pause_after``
bytes into a blob body it stops until :attr:`Shim.resume` is set, so a test can look at what the
proxy's client has received while the upstream is mid-transfer. Every request is recorded in
:attr:`Shim.hits`. Nothing here imports pytest.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["Shim"]

_FORWARDED = ("content-type", "content-length", "docker-content-digest", "docker-distribution-api-version",
              "www-authenticate", "location", "etag")


class Shim:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is what the proxy's endpoint points at."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode = "pass"
        self.retry_after = 30
        self.hang_seconds = 5.0
        self.pause_after: int | None = None
        #: Flip the first byte of every blob body (an upstream or a network that corrupts content).
        self.corrupt = False
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.hits: list[str] = []
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                shim.handle(self)

            def do_HEAD(self) -> None:
                shim.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Shim:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.resume.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, method: str, path: str) -> int:
        return self.hits.count(f"{method} {path}")

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.hits.append(f"{request.command} {request.path}")
        if self.mode in ("429", "503"):
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' if self.mode == "429" else b"down"
            request.send_response(int(self.mode))
            if self.mode == "429":
                request.send_header("Retry-After", str(self.retry_after))
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(body)
            return
        if self.mode == "hang":
            time.sleep(self.hang_seconds)
        self._forward(request)

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "authorization", "range")}
        upstream.request(request.command, request.path, headers=headers)
        answer = upstream.getresponse()
        request.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() in _FORWARDED:
                request.send_header(name, value)
        request.end_headers()
        sent = 0
        try:
            while request.command != "HEAD":
                chunk = answer.read(64 * 1024)
                if not chunk:
                    break
                if self.corrupt and sent == 0 and "/blobs/" in request.path:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if self.pause_after is not None and sent < self.pause_after <= sent + len(chunk):
                    cut = self.pause_after - sent
                    request.wfile.write(chunk[:cut])
                    request.wfile.flush()
                    sent += cut
                    chunk = chunk[cut:]
                    self.paused.set()
                    self.resume.wait(120)
                request.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            upstream.close()
