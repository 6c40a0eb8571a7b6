"""A blob upload to a remote registry survives a cut connection: resumed where it stands, or restarted.

Between the adapter and a real registry sits a TCP relay on real sockets that closes the first
``PATCH`` connection after 1 MiB of its body. Against ``moorage serve`` the adapter asks the
upload's status (``GET`` → ``Range``) and sends the rest from there; against Debian's
docker-registry, whose upload URL pins the offset in a signed ``_state``, the status is refused
and the adapter starts a new upload. Either way the blob arrives whole, with its digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from moorage.replication import remote
from moorage.replication.remote import RemoteAdapter
from moorage.upstream.client import Connection, UpstreamClient
from tests.conftest import skip_or_fail
from tests.e2e.servers import RegistryProcess, ServerStartError, start_moorage, start_reference

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["moorage", "reference"])
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    workdir = tmp_path_factory.mktemp("resume")
    try:
        server = start_moorage(workdir, label="resume-moorage") if request.param == "moorage" else \
            start_reference(workdir, label="resume-reference")
    except ServerStartError as exc:
        skip_or_fail(str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


class CuttingRelay:
    """Relays TCP to ``target``; the first connection that sent a PATCH is closed ``cut_after`` bytes after it."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target = target
        self.cut_after = cut_after
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upward() -> None:
            sent, cutting = 0, False
            while data := await reader.read(65536):
                if not cutting and self.cuts == 0 and data.startswith(b"PATCH "):
                    cutting = True
                if cutting:
                    sent += len(data)
                    if sent > self.cut_after:
                        self.cuts += 1
                        up_writer.close()
                        writer.close()
                        return
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(upward(), downward(), return_exceptions=True)


async def test_a_cut_upload_resumes_from_the_destinations_range(registry: RegistryProcess,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "CHUNK", 2 * MIB)  # three PATCHes; the second one is cut
    data = os.urandom(6 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    opened: list[int] = []

    def source(offset: int) -> AsyncIterator[bytes]:
        opened.append(offset)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(offset, len(data), 256 * 1024):
                yield data[start:start + 256 * 1024]
                await asyncio.sleep(0)

        return chunks()

    host, port = registry.host.split(":")
    relay = CuttingRelay((host, int(port)), cut_after=3 * MIB)
    url = await relay.start()
    client = UpstreamClient(Connection(url), timeout=30)
    try:
        await RemoteAdapter(client).write_blob("resume/app", digest, len(data), source)
    finally:
        await client.aclose()
        await relay.stop()
    assert relay.cuts == 1
    if registry.is_reference:  # its _state pins the offset: a new upload from byte 0
        assert opened == [0, 0], opened
    else:  # resumed after the first chunk, which the destination had acknowledged
        assert opened == [0, 2 * MIB], opened
    async with httpx.AsyncClient(base_url=registry.url) as http:
        got = await http.get(f"/v2/resume/app/blobs/{digest}")
    assert got.status_code == 200 and got.content == data
