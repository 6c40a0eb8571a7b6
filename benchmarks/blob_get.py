"""Blob ``GET`` throughput, whole and ranged, from the filesystem driver: Moorage against Debian's docker-registry.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/blob_get.py                          # 100 MiB blob, moorage serve, 1 worker
    .venv/bin/python benchmarks/blob_get.py --server granian --workers 2
    .venv/bin/python benchmarks/blob_get.py --src /tmp/before/src    # another checkout's code ("before")

Both registries run side by side on loopback ports with filesystem storage. One random blob of
``--mib`` MiB is uploaded to each (``POST`` + ``PUT``), read once to warm the page cache, then
fetched by ``curl`` (no hashing: a client that only moves bytes) in four workloads: the whole
blob and a range (its middle half, ``206``), over 1 and ``--connections`` connections; each
connection is one curl process fetching the URL ``--requests`` times over one keep-alive
connection. A workload's MB/s is 10^6 bytes of body over the wall time of all its curls. The
server's CPU seconds per GB sent (its whole process tree, from /proc) are printed beside it: the
steadier figure on a shared machine. Registries run one at a time, alternating which goes first
per round; with ``--repeat`` the table shows medians.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.asgi_servers import SERVERS, server_command
from benchmarks.procs import tree_cpu_seconds
from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.servers import RegistryProcess, start_moorage, start_reference

MIB = 1024 * 1024
REPOSITORY = "bench/blob"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=100, help="blob size in MiB (default 100)")
    p.add_argument("--server", choices=SERVERS, default="moorage", help="ASGI server (benchmarks/asgi_servers.py)")
    p.add_argument("--workers", type=int, default=1, help="Moorage worker processes (default 1)")
    p.add_argument("--connections", type=int, default=4, help="connections of the parallel workloads (default 4)")
    p.add_argument("--requests", type=int, default=5, help="GETs per connection (default 5)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the table shows medians")
    p.add_argument("--src", type=Path, help="run Moorage from this source tree (PYTHONPATH), e.g. an older commit's")
    p.add_argument("--results-json", help="write the result rows here (benchmarks/results.py)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, server logs)")
    return p.parse_args(argv)


def upload(server: RegistryProcess, blob: Path, digest: str) -> None:
    """One blob by ``POST`` then ``PUT ?digest=`` with the whole body (both registries take it)."""
    with httpx.Client(base_url=server.url, timeout=120) as client:
        start = client.post(f"/v2/{REPOSITORY}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["location"]
        location += f"{'&' if '?' in location else '?'}digest={digest}"  # Distribution's has a ?_state=
        with blob.open("rb") as body:
            done = client.put(location, content=body,
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(blob.stat().st_size)})
        done.raise_for_status()


def curl_gets(url: str, connections: int, requests: int, byte_range: str | None) -> float:
    """Wall seconds for ``connections`` curl processes, each fetching ``url`` ``requests`` times."""
    argv = ["curl", "-s", "-f", "--fail-early"]
    if byte_range:
        argv += ["-r", byte_range]
    for _ in range(requests):
        argv += [url, "-o", "/dev/null"]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv) for _ in range(connections)]
    codes = [proc.wait() for proc in procs]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"curl failed ({codes}) on {url}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for binary in ("curl", "docker-registry"):
        if shutil.which(binary) is None:
            print(f"`{binary}` is missing", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="moorage-blob-get-", dir="/tmp"))
    size = args.mib * MIB
    blob = workdir / "blob"
    hasher = hashlib.sha256()
    with blob.open("wb") as f:
        for _ in range(args.mib):
            chunk = os.urandom(MIB)
            hasher.update(chunk)
            f.write(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    first, last = size // 4, size * 3 // 4 - 1
    workloads = [
        ("whole", 1, None, size),
        ("whole", args.connections, None, size),
        ("range", 1, f"{first}-{last}", last - first + 1),
        ("range", args.connections, f"{first}-{last}", last - first + 1),
    ]
    env = {"PYTHONPATH": str(args.src.resolve())} if args.src else {}
    servers: dict[str, RegistryProcess] = {}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        servers["reference"] = start_reference(workdir)
        servers["moorage"] = start_moorage(workdir, command=server_command(args.server, args.workers),
                                           extra_env=env)
        for server in servers.values():
            upload(server, blob, digest)
        blob.unlink()
        for rep in range(args.repeat):
            order = list(servers.items()) if rep % 2 == 0 else list(reversed(servers.items()))
            for kind, server in order:
                url = f"{server.url}/v2/{REPOSITORY}/blobs/{digest}"
                curl_gets(url, 1, 1, None)  # warm the page cache and the server
                for name, conns, byte_range, length in workloads:
                    cpu = tree_cpu_seconds(server.process.pid)
                    elapsed = curl_gets(url, conns, args.requests, byte_range)
                    cpu = tree_cpu_seconds(server.process.pid) - cpu
                    sent = length * conns * args.requests
                    label = f"{name} {args.mib}MiB{' (middle half)' if byte_range else ''}, {conns} conn"
                    samples.setdefault((label, kind), []).append((sent / elapsed / 1e6, cpu / (sent / 1e9)))
                    print(f"  round {rep + 1} {kind:9} {label:34} {sent / elapsed / 1e6:8.1f} MB/s"
                          f"  server CPU {cpu / (sent / 1e9):6.2f} s/GB", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()
    print(f"\nmoorage: --server {args.server} --workers {args.workers}{' --src ' + str(args.src) if args.src else ''};"
          f" {args.repeat} round(s), medians; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'workload':36} {'ref MB/s':>9} {'moorage':>9} {'ratio':>6}   {'ref s/GB':>8} {'moorage':>8} {'ratio':>6}")
    rows: list[ResultRow] = []
    for label in dict.fromkeys(label for label, _ in samples):
        ref_rate = statistics.median(s[0] for s in samples[(label, "reference")])
        moo_rate = statistics.median(s[0] for s in samples[(label, "moorage")])
        ref_cpu = statistics.median(s[1] for s in samples[(label, "reference")])
        moo_cpu = statistics.median(s[1] for s in samples[(label, "moorage")])
        workload = f"GET {label} ({args.server}, {args.workers}w)"
        rows.append(row("blob_get", workload, "MB/s", moo_rate, ref_rate, target=">= 1.2"))
        rows.append(row("blob_get", f"{workload} server CPU", "s/GB", moo_cpu, ref_cpu, higher_is_better=False))
        print(f"{label:36} {ref_rate:9.1f} {moo_rate:9.1f} {moo_rate / ref_rate:6.2f}   {ref_cpu:8.2f} {moo_cpu:8.2f}"
              f" {ref_cpu / moo_cpu if moo_cpu else float('inf'):6.2f}")
    write_rows(args.results_json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
