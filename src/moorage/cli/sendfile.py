"""uvicorn's httptools protocol with the ASGI ``http.response.zerocopysend`` extension (``sendfile(2)``).

Why: a blob ``GET`` streamed through Python copies every byte four times (disk → Python
bytes → the transport's buffer → the socket) and holds the event loop for each chunk; on the
2-core machine that made Moorage's filesystem blob downloads slower than Distribution's
(0.85x). With ``sendfile`` the kernel moves page-cache pages to the socket and Python only
waits. Neither uvicorn, hypercorn nor granian implements ``zerocopysend``; granian's
``pathsend`` sends whole files only, while blob pulls need byte ranges too (see
docs/architecture.md "Performance choices" for the server measurements).

The extension (https://asgi.readthedocs.io/en/latest/extensions.html#zero-copy-send) is offered
in ``scope["extensions"]`` on plain-TCP connections only: with TLS the bytes must go through
the SSL object, and the application streams as before. A ``zerocopysend`` message carries a
file with an OS descriptor, an ``offset`` (default: the file's position, which then advances)
and a ``count`` (default: to the end); it must follow a ``http.response.start`` with a
``Content-Length`` and may be followed by more (``more_body``).

How it sends: the response headers go through the transport as usual and are flushed first;
then ``os.sendfile`` runs in a worker thread (a read of pages not in the page cache blocks
on the disk, which must never stall the event loop) on a duplicate of the socket's
descriptor, which is non-blocking: the thread sends what the socket buffer takes, waits up to
20 ms for it to drain, and goes on. When it stays full longer (a slow client: back-pressure)
the thread returns and the event loop waits for the socket to become writable, holding no thread. The duplicate descriptor means a socket closed
by the transport meanwhile is never confused with a new file that reuses its number. A client
that hangs up ends the transfer (``EPIPE``/``ECONNRESET``, or the transport's
``connection_lost`` wakes the wait) and the connection is closed; a file shorter than the
announced count fails the request (the connection is closed, as uvicorn does for a short body).
``HEAD`` answers send no bytes. Keep-alive and pipelining behave as for any other response.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
from typing import Any

import anyio.to_thread
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ["ZEROCOPYSEND", "SendfileCycle", "SendfileHttpToolsProtocol"]

ZEROCOPYSEND = "http.response.zerocopysend"

#: At most this much per worker-thread call: bounds how long one thread stays busy with one client.
_CALL_BYTES = 64 << 20
#: How long a worker thread waits for a full socket before handing the wait to the event loop.
_SPIN_MS = 20
#: The peer is gone: stop sending and close the connection.
_HANG_UPS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED})


def _send_some(out: int, fd: int, offset: int, count: int) -> tuple[int, bool]:
    """In a worker thread: ``sendfile`` up to ``count`` bytes, waiting briefly for the socket between calls.

    Returns the bytes sent and whether the socket stayed full for :data:`_SPIN` seconds (a slow
    client: the event loop then waits for it, and no thread is held). Fewer bytes without
    ``full`` means the file ended. Waiting here rather than on the loop spares a fast client a
    loop round trip and a thread hop per socket buffer (~2 MiB): on loopback that was the
    difference between 1.5 and 2+ GB/s on one connection.
    """
    sent = 0
    poller: select.poll | None = None
    while sent < count:
        try:
            moved = os.sendfile(out, fd, offset + sent, count - sent)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(out, select.POLLOUT)
            if not poller.poll(_SPIN_MS):
                return sent, True
            continue
        if moved == 0:
            break
        sent += moved
    return sent, False


class SendfileCycle(RequestResponseCycle):
    """uvicorn's request/response cycle that also accepts ``http.response.zerocopysend``."""

    #: Set while the transfer waits for the socket to drain; ``connection_lost`` resolves it.
    _waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """The connection was lost: end a wait for writability now (the next send fails fast)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def send(self, message: Any) -> None:
        if message["type"] != ZEROCOPYSEND:
            await super().send(message)
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{ZEROCOPYSEND}' outside a response body.")
        if self.chunked_encoding:
            raise RuntimeError(f"'{ZEROCOPYSEND}' needs a response with a Content-Length.")
        fd = message["file"].fileno()
        offset = message.get("offset")
        positioned = offset is None
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = max(os.fstat(fd).st_size - offset, 0)
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        else:
            if count > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            sent = await self._sendfile(fd, offset, count)
            if self.disconnected:
                return
            if sent < count:
                raise RuntimeError(f"File ended after {sent} of {count} bytes to send")
            self.expected_content_length -= count
            if positioned:
                os.lseek(fd, offset + count, os.SEEK_SET)
        if not message.get("more_body", False):
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    async def _sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``fd`` from ``offset``; fewer when the file ends or the client leaves."""
        loop = asyncio.get_running_loop()
        # The headers were written to the transport; bytes sent around it must come after them.
        # Only when the socket could not take the headers at once (a client that reads nothing).
        delay = 0.001
        while self.transport.get_write_buffer_size() and not self.disconnected:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        sock = self.transport.get_extra_info("socket")
        if self.disconnected or sock is None:
            return 0
        out = os.dup(sock.fileno())
        sent = 0
        try:
            while sent < count and not self.disconnected:
                asked = min(count - sent, _CALL_BYTES)
                try:
                    moved, full = await anyio.to_thread.run_sync(_send_some, out, fd, offset + sent, asked)
                except OSError as exc:
                    if exc.errno not in _HANG_UPS:
                        raise
                    self._hung_up()
                    break
                sent += moved
                if full:
                    await self._writable(loop, out)
                elif moved < asked:
                    break  # end of file
        finally:
            os.close(out)
        return sent

    async def _writable(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        loop.add_writer(fd, self.wake)
        try:
            await waiter
        finally:
            loop.remove_writer(fd)
            self._waiter = None

    def _hung_up(self) -> None:
        self.disconnected = True
        self.keep_alive = False
        self.transport.close()


class SendfileHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol offering ``http.response.zerocopysend`` on plain-TCP connections.

    Pass the class as ``uvicorn.run(http=...)``; everything else is uvicorn's.
    """

    _zero_copy = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._zero_copy = self.scheme == "http" and transport.get_extra_info("socket") is not None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._zero_copy:
            self.scope["extensions"] = {ZEROCOPYSEND: {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # uvicorn builds its cycle inside on_headers_complete and starts the ASGI task that calls
        # `cycle.send` only on the next loop iteration: re-classing the fresh cycle here gives it
        # the extension without copying uvicorn's 50-line method (SendfileCycle adds no state).
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = SendfileCycle

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if isinstance(self.cycle, SendfileCycle):
            self.cycle.wake()
