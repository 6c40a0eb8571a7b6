"""Replication throughput: a Moorage policy against ``skopeo sync`` of the same images, same peers, same run.

Run by hand from the repository root:

    .venv/bin/python benchmarks/replication.py [--small] [--keep]

A token-mode ``moorage serve`` (SQLite, filesystem) is the source; Debian's ``docker-registry``
is the destination of both copies, each into its own namespace so neither finds the other's
blobs. For each workload — one image of 5 × 100 MiB layers and one of 200 × 1 MiB (``--small``:
5 × 10 MiB and 50 × 1 MiB) — the script times

* Moorage: ``POST /api/v2.0/replication/executions`` of a manual push policy until the
  execution is ``Succeed`` (what an operator waits for), and
* skopeo: ``skopeo sync --src docker --dest docker`` of the same repository,

then prints MB/s for both and the ratio (skopeo's time / Moorage's time; above 1.0 Moorage is faster).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import row, write_rows
from tests.e2e.clients import Skopeo, run
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, start_token_moorage, uid
from tests.e2e.images import OciLayout
from tests.e2e.servers import start_reference

MIB = 1024 * 1024
CREDS = f"admin:{ADMIN_PASSWORD}"


def replicate(api: AdminApi, endpoint_id: int, project: str, repository: str) -> float:
    """Seconds from starting a manual policy run to its ``Succeed``."""
    r = api.http.post("/replication/policies", json={
        "name": uid("bench"), "dest_registry": {"id": endpoint_id}, "dest_namespace": uid("moorage"),
        "filters": [{"type": "name", "value": f"{project}/{repository}"}], "concurrency": 4})
    r.raise_for_status()
    policy_id = int(r.headers["location"].rsplit("/", 1)[1])
    start = time.perf_counter()
    r = api.http.post("/replication/executions", json={"policy_id": policy_id})
    r.raise_for_status()
    location = r.headers["location"].removeprefix("/api/v2.0")
    while True:
        execution = api.http.get(location).json()
        if execution["status"] != "InProgress":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if execution["status"] != "Succeed":
        raise SystemExit(f"replication failed: {execution}")
    return elapsed


def skopeo_sync(skopeo: Skopeo, source: str, destination: str) -> float:
    start = time.perf_counter()
    run([*skopeo._base(), "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
         "--dest-tls-verify=false", "--src-creds", CREDS, source, destination])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="5 x 10 MiB and 50 x 1 MiB")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = p.parse_args()
    workloads = [("5 x 10 MiB", 5, 10), ("50 x 1 MiB", 50, 1)] if args.small else \
        [("5 x 100 MiB", 5, 100), ("200 x 1 MiB", 200, 1)]
    workdir = Path(tempfile.mkdtemp(prefix="moorage-bench-repl-"))
    skopeo = Skopeo(workdir / "skopeo")
    layout = OciLayout(workdir / "layout")
    source = start_token_moorage(workdir, label="source", extra_env={"MOORAGE_JOBS__POLL_SECONDS": "0.1"})
    peer = start_reference(workdir, label="peer")
    api = AdminApi(source)
    rows: list[tuple[str, float, float, float]] = []
    try:
        project = api.project()
        r = api.http.post("/registries", json={"name": uid("peer"), "type": "docker-registry", "url": peer.url})
        r.raise_for_status()
        endpoint_id = int(r.headers["location"].rsplit("/", 1)[1])
        for label, layers, mib in workloads:
            repository = uid("img")
            image = layout.add_image(repository, [mib * MIB] * layers)
            skopeo.copy(image.ref, f"docker://{source.host}/{project}/{repository}:v1", "--dest-creds", CREDS)
            total = sum(blob.size for blob in image.blobs) / 1e6
            ours = replicate(api, endpoint_id, project, repository)
            theirs = skopeo_sync(skopeo, f"{source.host}/{project}/{repository}", f"{peer.host}/{uid('skopeo')}")
            rows.append((label, total / ours, total / theirs, theirs / ours))
            print(f"{label}: moorage {ours:.2f} s, skopeo sync {theirs:.2f} s", flush=True)
    finally:
        api.close()
        source.stop()
        peer.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n| workload | Moorage policy MB/s | skopeo sync MB/s | ratio |\n| --- | ---: | ---: | ---: |")
    for label, ours_rate, theirs_rate, ratio in rows:
        print(f"| {label} | {ours_rate:.1f} | {theirs_rate:.1f} | {ratio:.2f}x |")
    write_rows(args.results_json, [
        row("replication", f"{label} (reference: skopeo sync)", "MB/s", ours_rate, theirs_rate, target=">= 1.0")
        for label, ours_rate, theirs_rate, _ in rows
    ])


if __name__ == "__main__":
    main()
