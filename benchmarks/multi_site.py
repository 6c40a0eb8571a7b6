"""Multi-site copy lag: from a push completing at site a to the image being present at site b.

Run by hand from the repository root (reuses or starts the project's Ceph RGW and Swift SAIO):

    .venv/bin/python benchmarks/multi_site.py [--runs 10] [--layer-mib 10] [--nodes 2] [--poll 2.0]

Two sites on one throwaway PostgreSQL database, ``--nodes`` ``moorage serve`` nodes each: site a
stores on Ceph RGW's S3 API, site b on the OpenStack Swift SAIO (docs/multi-site.md). Each run
pushes a fresh image (a config and one ``--layer-mib`` MiB layer, monolithic uploads, then the
manifest) to a node of site a; the clock starts when the manifest PUT returns (push complete) and
stops when the database records site b as holding every blob of the image (the ``site.copy`` job
writes that row only after the bytes are verified and moved under their key at b). ``--poll`` is
``jobs.poll_seconds`` (the product's default is 2 s): a copy waits for the next poll of some node.
Prints every run's lag and the distribution (min, median, p90, max).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import row, write_rows
from tests.e2e.servers import throwaway_postgres_database
from tests.services.fixtures import start_service
from tests.sites.processes import start_sites, write_sites_config
from tests.storage.objectstores import ensure_bucket, s3_settings, unique

MIB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(http: httpx.Client, base: str, repo: str, tag: str, layer_bytes: int) -> set[str]:
    """Push a config, one random layer and the manifest; the image's digests (manifest included)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": time.time()}).encode()
    layer = os.urandom(layer_bytes)
    for blob in (config, layer):
        answer = http.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": _digest(blob)}, content=blob)
        answer.raise_for_status()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()
    answer = http.put(f"{base}/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    answer.raise_for_status()
    return {_digest(config), _digest(layer), _digest(manifest)}


def at_site(conn: psycopg.Connection[tuple[object, ...]], digests: set[str], site: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM blob_sites s JOIN blobs b ON b.id = s.blob_id WHERE s.site = %s AND b.digest = ANY(%s)",
        (site, list(digests)),
    ).fetchone()
    return int(row[0]) if row else 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layer-mib", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=2, help="nodes per site")
    parser.add_argument("--poll", type=float, default=2.0, help="jobs.poll_seconds of every node")
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = parser.parse_args()
    admin = os.environ.get("MOORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    workdir = Path(tempfile.mkdtemp(prefix="moorage-sitesbench-", dir="/tmp"))
    rgw, swift = start_service("ceph-rgw.sh"), start_service("swift-saio.sh")
    bucket = unique("sitesbench-a")
    ensure_bucket(s3_settings(rgw, bucket))
    lags: list[float] = []
    pushes: list[float] = []
    with throwaway_postgres_database(admin, prefix="moorage_sitesbench") as url:
        config = write_sites_config(workdir / "moorage.yml", url, rgw.env, swift.env, bucket, unique("sitesbench-b"),
                                    poll_seconds=args.poll)
        cluster = start_sites(workdir, url, config, nodes_per_site=args.nodes, nginx=False)
        try:
            node = cluster.nodes["a"][0]
            with httpx.Client(timeout=120) as http, psycopg.connect(url, autocommit=True) as conn:
                for run in range(args.runs):
                    started = time.perf_counter()
                    digests = push_image(http, node.url, "bench/lag", f"r{run}", args.layer_mib * MIB)
                    pushed = time.perf_counter()
                    while at_site(conn, digests, "b") < len(digests):
                        if time.perf_counter() - pushed > 120:
                            raise SystemExit(f"run {run}: not at site b after 120 s")
                        time.sleep(0.01)
                    lag = time.perf_counter() - pushed
                    pushes.append(pushed - started)
                    lags.append(lag)
                    print(f"run {run + 1:2d}: push {pushed - started:5.2f} s, lag to site b {lag:5.2f} s", flush=True)
        finally:
            cluster.stop()
    print(f"\n{args.runs} runs, {args.layer_mib} MiB layer, {args.nodes} nodes per site, jobs.poll_seconds {args.poll:g}")
    print(f"lag a -> b (s): min {min(lags):.2f}  median {statistics.median(lags):.2f}  "
          f"p90 {percentile(lags, 0.9):.2f}  max {max(lags):.2f}  (target < 5 s)")
    print(f"push at a (s):  min {min(pushes):.2f}  median {statistics.median(pushes):.2f}  max {max(pushes):.2f}")
    workload = f"copy lag a -> b, {args.layer_mib} MiB layer, poll {args.poll:g} s"
    write_rows(args.results_json, [
        row("multi_site", f"{workload} (median)", "s", statistics.median(lags), target="< 5", higher_is_better=False),
        row("multi_site", f"{workload} (p90)", "s", percentile(lags, 0.9), target="< 5", higher_is_better=False),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
