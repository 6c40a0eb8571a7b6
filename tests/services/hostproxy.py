"""A one-request-per-connection HTTP forwarder that lies in the ``Host`` header.

It reproduces the proxy field report: the auth service builds ``X-Storage-Url`` from the
``Host`` it sees, so behind a proxy that passes an internal host/port the advertised storage
URL is unreachable for the registry. Requests are forwarded unchanged except for ``Host``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["host_rewriting_proxy"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


@contextlib.asynccontextmanager
async def host_rewriting_proxy(upstream_port: int, fake_host: str) -> AsyncIterator[int]:
    """Listen on a free loopback port; forward to ``upstream_port`` with ``Host: fake_host``."""

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        head = await client_reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        lines = [
            b"Host: " + fake_host.encode() if line.lower().startswith(b"host:") else line for line in lines
        ]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        up_writer.write(b"\r\n".join(lines))
        await up_writer.drain()
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
