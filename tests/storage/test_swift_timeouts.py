"""A Swift server that trickles its answers cannot hold a request forever.

The server is real (an asyncio HTTP server on loopback): it logs the driver in like tempauth,
then answers some objects one byte at a time, each byte well within the per-read timeout.
Only ``storage.swift.timeout`` can end those requests. The guard around each call turns a
hang into a failure instead of waiting for pytest's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from moorage.storage.driver import StorageUnavailableError
from moorage.storage.drivers.swift import SwiftDriver
from moorage.storage.drivers.swift_auth import SwiftSettings

_TRICKLE_PAUSE = 0.05  # seconds between bytes: far below the per-read timeout of the test
_GUARD = 30.0  # seconds after which the test fails instead of hanging


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for index in range(len(data)):
        writer.write(data[index : index + 1])
        await writer.drain()
        await asyncio.sleep(_TRICKLE_PAUSE)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            _method, target, _ = head.split(" ", 2)
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            if target.startswith("/auth"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nX-Auth-Token: t\r\nX-Storage-Url: "
                    + f"http://127.0.0.1:{port}/v1/AUTH_test".encode()
                    + b"\r\nContent-Length: 0\r\n\r\n"
                )
            elif target.endswith("/slow-headers"):
                await _trickle(writer, b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 100_000)
            elif target.endswith("/slow-body"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                await _trickle(writer, b"y" * 100_000)
            else:  # the container PUT at the first login
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()


@contextlib.asynccontextmanager
async def _trickling_swift() -> AsyncIterator[int]:
    port = 0
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]  # always inside a task here
        try:
            await _serve(reader, writer, port)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def _driver(port: int) -> SwiftDriver:
    return SwiftDriver(
        SwiftSettings(
            authurl=f"http://127.0.0.1:{port}/auth/v1.0",
            username="test:tester",
            password="testing",
            container="c",
            timeout=1,
            readtimeout=5,
        )
    )


async def test_trickled_headers_end_at_the_total_timeout() -> None:
    async with _trickling_swift() as port:
        driver = _driver(port)
        try:
            async with asyncio.timeout(_GUARD):
                with pytest.raises(StorageUnavailableError, match="storage.swift.timeout"):
                    await driver.stat("slow-headers")
        finally:
            await driver.aclose()


async def test_a_trickled_blob_read_ends_at_the_timeout_per_mib() -> None:
    async with _trickling_swift() as port:
        driver = _driver(port)
        try:
            async with asyncio.timeout(_GUARD):
                with pytest.raises(StorageUnavailableError, match="storage.swift.timeout"):
                    async for _ in driver.read("slow-body"):
                        pass
        finally:
            await driver.aclose()


async def test_headers_that_stop_coming_end_at_the_read_timeout() -> None:
    async with _trickling_swift() as port:
        driver = SwiftDriver(
            SwiftSettings(
                authurl=f"http://127.0.0.1:{port}/auth/v1.0",
                username="test:tester",
                password="testing",
                container="c",
                timeout=60,
                readtimeout=0.01,  # shorter than the pause between two bytes
            )
        )
        try:
            async with asyncio.timeout(_GUARD):
                with pytest.raises(StorageUnavailableError, match="storage.swift.readtimeout"):
                    await driver.stat("slow-headers")
        finally:
            await driver.aclose()
