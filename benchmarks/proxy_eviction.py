"""Proxy cache size limit: what eviction costs cold pulls, and whether the cache stays within its limit.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/proxy_eviction.py                       # 60 images of 512 KiB, SQLite
    .venv/bin/python benchmarks/proxy_eviction.py --images 90 --kib 1024 --database-url postgresql://…

Debian's ``docker-registry`` is the upstream, holding N images (a 64 KiB layer they all share and one
of their own); ``moorage serve`` (token mode, 2 workers, filesystem, ``gc.grace_period: 0s``) proxies
it. The N images are pulled one after the other by a plain HTTP client (manifest by tag, then config
and layers), three ways: straight from the upstream (the reference), through a new proxy project
without a cache limit, and through a new one whose limit holds a third of them, so that the cold
pulls keep queuing ``proxy.evict`` jobs that the server runs meanwhile. Reported: pulls per second
and the server's CPU milliseconds per image pull (its whole process tree, from /proc), the ratios
limited / unlimited (what eviction costs) and upstream / Moorage; then, once the evictions are done
and a GC run has deleted their bytes, the project's usage against its limit, the artifacts left,
and the bytes under ``blobs/`` on disk. The two proxy projects pull two sets of images with no blob
in common, so the disk bytes beyond the unlimited project's usage are the limited project's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.manifest_pulls import tree_cpu_seconds
from benchmarks.results import row, write_rows
from tests.e2e.identity_helpers import ADMIN_PASSWORD, start_token_moorage
from tests.e2e.servers import RegistryProcess, start_reference
from tests.proxy.upstream import OCI_MANIFEST, push_image, random_layer

ADMIN = ("admin", ADMIN_PASSWORD)


def proxy_project(server: RegistryProcess, upstream: RegistryProcess, limit: int | None) -> str:
    with httpx.Client(auth=ADMIN, timeout=30) as http:
        r = http.post(f"{server.url}/api/v2.0/registries",
                      json={"name": f"ep-{uuid.uuid4().hex[:8]}", "type": "docker-registry", "url": upstream.url})
        r.raise_for_status()
        registry_id = int(r.headers["location"].rsplit("/", 1)[1])
        project = f"bench{uuid.uuid4().hex[:8]}"
        body: dict[str, object] = {"project_name": project, "public": True, "registry_id": registry_id}
        if limit is not None:
            body["metadata"] = {"proxy_cache_limit": str(limit)}
        http.post(f"{server.url}/api/v2.0/projects", json=body).raise_for_status()
    return project


def tokens(server: RegistryProcess, project: str, names: list[str]) -> dict[str, str]:
    """A pull token per repository, fetched before the timing starts."""
    with httpx.Client(auth=ADMIN, timeout=30) as http:
        return {name: http.get(f"{server.url}/service/token",
                               params={"service": "moorage", "scope": f"repository:{project}/{name}:pull"})
                .json()["token"] for name in names}


def pull_all(base: str, prefix: str, images: list[str], auth: dict[str, str] | None) -> float:
    """Pull every image (manifest by tag, then each blob), checking sizes; the seconds it took."""
    started = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        for name in images:
            headers = {"Accept": OCI_MANIFEST}
            if auth is not None:
                headers["Authorization"] = f"Bearer {auth[name]}"
            r = http.get(f"{base}/v2/{prefix}{name}/manifests/1", headers=headers)
            r.raise_for_status()
            manifest = json.loads(r.content)
            for blob in [manifest["config"], *manifest["layers"]]:
                got = http.get(f"{base}/v2/{prefix}{name}/blobs/{blob['digest']}", headers=headers)
                got.raise_for_status()
                if len(got.content) != blob["size"]:
                    raise AssertionError(f"{name}: {blob['digest']} came back with {len(got.content)} bytes")
    return time.perf_counter() - started


def wait_for_evictions(server: RegistryProcess, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(auth=ADMIN, timeout=30) as http:
        while time.monotonic() < deadline:
            busy = [job for state in ("queued", "running")
                    for job in http.get(f"{server.url}/api/v2.0/jobs", params={"kind": "proxy.evict",
                                                                               "state": state}).json()["jobs"]]
            if not busy:
                return
            time.sleep(0.5)
        jobs = http.get(f"{server.url}/api/v2.0/jobs", params={"kind": "proxy.evict"}).json()
    raise AssertionError(f"evictions still queued or running: {json.dumps(jobs, indent=1)[:3000]}\n"
                         f"{server.log_since_mark()[-3000:]}")


def gc_now(server: RegistryProcess) -> str:
    with httpx.Client(auth=ADMIN, timeout=30) as http:
        r = http.post(f"{server.url}/api/v2.0/system/gc/schedule",
                      json={"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": False, "dry_run": False}})
        r.raise_for_status()
        execution = r.headers["location"].rsplit("/", 1)[1]
        for _ in range(600):
            status = http.get(f"{server.url}/api/v2.0/system/gc/{execution}").json()["job_status"]
            if status not in ("Pending", "Running"):
                return str(http.get(f"{server.url}/api/v2.0/system/gc/{execution}/log").text)
            time.sleep(0.2)
    raise AssertionError("GC did not finish")


def blobs_on_disk(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in (data_dir / "storage" / "blobs").rglob("data") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--kib", type=int, default=512, help="size of each image's own layer")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in the data dir)")
    parser.add_argument("--results-json", default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="moorage-evict-") as tmp:
        workdir = Path(tmp)
        upstream = start_reference(workdir, label="upstream")
        server = None
        try:
            # two sets of images with nothing in common, so that GC can free what the limited project evicts
            names = {mode: [f"library/{mode}{i:03d}" for i in range(args.images)] for mode in ("unlimited", "limited")}
            for mode, repos in names.items():
                base = random_layer(64 * 1024)
                for i, name in enumerate(repos):
                    push_image(upstream.url, name, "1", [base, random_layer(args.kib * 1024)], label=f"{mode}{i}")
            one = len(base) // args.images + args.kib * 1024 + 1500  # an image's share, manifest and config included
            limit = len(base) + one * args.images // 3
            server = start_token_moorage(workdir, label="moorage", database_url=args.database_url, extra_env={
                "MOORAGE_GC__GRACE_PERIOD": "0s", "MOORAGE_JOBS__POLL_SECONDS": "0.5"})
            direct = pull_all(upstream.url, "", names["unlimited"], None)
            results: dict[str, tuple[float, float]] = {}
            projects: dict[str, str] = {}
            for mode, cache_limit in (("unlimited", None), ("limited", limit)):
                project = proxy_project(server, upstream, cache_limit)
                projects[mode] = project
                auth = tokens(server, project, names[mode])
                cpu = tree_cpu_seconds(server.process.pid)
                seconds = pull_all(server.url, f"{project}/", names[mode], auth)
                results[mode] = (seconds, (tree_cpu_seconds(server.process.pid) - cpu) * 1000 / args.images)
            started = time.perf_counter()
            wait_for_evictions(server)
            drained = time.perf_counter() - started
            log = gc_now(server)
            with httpx.Client(auth=ADMIN, timeout=30) as http:
                pid = http.get(f"{server.url}/api/v2.0/projects/{projects['limited']}").json()["project_id"]
                used = int(http.get(f"{server.url}/api/v2.0/quotas/{pid}").json()["used"]["storage"])
                kept = len(http.get(f"{server.url}/api/v2.0/projects/{projects['limited']}/repositories",
                                    params={"page_size": 100}).json())
                upid = http.get(f"{server.url}/api/v2.0/projects/{projects['unlimited']}").json()["project_id"]
                unlimited_used = int(http.get(f"{server.url}/api/v2.0/quotas/{upid}").json()["used"]["storage"])
            disk = blobs_on_disk(server.data_dir)
        finally:
            if server is not None:
                server.stop()
            upstream.stop()
    n = args.images
    rate = {mode: n / seconds for mode, (seconds, _) in results.items()}
    cpu_ms = {mode: ms for mode, (_, ms) in results.items()}
    evicted = [line for line in log.splitlines() if line.startswith("EVICTED")]
    print(f"{n} images of {args.kib} KiB (+ a shared 64 KiB layer), one after the other; limit {limit:,} bytes")
    print(f"{'pull':<34} {'images/s':>9} {'server CPU ms/image':>20}")
    print(f"{'straight from the upstream':<34} {n / direct:>9.1f} {'':>20}")
    for mode in ("unlimited", "limited"):
        print(f"{'cold, proxy project ' + mode:<34} {rate[mode]:>9.1f} {cpu_ms[mode]:>20.1f}")
    print(f"ratio limited/unlimited (rate): {rate['limited'] / rate['unlimited']:.2f}; CPU: "
          f"{cpu_ms['unlimited'] / cpu_ms['limited']:.2f} (> 1: the limit costs nothing)")
    print(f"ratio Moorage limited/upstream (rate): {rate['limited'] / (n / direct):.2f}")
    print(f"evictions drained {drained:.1f} s after the last pull; the GC run evicted {len(evicted)} more")
    print(f"limited project: usage {used:,} bytes of limit {limit:,} ({used / limit:.0%}), "
          f"{kept} of {n} repositories left; unlimited project: {unlimited_used:,} bytes")
    print(f"bytes under blobs/ after GC: {disk:,}; less the unlimited project's: {disk - unlimited_used:,} "
          f"({(disk - unlimited_used) / limit:.0%} of the limit)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_rows(args.results_json, [
        row("proxy_eviction", f"{n} cold pulls, cache limit vs none", "images/s", rate["limited"], rate["unlimited"],
            target=">= 0.9"),
        row("proxy_eviction", f"{n} cold pulls with a cache limit, server CPU", "ms/image", cpu_ms["limited"],
            cpu_ms["unlimited"], higher_is_better=False, target=">= 0.9"),
        row("proxy_eviction", f"{n} cold pulls with a cache limit vs straight from the upstream", "images/s",
            rate["limited"], n / direct),
        row("proxy_eviction", "usage after eviction and GC, of the limit", "%", 100 * used / limit,
            target="<= 100", higher_is_better=False),
    ])


if __name__ == "__main__":
    main()
