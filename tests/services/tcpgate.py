"""A TCP forwarder we can open and close: a storage endpoint of our own to take down.

The object stores of the suite are shared (stopping RGW would break every other test), so a
test that needs "site A's storage is down" points site A at a gate in front of RGW and closes
the gate: new connections are refused and open ones are cut, as when the endpoint dies. The gate
runs its own event loop in a thread, so blocking clients (boto3) and the test's loop both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

__all__ = ["TcpGate"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


class TcpGate:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` while open."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(client_writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            self._writers.discard(client_writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
        finally:
            self._writers -= {client_writer, up_writer}

    def open(self) -> None:
        """Start forwarding (again) on the same port."""
        if self._thread is not None:
            return
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"tcpgate-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the TCP gate on port {self.port} did not start")

    def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._writers.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()
            await asyncio.sleep(0)  # let the aborted transports finish closing
            loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), loop)
        thread.join(10)
        self._loop = self._thread = self._server = None
