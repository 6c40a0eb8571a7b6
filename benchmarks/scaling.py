"""Throughput per node against cores: ``moorage serve`` with 1 and 2 workers, 1 and 3 nodes behind nginx.

Run by hand from the repository root (needs docker-registry, wrk, nginx, PostgreSQL and Redis as
for the tests):

    .venv/bin/python benchmarks/scaling.py                 # 10 s per measurement
    .venv/bin/python benchmarks/scaling.py --quick         # 4 s per measurement, 32 MiB blob

Five set-ups, one after the other, each measured with the same three workloads:

* ``reference``: Debian's ``docker-registry`` (Distribution 2.8.2), filesystem, for context;
* ``1 worker`` / ``2 workers``: one ``moorage serve --workers N`` on the embedded default
  (SQLite + filesystem), as a single machine runs it;
* ``1 node`` / ``3 nodes``: ``moorage serve`` nodes of one worker each on a throwaway PostgreSQL
  database, Redis (127.0.0.1:6379, a key prefix of their own) and one shared data dir, behind
  Debian's nginx configured from ``deploy/nginx/moorage.conf`` (only the first node in the
  1-node upstream, all three in the other).

Workloads: blob GET (one ``--blob-mib`` MiB blob, ``--connections`` connections, wrk, MB/s of
payload), manifest GET by tag (wrk, ``--manifest-connections``, requests/s) and pushes
(``--push-clients`` asyncio clients each pushing distinct ``--push-mib`` MiB blobs as
``POST`` + ``PUT ?digest=`` with the body, MB/s). Next to each rate the servers' CPU (their
process trees, from /proc; nginx not included) per operation: the steadier figure on a shared
machine. The ratios 2 workers / 1 worker and 3 nodes / 1 node are the scaling; on one machine the
load generator, nginx and PostgreSQL share the cores with the servers, so neither can reach the
number of processes (on 2 cores, 2 workers can at best double one).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ha_throughput import MANIFEST_TYPE
from benchmarks.procs import tree_cpu_seconds
from benchmarks.results import ResultRow, print_rows, row, write_rows
from tests.conftest import DEFAULT_POSTGRES_ADMIN_URL
from tests.e2e.servers import RegistryProcess, start_moorage, start_reference, throwaway_postgres_database
from tests.ha.conftest import NGINX_TEMPLATE, start_nodes
from tests.ha.services import start_nginx

REPO = "bench/scaling"
MIB = 1 << 20
SETUPS = ("reference", "1 worker", "2 workers", "1 node", "3 nodes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--blob-mib", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8, help="blob GET connections")
    parser.add_argument("--manifest-connections", type=int, default=32)
    parser.add_argument("--push-clients", type=int, default=8)
    parser.add_argument("--push-mib", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="4 s per measurement and a 32 MiB blob")
    parser.add_argument("--only", default="", help=f"comma-separated set-ups among: {', '.join(SETUPS)}")
    parser.add_argument("--postgres", default=os.environ.get("MOORAGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL))
    parser.add_argument("--redis", default=os.environ.get("MOORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.blob_mib = 4, 32
    return args


@dataclass
class Figures:
    """One set-up's three rates and the servers' CPU seconds per operation."""

    blob_mbps: float
    blob_cpu_per_gib: float
    manifest_rps: float
    manifest_cpu_ms: float
    push_mbps: float
    push_cpu_per_gib: float


UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def wrk(url: str, seconds: float, connections: int, accept: str) -> tuple[float, float]:
    """Run wrk on ``url``: (requests/s, bytes/s). Any non-2xx answer or socket error is a failure."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "120s",
         "-H", f"Accept: {accept}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    if rps is None or transfer is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk against {url} failed:\n{out}")
    return float(rps[1]), float(transfer[1]) * UNITS[transfer[2]]


async def push_load(base: str, seconds: float, clients: int, size: int, block: bytes) -> int:
    """Distinct blobs pushed as ``POST`` then ``PUT ?digest=`` with the body, for ``seconds``: bytes pushed."""
    stop = time.perf_counter() + seconds
    pushed = [0]
    run_id = uuid.uuid4().int & 0xFFFFFFFF

    async def client(http: aiohttp.ClientSession, number: int) -> None:
        count = 0
        while time.perf_counter() < stop:
            body = struct.pack(">IIQ", run_id, number, count) + block[16:size]
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            async with http.post(f"{base}/v2/{REPO}/blobs/uploads/") as opened:
                if opened.status != 202:
                    raise RuntimeError(f"POST upload: {opened.status} {await opened.text()}")
                location = opened.headers["Location"]
            if location.startswith("/"):
                location = base + location
            separator = "&" if "?" in location else "?"
            async with http.put(f"{location}{separator}digest={digest}", data=body,
                                headers={"Content-Type": "application/octet-stream"}) as put:
                if put.status != 201:
                    raise RuntimeError(f"PUT upload: {put.status} {await put.text()}")
            pushed[0] += size
            count += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        await asyncio.gather(*(client(http, n) for n in range(clients)))
    return pushed[0]


def push_image(base: str, layer: bytes) -> None:
    """A config, one layer and the manifest tagged ``bench`` (OCI media types: Distribution checks them)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    descriptors = []
    with httpx.Client(timeout=300) as http:
        for blob, media_type in [(config, "application/vnd.oci.image.config.v1+json"),
                                 (layer, "application/vnd.oci.image.layer.v1.tar")]:
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            opened = http.post(f"{base}/v2/{REPO}/blobs/uploads/")
            opened.raise_for_status()
            location = opened.headers["Location"]
            location = base + location if location.startswith("/") else location
            separator = "&" if "?" in location else "?"  # keep Distribution's _state parameter
            http.put(f"{location}{separator}digest={digest}", content=blob).raise_for_status()
            descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": descriptors[0], "layers": descriptors[1:]}
        answer = http.put(f"{base}/v2/{REPO}/manifests/bench", content=json.dumps(manifest).encode(),
                          headers={"Content-Type": MANIFEST_TYPE})
        if answer.status_code != 201:
            raise RuntimeError(f"PUT manifest: {answer.status_code} {answer.text}")


def cpu_of(roots: list[int]) -> float:
    return sum(tree_cpu_seconds(pid) for pid in roots)


def measure(base: str, roots: list[int], args: argparse.Namespace, block: bytes) -> Figures:
    """Push the test image through ``base``, then the three workloads, each with the servers' CPU."""
    layer = block[: args.blob_mib * MIB] if args.blob_mib * MIB <= len(block) else os.urandom(args.blob_mib * MIB)
    layer = hashlib.sha256(base.encode()).digest() + layer[32:]  # a blob of its own per set-up
    push_image(base, layer)
    blob_url = f"{base}/v2/{REPO}/blobs/sha256:{hashlib.sha256(layer).hexdigest()}"
    manifest_url = f"{base}/v2/{REPO}/manifests/bench"
    wrk(manifest_url, 1, 4, MANIFEST_TYPE)  # warm caches and connections

    cpu = cpu_of(roots)
    _, blob_bps = wrk(blob_url, args.seconds, args.connections, "*/*")
    blob_cpu = cpu_of(roots) - cpu
    cpu = cpu_of(roots)
    rps, _ = wrk(manifest_url, args.seconds, args.manifest_connections, MANIFEST_TYPE)
    manifest_cpu = cpu_of(roots) - cpu
    cpu, started = cpu_of(roots), time.perf_counter()
    pushed = asyncio.run(push_load(base, args.seconds, args.push_clients, args.push_mib * MIB, block))
    push_seconds = time.perf_counter() - started
    push_cpu = cpu_of(roots) - cpu
    blob_gib = blob_bps * args.seconds / (1 << 30)
    return Figures(
        blob_mbps=blob_bps / 1e6,
        blob_cpu_per_gib=blob_cpu / blob_gib if blob_gib else 0.0,
        manifest_rps=rps,
        manifest_cpu_ms=manifest_cpu * 1000 / (rps * args.seconds) if rps else 0.0,
        push_mbps=pushed / 1e6 / push_seconds,
        push_cpu_per_gib=push_cpu / (pushed / (1 << 30)) if pushed else 0.0,
    )


@contextmanager
def single(workdir: Path, kind: str, workers: int) -> Iterator[tuple[str, list[int]]]:
    """The reference, or one ``moorage serve --workers N`` on SQLite + filesystem."""
    place = workdir / f"{kind}-{workers}"
    place.mkdir()
    server: RegistryProcess
    if kind == "reference":
        server = start_reference(place)
    else:
        server = start_moorage(place, extra_env={"MOORAGE_HTTP__WORKERS": str(workers),
                                                 "MOORAGE_LOG__ACCESS_LOG": "false"})
    try:
        yield server.url, [server.process.pid]
    finally:
        server.stop()
        shutil.rmtree(place, ignore_errors=True)


@contextmanager
def cluster(workdir: Path, args: argparse.Namespace, count: int) -> Iterator[tuple[str, list[int]]]:
    """``count`` one-worker nodes on a throwaway PostgreSQL database and Redis, behind nginx."""
    place = workdir / f"nodes-{count}"
    env = {
        "MOORAGE_LOG__ACCESS_LOG": "false",
        "MOORAGE_REDIS_URL": args.redis,
        "MOORAGE_REDIS__KEY_PREFIX": f"scalingbench{uuid.uuid4().hex[:8]}",
    }
    with throwaway_postgres_database(args.postgres, prefix="moorage_scaling") as url:
        nodes = start_nodes(place, url, place / "shared", count, env)
        proxy = None
        try:
            proxy = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], place / "nginx")
            yield proxy.http_url, [n.process.pid for n in nodes]
        finally:
            if proxy is not None:
                proxy.stop()
            for node in nodes:
                node.stop()
            shutil.rmtree(place, ignore_errors=True)


def rows_for(results: dict[str, Figures], args: argparse.Namespace) -> list[ResultRow]:
    """Each Moorage set-up against the reference, then the two scaling ratios."""
    ref = results.get("reference")
    blob = f"blob GET {args.blob_mib} MiB, {args.connections} conns"
    manifest = f"manifest GET, {args.manifest_connections} conns"
    push = f"push {args.push_mib} MiB blobs, {args.push_clients} clients"
    metrics: list[tuple[str, str, Callable[[Figures], float], bool]] = [
        (blob, "MB/s", lambda f: f.blob_mbps, True),
        (f"{blob}: server CPU", "s/GiB", lambda f: f.blob_cpu_per_gib, False),
        (manifest, "req/s", lambda f: f.manifest_rps, True),
        (f"{manifest}: server CPU", "ms/req", lambda f: f.manifest_cpu_ms, False),
        (push, "MB/s", lambda f: f.push_mbps, True),
        (f"{push}: server CPU", "s/GiB", lambda f: f.push_cpu_per_gib, False),
    ]
    rows: list[ResultRow] = []
    for setup in SETUPS[1:]:
        if setup not in results:
            continue
        for workload, unit, get, higher in metrics:
            rows.append(row("scaling", f"{workload}, {setup}", unit, get(results[setup]),
                            get(ref) if ref else None, higher_is_better=higher))
    for top, bottom, label, target in [("2 workers", "1 worker", "2 workers / 1 worker", ">= 1.5"),
                                       ("3 nodes", "1 node", "3 nodes / 1 node (one machine)", None)]:
        if top in results and bottom in results:
            for workload, unit, get, higher in metrics[::2]:
                rows.append(row("scaling", f"{workload}: {label}", "x", get(results[top]) / get(results[bottom]),
                                target=target))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setups = [s for s in args.only.split(",") if s] or list(SETUPS)
    unknown = set(setups) - set(SETUPS)
    if unknown:
        raise SystemExit(f"unknown set-up(s) {sorted(unknown)}; known: {', '.join(SETUPS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="moorage-scaling-"))
    block = os.urandom(max(args.push_mib, args.blob_mib) * MIB)
    print(f"cores {os.cpu_count()}, {args.seconds:g} s per measurement, load average before:"
          f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[str, Figures] = {}
    starts: dict[str, Callable[[], object]] = {
        "reference": lambda: single(workdir, "reference", 1),
        "1 worker": lambda: single(workdir, "moorage", 1),
        "2 workers": lambda: single(workdir, "moorage", 2),
        "1 node": lambda: cluster(workdir, args, 1),
        "3 nodes": lambda: cluster(workdir, args, 3),
    }
    try:
        for setup in setups:
            with starts[setup]() as (base, roots):  # type: ignore[attr-defined]
                results[setup] = measure(base, roots, args, block)
            f = results[setup]
            print(f"{setup:10} blob GET {f.blob_mbps:8.1f} MB/s ({f.blob_cpu_per_gib:.2f} CPU s/GiB)  "
                  f"manifest GET {f.manifest_rps:8.1f} req/s ({f.manifest_cpu_ms:.2f} CPU ms)  "
                  f"push {f.push_mbps:7.1f} MB/s ({f.push_cpu_per_gib:.2f} CPU s/GiB)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = rows_for(results, args)
    print_rows(rows, width=70, digits=2)
    write_rows(args.results_json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
