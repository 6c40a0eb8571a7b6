"""Pull throughput and manifest requests per second: 1 node vs 3 nodes behind nginx.

Run by hand from the repository root (needs PostgreSQL as for the tests, nginx, openssl):

    .venv/bin/python benchmarks/ha_throughput.py [--seconds 8] [--concurrency 16] [--layer-mib 16]

Three ``moorage serve`` nodes (one worker each) share a throwaway PostgreSQL database and one
storage directory. Two nginx instances built from ``deploy/nginx/moorage.conf`` front them: one
with only the first node in its upstream, one with all three. The same image is pushed once,
then for each proxy a concurrent asyncio/httpx load generator (in this process) pulls layers
(MB/s, 10^6 bytes of payload per second) and GETs the manifest by tag (requests/s). Note that
on one small machine the nodes, PostgreSQL, nginx and the load generator share the cores, so
the ratio says more about the overhead of the stack than about scaling across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import ResultRow, row, write_rows
from tests.conftest import DEFAULT_POSTGRES_ADMIN_URL
from tests.e2e.servers import throwaway_postgres_database
from tests.ha.conftest import NGINX_TEMPLATE, start_nodes
from tests.ha.services import start_nginx

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def push_image(base: str, repo: str, layers: list[bytes]) -> None:
    """Monolithic pushes of the layers and a config, then the manifest tagged ``bench``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    descriptors = []
    with httpx.Client(timeout=300) as http:
        for blob in [config, *layers]:
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            done = http.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=blob)
            done.raise_for_status()
            descriptors.append({"mediaType": "application/octet-stream", "digest": digest, "size": len(blob)})
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {**descriptors[0], "mediaType": "application/vnd.oci.image.config.v1+json"},
                    "layers": descriptors[1:]}
        http.put(f"{base}/v2/{repo}/manifests/bench", content=json.dumps(manifest).encode(),
                 headers={"Content-Type": MANIFEST_TYPE}).raise_for_status()


async def load(base: str, paths: list[str], seconds: float, concurrency: int, accept: str) -> tuple[int, int]:
    """GET ``paths`` round-robin from ``concurrency`` tasks for ``seconds``: (requests, bytes)."""
    stop = time.perf_counter() + seconds
    totals = [0, 0]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:

        async def worker(offset: int) -> None:
            index = offset
            while time.perf_counter() < stop:
                async with http.stream("GET", paths[index % len(paths)], headers={"Accept": accept}) as response:
                    if response.status_code != 200:
                        raise RuntimeError(f"GET {paths[index % len(paths)]}: {response.status_code}")
                    async for chunk in response.aiter_raw(1 << 20):
                        totals[1] += len(chunk)
                totals[0] += 1
                index += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return totals[0], totals[1]


def wrk_rps(url: str, seconds: float, concurrency: int, accept: str) -> float | None:
    """Requests/s measured by ``wrk`` (a C load generator), or ``None`` when it is not installed.

    The in-process httpx generator saturates a core at a few hundred requests/s, so it measures
    itself rather than the registry; wrk does not.
    """
    import re
    import shutil
    import subprocess

    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "-H", f"Accept: {accept}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk against {url} failed:\n{out}")
    return float(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=16)
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    parser.add_argument("--postgres", default=os.environ.get("MOORAGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="moorage-ha-bench-"))
    layers = [os.urandom(args.layer_mib * 1024 * 1024) for _ in range(4)]
    layer_paths = [f"/v2/bench/app/blobs/sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    results: dict[str, dict[str, float]] = {}
    with throwaway_postgres_database(args.postgres, prefix="moorage_bench") as url:
        nodes = start_nodes(workdir, url, workdir / "shared", 3, {"MOORAGE_LOG__ACCESS_LOG": "false"})
        proxies = {}
        try:
            proxies["1 node"] = start_nginx(NGINX_TEMPLATE, [nodes[0].host], workdir / "nginx-1")
            proxies["3 nodes"] = start_nginx(NGINX_TEMPLATE, [n.host for n in nodes], workdir / "nginx-3")
            push_image(nodes[0].url, "bench/app", layers)
            for label, proxy in proxies.items():
                asyncio.run(load(proxy.http_url, ["/v2/bench/app/manifests/bench"], 1, 4, MANIFEST_TYPE))  # warm
                count, size = asyncio.run(load(proxy.http_url, layer_paths, args.seconds, args.concurrency // 2 or 1, "*/*"))
                pull = size / 1e6 / args.seconds
                manifest_url = f"{proxy.http_url}/v2/bench/app/manifests/bench"
                rps = wrk_rps(manifest_url, args.seconds, args.concurrency * 2, MANIFEST_TYPE)
                if rps is None:
                    count, _ = asyncio.run(
                        load(proxy.http_url, ["/v2/bench/app/manifests/bench"], args.seconds, args.concurrency,
                             MANIFEST_TYPE)
                    )
                    rps = count / args.seconds
                results[label] = {"pull MB/s": pull, "manifest GET req/s": rps}
        finally:
            for proxy in proxies.values():
                proxy.stop()
            for node in nodes:
                node.stop()
    print(f"\n{'':24}{'1 node':>12}{'3 nodes':>12}{'ratio':>8}")
    rows: list[ResultRow] = []
    for metric in ("pull MB/s", "manifest GET req/s"):
        one, three = results["1 node"][metric], results["3 nodes"][metric]
        print(f"{metric:24}{one:12.1f}{three:12.1f}{three / one:8.2f}")
        name, unit = metric.rsplit(" ", 1)
        rows += [
            row("ha_throughput", f"{name}, 1 node behind nginx", unit, one),
            row("ha_throughput", f"{name}, 3 nodes behind nginx", unit, three),
            row("ha_throughput", f"{name}, 3 nodes / 1 node", "x", three / one),
        ]
    write_rows(args.results_json, rows)
    print(f"\n(cores: {os.cpu_count()}, {args.seconds:g}s per measurement, concurrency {args.concurrency})")


if __name__ == "__main__":
    main()
