"""Measure the candidate client libraries on the project's real Ceph RGW and Swift SAIO.

This is how the S3 and Swift client libraries of the drivers were chosen (figures in
``docs/storage.md``). Not a test (pytest collects only ``test_*.py``); run it by hand with
an interpreter that has the candidates installed, kept out of the project's venv::

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install "aiobotocore[boto3]" obstore python-swiftclient httpx anyio
    eval "$(tests/services/ceph-rgw.sh up)"; tests/services/swift-saio.sh up >/dev/null
    /tmp/bench-venv/bin/python tests/storage/bench_clients.py [rounds]

Every client does the same work, the shape of a registry's storage traffic: a 60 MiB
multipart upload in 5 MiB parts (S3) or 5 MiB segments (Swift), a streamed 60 MiB download
in 1 MiB reads, then 200 PUTs of 4 KiB and 200 HEADs with 50 in flight, and 100 HEADs one
at a time (the latency a single client sees). Besides wall-clock rates it prints the CPU
seconds the Python process spent (all its threads), since the registry shares two cores with
everything else. Each figure is the median of ``rounds`` (default 3).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread

HERE = Path(__file__).resolve().parents[1] / "services"
MIB = 1024 * 1024
PART = 5 * MIB
BIG = 12 * PART
SMALL = 4096
COUNT = 200
INFLIGHT = 50

Row = dict[str, float]


def service_env(script: str) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a running service (``<script> env``)."""
    out = subprocess.run([str(HERE / script), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


async def _gather_limited(factory: Callable[[int], Awaitable[Any]]) -> None:
    limit = asyncio.Semaphore(INFLIGHT)

    async def one(i: int) -> None:
        async with limit:
            await factory(i)

    await asyncio.gather(*(one(i) for i in range(COUNT)))


async def _phases(
    upload: Callable[[bytes], Awaitable[None]],
    download: Callable[[], Awaitable[int]],
    put_small: Callable[[int, bytes], Awaitable[None]],
    head_small: Callable[[int], Awaitable[None]],
) -> Row:
    """Run the four phases; rates in MB/s or operations/s, CPU in seconds per phase."""
    row: Row = {}
    data = os.urandom(BIG)
    small = os.urandom(SMALL)

    async def one_by_one() -> None:
        for i in range(COUNT // 2):
            await head_small(i)

    for name, work, amount in (
        ("upload", lambda: upload(data), BIG / 1e6),
        ("download", download, BIG / 1e6),
        ("put4k", lambda: _gather_limited(lambda i: put_small(i, small)), COUNT),
        ("head", lambda: _gather_limited(head_small), COUNT),
        ("head1", one_by_one, COUNT // 2),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        await work()
        elapsed = time.perf_counter() - wall
        if name == "head1":
            row["HEAD latency ms (1 in flight)"] = elapsed / amount * 1000
        else:
            unit = "MB/s" if name in ("upload", "download") else "/s"
            row[f"{name} {unit}"] = amount / elapsed
            row[f"{name} CPU s"] = time.process_time() - cpu
    return row


# -- S3 ------------------------------------------------------------------------------------------
def _botocore_config() -> Any:
    from botocore.config import Config  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=64,
    )


def _s3_kwargs(env: dict[str, str]) -> dict[str, Any]:
    return {
        "endpoint_url": env["S3_ENDPOINT"],
        "aws_access_key_id": env["S3_ACCESS_KEY"],
        "aws_secret_access_key": env["S3_SECRET_KEY"],
        "region_name": env["S3_REGION"],
    }


async def bench_boto3_threads(env: dict[str, str], bucket: str) -> Row:
    """boto3's synchronous client, each call in anyio's worker threads (what the s3 driver does)."""
    import boto3  # type: ignore[import-not-found,import-untyped,unused-ignore]

    client = boto3.client("s3", config=_botocore_config(), **_s3_kwargs(env))

    def call(fn: Callable[..., Any], **kwargs: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(partial(fn, **kwargs))

    client.create_bucket(Bucket=bucket)
    key = f"big-{uuid.uuid4().hex}"

    async def upload(data: bytes) -> None:
        upload_id = (await call(client.create_multipart_upload, Bucket=bucket, Key=key))["UploadId"]
        parts = []
        for n, start in enumerate(range(0, len(data), PART), 1):
            answer = await call(
                client.upload_part,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=n,
                Body=data[start : start + PART],
            )
            parts.append({"PartNumber": n, "ETag": answer["ETag"]})
        await call(
            client.complete_multipart_upload,
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def download() -> int:
        body = (await call(client.get_object, Bucket=bucket, Key=key))["Body"]
        total = 0
        while chunk := await anyio.to_thread.run_sync(body.read, MIB):
            total += len(chunk)
        return total

    async def put_small(i: int, data: bytes) -> None:
        await call(client.put_object, Bucket=bucket, Key=f"s/{i}", Body=data)

    async def head_small(i: int) -> None:
        await call(client.head_object, Bucket=bucket, Key=f"s/{i}")

    try:
        return await _phases(upload, download, put_small, head_small)
    finally:
        client.close()


async def bench_aiobotocore(env: dict[str, str], bucket: str) -> Row:
    """aiobotocore: botocore's models and signing on aiohttp."""
    from aiobotocore.session import get_session  # type: ignore[import-not-found,import-untyped,unused-ignore]

    async with get_session().create_client("s3", config=_botocore_config(), **_s3_kwargs(env)) as client:
        await client.create_bucket(Bucket=bucket)
        key = f"big-{uuid.uuid4().hex}"

        async def upload(data: bytes) -> None:
            upload_id = (await client.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
            parts = []
            for n, start in enumerate(range(0, len(data), PART), 1):
                answer = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data[start : start + PART]
                )
                parts.append({"PartNumber": n, "ETag": answer["ETag"]})
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )

        async def download() -> int:
            response = await client.get_object(Bucket=bucket, Key=key)
            total = 0
            async with response["Body"] as body:
                while chunk := await body.read(MIB):
                    total += len(chunk)
            return total

        async def put_small(i: int, data: bytes) -> None:
            await client.put_object(Bucket=bucket, Key=f"s/{i}", Body=data)

        async def head_small(i: int) -> None:
            await client.head_object(Bucket=bucket, Key=f"s/{i}")

        return await _phases(upload, download, put_small, head_small)


async def bench_obstore(env: dict[str, str], bucket: str) -> Row:
    """obstore (Rust object_store). It has no UploadPart-by-upload-id API, so it can only stream
    one upload from one process: measured for reference, unusable for resumable appends."""
    import boto3  # type: ignore[import-not-found,import-untyped,unused-ignore]
    import obstore  # type: ignore[import-not-found,import-untyped,unused-ignore]
    from obstore.store import S3Store  # type: ignore[import-not-found,import-untyped,unused-ignore]

    boto3.client("s3", config=_botocore_config(), **_s3_kwargs(env)).create_bucket(Bucket=bucket)
    store = S3Store(
        bucket,
        endpoint=env["S3_ENDPOINT"],
        access_key_id=env["S3_ACCESS_KEY"],
        secret_access_key=env["S3_SECRET_KEY"],
        region=env["S3_REGION"],
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    key = f"big-{uuid.uuid4().hex}"

    async def upload(data: bytes) -> None:
        await obstore.put_async(store, key, data, chunk_size=PART, use_multipart=True)

    async def download() -> int:
        result = await obstore.get_async(store, key)
        total = 0
        async for chunk in result.stream(min_chunk_size=MIB):
            total += len(chunk)
        return total

    async def put_small(i: int, data: bytes) -> None:
        await obstore.put_async(store, f"s/{i}", data)

    async def head_small(i: int) -> None:
        await obstore.head_async(store, f"s/{i}")

    return await _phases(upload, download, put_small, head_small)


# -- Swift ---------------------------------------------------------------------------------------
def _swift_auth(env: dict[str, str]) -> tuple[str, str]:
    import httpx  # type: ignore[import-not-found,import-untyped,unused-ignore]

    answer = httpx.get(
        env["SWIFT_AUTH_URL"], headers={"X-Auth-User": env["SWIFT_USER"], "X-Auth-Key": env["SWIFT_KEY"]}
    )
    return answer.headers["x-storage-url"], answer.headers["x-auth-token"]


async def bench_httpx_swift(env: dict[str, str], container: str) -> Row:
    """httpx's AsyncClient on the Swift API directly (what the swift driver does)."""
    import httpx  # type: ignore[import-not-found,import-untyped,unused-ignore]

    url, token = _swift_auth(env)
    base = f"{url}/{container}"
    async with httpx.AsyncClient(
        headers={"X-Auth-Token": token}, limits=httpx.Limits(max_connections=64), timeout=60
    ) as http:
        (await http.put(base)).raise_for_status()
        key = f"big-{uuid.uuid4().hex}"

        async def upload(data: bytes) -> None:
            for n, start in enumerate(range(0, len(data), PART)):
                (
                    await http.put(f"{base}/{key}.seg/{n:08d}", content=data[start : start + PART])
                ).raise_for_status()
            manifest = f"{container}/{key}.seg/"
            (
                await http.put(f"{base}/{key}", headers={"X-Object-Manifest": manifest}, content=b"")
            ).raise_for_status()

        async def download() -> int:
            total = 0
            async with http.stream("GET", f"{base}/{key}") as response:
                async for chunk in response.aiter_bytes(MIB):
                    total += len(chunk)
            return total

        async def put_small(i: int, data: bytes) -> None:
            (await http.put(f"{base}/s/{i}", content=data)).raise_for_status()

        async def head_small(i: int) -> None:
            (await http.head(f"{base}/s/{i}")).raise_for_status()

        return await _phases(upload, download, put_small, head_small)


async def bench_aiohttp_swift(env: dict[str, str], container: str) -> Row:
    """aiohttp on the Swift API directly (the HTTP client under aiobotocore)."""
    import aiohttp  # type: ignore[import-not-found,import-untyped,unused-ignore]

    url, token = _swift_auth(env)
    base = f"{url}/{container}"
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(headers={"X-Auth-Token": token}, connector=connector) as http:
        async with http.put(base) as answer:
            answer.raise_for_status()
        key = f"big-{uuid.uuid4().hex}"

        async def upload(data: bytes) -> None:
            for n, start in enumerate(range(0, len(data), PART)):
                async with http.put(f"{base}/{key}.seg/{n:08d}", data=data[start : start + PART]) as answer:
                    answer.raise_for_status()
            manifest = f"{container}/{key}.seg/"
            async with http.put(f"{base}/{key}", headers={"X-Object-Manifest": manifest}, data=b"") as answer:
                answer.raise_for_status()

        async def download() -> int:
            total = 0
            async with http.get(f"{base}/{key}") as response:
                async for chunk in response.content.iter_chunked(MIB):
                    total += len(chunk)
            return total

        async def put_small(i: int, data: bytes) -> None:
            async with http.put(f"{base}/s/{i}", data=data) as answer:
                answer.raise_for_status()

        async def head_small(i: int) -> None:
            async with http.head(f"{base}/s/{i}") as answer:
                answer.raise_for_status()

        return await _phases(upload, download, put_small, head_small)


async def bench_swiftclient_threads(env: dict[str, str], container: str) -> Row:
    """python-swiftclient (synchronous, requests) in worker threads, one Connection per thread."""
    import threading

    import swiftclient  # type: ignore[import-not-found,import-untyped,unused-ignore]

    local = threading.local()

    def conn() -> Any:
        if not hasattr(local, "conn"):
            local.conn = swiftclient.Connection(
                authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"], key=env["SWIFT_KEY"], auth_version="1"
            )
        return local.conn

    def run(method: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(lambda: getattr(conn(), method)(*args, **kwargs))

    await run("put_container", container)
    key = f"big-{uuid.uuid4().hex}"

    async def upload(data: bytes) -> None:
        for n, start in enumerate(range(0, len(data), PART)):
            await run("put_object", container, f"{key}.seg/{n:08d}", data[start : start + PART])
        await run("put_object", container, key, b"", headers={"X-Object-Manifest": f"{container}/{key}.seg/"})

    async def download() -> int:
        _, body = await run("get_object", container, key, resp_chunk_size=MIB)
        total = 0
        iterator = iter(body)
        while chunk := await anyio.to_thread.run_sync(next, iterator, b""):
            total += len(chunk)
        return total

    async def put_small(i: int, data: bytes) -> None:
        await run("put_object", container, f"s/{i}", data)

    async def head_small(i: int) -> None:
        await run("head_object", container, f"s/{i}")

    return await _phases(upload, download, put_small, head_small)


CANDIDATES: dict[str, tuple[str, Callable[[dict[str, str], str], Coroutine[Any, Any, Row]]]] = {
    "RGW S3, boto3 in threads": ("ceph-rgw.sh", bench_boto3_threads),
    "RGW S3, aiobotocore": ("ceph-rgw.sh", bench_aiobotocore),
    "RGW S3, obstore": ("ceph-rgw.sh", bench_obstore),
    "RGW Swift, httpx": ("ceph-rgw.sh", bench_httpx_swift),
    "RGW Swift, aiohttp": ("ceph-rgw.sh", bench_aiohttp_swift),
    "RGW Swift, swiftclient in threads": ("ceph-rgw.sh", bench_swiftclient_threads),
    "Swift, httpx": ("swift-saio.sh", bench_httpx_swift),
    "Swift, aiohttp": ("swift-saio.sh", bench_aiohttp_swift),
    "Swift, swiftclient in threads": ("swift-saio.sh", bench_swiftclient_threads),
}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    envs = {script: service_env(script) for script in {s for s, _ in CANDIDATES.values()}}
    versions = []
    for module in ("boto3", "aiobotocore", "obstore", "swiftclient", "httpx", "aiohttp"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            versions.append(f"{module} ?")
    print("#", ", ".join(versions), f"; {os.cpu_count()} CPUs; median of {rounds}")
    header = False
    for label, (script, bench) in CANDIDATES.items():
        rows: list[Row] = [
            asyncio.run(bench(envs[script], f"bench-{uuid.uuid4().hex[:10]}")) for _ in range(rounds)
        ]
        medians = {name: statistics.median(row[name] for row in rows) for name in rows[0]}
        if not header:
            print("| client | " + " | ".join(medians) + " |", flush=True)
            header = True
        print(f"| {label} | " + " | ".join(f"{value:.2f}" for value in medians.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
