"""Sending part of an open local file as a response body, without copying it through Python when the server can.

Blob ``GET`` on the filesystem driver is the registry's heaviest read (a 100 MiB layer per
pull). :class:`FileSliceResponse` hands the open file to the ASGI server:

* ``http.response.zerocopysend`` (``moorage serve``'s uvicorn protocol, ``moorage.cli.sendfile``):
  the server sends ``count`` bytes from ``offset`` with ``sendfile(2)``, whole blobs and ranges;
* ``http.response.pathsend`` (granian, and other servers implementing it): whole files only, by
  path; a range is streamed;
* otherwise (TLS, other servers, the test client) the bytes are read in worker threads and
  streamed, like any other body.

The file is opened before the response starts (by the blob service), so a blob missing from
storage is still a clean ``BLOB_UNKNOWN``; the response closes it when done, whatever happened.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import BinaryIO

import anyio.to_thread
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["FileSliceResponse"]

ZEROCOPYSEND = "http.response.zerocopysend"
PATHSEND = "http.response.pathsend"
#: Chunk size when streaming (the server offers neither extension): the filesystem driver's read size.
_CHUNK = 1 << 20


class FileSliceResponse(Response):
    """``count`` bytes of ``file`` from ``offset`` as the body; the headers (``Content-Length`` included) are the caller's."""

    def __init__(
        self,
        file: BinaryIO,
        offset: int,
        count: int,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            extensions = scope.get("extensions") or {}
            path = self._whole_file() if PATHSEND in extensions else None
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif ZEROCOPYSEND in extensions:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": ZEROCOPYSEND, "file": self.file, "offset": self.offset, "count": self.count,
                            "more_body": False})
            elif path is not None:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": PATHSEND, "path": path})
            else:
                # StreamingResponse stops reading when the client disconnects (it listens for it).
                stream = StreamingResponse(self._chunks(), status_code=self.status_code)
                stream.raw_headers = self.raw_headers
                await stream(scope, receive, send)
        finally:
            self.file.close()

    def _whole_file(self) -> str | None:
        """The file's absolute path when the body is the whole file (what ``pathsend`` can send)."""
        name = getattr(self.file, "name", None)
        if self.offset or not isinstance(name, str) or not os.path.isabs(name):
            return None
        return name if os.fstat(self.file.fileno()).st_size == self.count else None

    async def _chunks(self) -> AsyncIterator[bytes]:
        fd = self.file.fileno()
        position, end = self.offset, self.offset + self.count
        while position < end:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(_CHUNK, end - position), position)
            if not chunk:
                raise RuntimeError(f"file ended after {position - self.offset} of {self.count} bytes")
            position += len(chunk)
            yield chunk
