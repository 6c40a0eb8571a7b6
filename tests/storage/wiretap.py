"""A recording HTTP/1.1 forwarder: plain HTTP from the client, TLS to the real object store.

It shows what a driver really sends (headers included), request by request, keep-alive
connections included. Bodies are forwarded by their ``Content-Length``; a chunked request
body fails the recording loudly instead of being misread. The store sees a TLS connection,
so options it grants only over TLS (RGW's server-side encryption) work through it, and the
``Host`` header is forwarded unchanged, so request signatures stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Recorded", "Wiretap", "wiretap"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as it went over the wire."""

    method: str
    target: str
    headers: dict[str, str]


@dataclass
class Wiretap:
    port: int
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            writer.close()


async def _requests(tap: Wiretap, client: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
    """Parse each request of a connection, record it and forward it byte for byte."""
    try:
        while True:
            try:
                head = await client.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            tap.requests.append(Recorded(method, target, headers))
            upstream.write(head)
            if "chunked" in headers.get("transfer-encoding", ""):
                tap.errors.append(f"chunked body on {method} {target}: not recorded")
                return
            remaining = int(headers.get("content-length", "0"))
            while remaining:
                chunk = await client.read(min(remaining, 65536))
                if not chunk:
                    return
                upstream.write(chunk)
                remaining -= len(chunk)
            await upstream.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            upstream.close()


@contextlib.asynccontextmanager
async def wiretap(upstream_port: int, ca_file: str) -> AsyncIterator[Wiretap]:
    """Listen on a free loopback port; forward every connection to ``upstream_port`` over TLS."""
    context = ssl.create_default_context(cafile=ca_file)
    tap = Wiretap(0)
    tasks: set[asyncio.Task[object]] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", upstream_port, ssl=context, server_hostname="127.0.0.1"
        )
        await asyncio.gather(_requests(tap, client_reader, up_writer), _pipe(up_reader, client_writer))

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    tap.port = server.sockets[0].getsockname()[1]
    try:
        yield tap
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
