"""Proxy cache: cold and warm pulls through Moorage against the same pull straight from the upstream,
and the memory of a ``moorage serve`` streaming a 1 GiB layer it fetches on a miss.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/proxy_cache.py                 # 3 x 64 MiB layers, 3 rounds, a 1 GiB layer
    .venv/bin/python benchmarks/proxy_cache.py --layers 5 --mib 100 --rounds 3 --big-mib 1024

Debian's ``docker-registry`` is the upstream; ``moorage serve`` (token mode, SQLite, filesystem) proxies
it through a public proxy project. Each round pulls the image with ``skopeo copy docker://… dir:…``
three ways, one at a time: straight from the upstream, through a *new* proxy project (cold: every
blob is fetched upstream while it streams to skopeo) and through the same project again (warm).
Ratios are upstream time / Moorage time (higher is better; targets: cold >= 0.9, warm >= 1.0),
from the medians of the rounds. The 1 GiB part reads one blob through a cold proxy project with a
plain streaming HTTP client and samples the RSS of every process of the server (VmRSS of each pid
in its process group) every 100 ms: before, peak during, after; and the time to the first byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.clients import Skopeo, run
from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage
from tests.e2e.servers import RegistryProcess, start_reference
from tests.proxy.upstream import push_image, random_layer


def bind(server: RegistryProcess, upstream: RegistryProcess) -> str:
    """A fresh public proxy project (and endpoint) of ``upstream``; its name."""
    with httpx.Client(auth=("admin", ADMIN_PASSWORD), timeout=30) as http:
        r = http.post(f"{server.url}/api/v2.0/registries",
                      json={"name": f"ep-{uuid.uuid4().hex[:8]}", "type": "docker-registry", "url": upstream.url})
        r.raise_for_status()
        registry_id = int(r.headers["location"].rsplit("/", 1)[1])
        project = f"bench{uuid.uuid4().hex[:8]}"
        http.post(f"{server.url}/api/v2.0/projects",
                  json={"project_name": project, "public": True, "registry_id": registry_id}).raise_for_status()
    return project


def timed_pull(skopeo: Skopeo, ref: str, workdir: Path) -> float:
    target = workdir / f"pull-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    run([*skopeo._base(), "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{target}"])
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def group_rss_kib(pid: int) -> int:
    """Sum of VmRSS over the processes of ``pid``'s process group (uvicorn's workers included)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError, ValueError):
            continue
    return total


def big_layer(server: RegistryProcess, upstream: RegistryProcess, mib: int) -> tuple[float, float, float]:
    """Stream one layer through a cold proxy project: (first byte s, peak RSS MiB, peak - before MiB)."""
    print(f"\n1 GiB-class streaming check: one {mib} MiB layer through a cold proxy project", flush=True)
    layer = random_layer(mib * 1024 * 1024)
    image = push_image(upstream.url, "bench/huge", "1", [layer])
    digest = image.layers[0]
    del layer
    project = bind(server, upstream)
    pid = server.process.pid
    before = group_rss_kib(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, group_rss_kib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    first_byte = None
    received = 0
    with httpx.Client(timeout=600) as http, http.stream(
        "GET", f"{server.url}/v2/{project}/bench/huge/blobs/{digest}"
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1024 * 1024):
            if first_byte is None:
                first_byte = time.perf_counter() - started
            received += len(chunk)
    total = time.perf_counter() - started
    done.set()
    sampler.join()
    after = group_rss_kib(pid)
    print(f"  received {received / 2**20:.0f} MiB in {total:.1f} s ({received / total / 1e6:.0f} MB/s); "
          f"first byte after {first_byte or 0:.3f} s")
    print(f"  server RSS (all processes): before {before / 1024:.0f} MiB, peak during {peak / 1024:.0f} MiB, "
          f"after {after / 1024:.0f} MiB (peak - before: {(peak - before) / 1024:.0f} MiB)")
    return first_byte or 0.0, peak / 1024, (peak - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64, help="MiB per layer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=1024, help="the streaming/RSS layer (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="moorage-proxy-bench-"))
    skopeo = Skopeo(workdir / "skopeo")
    upstream = start_reference(workdir, label="upstream")
    server = start_token_moorage(workdir, label="moorage", extra_env={
        "MOORAGE_HTTP__WORKERS": str(args.workers), "MOORAGE_LOG__ACCESS_LOG": "false"})
    try:
        print(f"image: {args.layers} x {args.mib} MiB random layers; {args.rounds} rounds; "
              f"moorage workers: {args.workers}", flush=True)
        push_image(upstream.url, "bench/app", "1", [random_layer(args.mib * 2**20) for _ in range(args.layers)])
        direct, cold, warm = [], [], []
        for round_number in range(1, args.rounds + 1):
            project = bind(server, upstream)
            direct.append(timed_pull(skopeo, f"{upstream.host}/bench/app:1", workdir))
            cold.append(timed_pull(skopeo, f"{server.host}/{project}/bench/app:1", workdir))
            warm.append(timed_pull(skopeo, f"{server.host}/{project}/bench/app:1", workdir))
            print(f"  round {round_number}: upstream {direct[-1]:.2f} s, cold {cold[-1]:.2f} s, "
                  f"warm {warm[-1]:.2f} s", flush=True)
        mb = args.layers * args.mib * 2**20 / 1e6
        d, c, w = (statistics.median(v) for v in (direct, cold, warm))
        print(f"\n{'pull':<22}{'median s':>10}{'MB/s':>8}{'ratio':>8}")
        print(f"{'straight from upstream':<22}{d:>10.2f}{mb / d:>8.0f}{'':>8}")
        print(f"{'cold through Moorage':<22}{c:>10.2f}{mb / c:>8.0f}{d / c:>8.2f}   (target >= 0.9)")
        print(f"{'warm through Moorage':<22}{w:>10.2f}{mb / w:>8.0f}{d / w:>8.2f}   (target >= 1.0)")
        workload = f"pull {args.layers} x {args.mib} MiB (reference: straight from upstream)"
        rows: list[ResultRow] = [
            row("proxy_cache", f"cold {workload}", "s", c, d, target=">= 0.9", higher_is_better=False),
            row("proxy_cache", f"warm {workload}", "s", w, d, target=">= 1.0", higher_is_better=False),
        ]
        if args.big_mib:
            first, peak, growth = big_layer(server, upstream, args.big_mib)
            big = f"{args.big_mib} MiB layer through a cold proxy project"
            rows += [
                row("proxy_cache", f"{big}: first byte", "s", first, higher_is_better=False),
                row("proxy_cache", f"{big}: server RSS growth (all processes)", "MiB", growth,
                    higher_is_better=False),
                row("proxy_cache", f"{big}: server RSS peak (all processes)", "MiB", peak, higher_is_better=False),
            ]
        write_rows(args.results_json, rows)
    finally:
        server.stop()
        upstream.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
