"""Garbage collection on Ceph RGW: ``moorage gc run`` against Debian's ``docker-registry garbage-collect``.

Run by hand from the repository root (reuses or starts the project's Ceph, tests/services/ceph-rgw.sh):

    .venv/bin/python benchmarks/gc.py [--blobs 2000] [--database-url postgresql://...]

One RGW bucket gets ``--blobs`` small random blobs twice, with the same contents: under
``/moorage`` in Moorage's layout (written through its own S3 driver, each with an ``active``
row older than the grace window and no reference, as left by deleted images), and under
``/reference`` in Distribution's layout (``docker/registry/v2/blobs/sha256/<2>/<hex>/data``,
referenced by no repository). Then each collector runs once, as an operator runs it, timed
from process start to exit: ``moorage gc run --grace-period 0s`` and ``docker-registry
garbage-collect <config>``. Both must leave no blob behind; prints blobs/minute and the ratio.

The database is SQLite in a temporary directory unless ``--database-url`` names an empty
PostgreSQL database (the sweep deletes 500 blobs a batch there, 64 on SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from benchmarks.results import row, write_rows
from moorage.config import load_settings
from moorage.db.tables import blobs
from moorage.registry.digests import parse_digest
from moorage.registry.paths import blob_path
from moorage.services import Services
from moorage.storage.drivers.s3 import S3Driver
from tests.e2e.servers import moorage_command
from tests.services.fixtures import _stop, start_service
from tests.storage.objectstores import ensure_bucket, s3_settings, unique

_PARALLEL_PUTS = 32


async def _fill(env: dict[str, str], bucket_settings: object, count: int) -> None:
    """Store ``count`` blobs in both layouts, and Moorage's rows for its copy."""
    assert isinstance(bucket_settings, S3Driver.Settings)
    services = Services.from_settings(load_settings(environ=env))
    reference = S3Driver(bucket_settings.model_copy(update={"rootdirectory": "reference"}))
    limit = asyncio.Semaphore(_PARALLEL_PUTS)
    rows: list[dict[str, object]] = []
    old = datetime.now(UTC) - timedelta(days=1)

    async def one(index: int) -> None:
        data = os.urandom(512) + index.to_bytes(8, "big")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        hex_ = digest.split(":", 1)[1]
        async with limit:
            await services.storage.put(blob_path(parse_digest(digest)), data)
            await reference.put(f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data", data)
        rows.append({"digest": digest, "size": len(data), "created_at": old, "state": "active"})

    try:
        # Distribution's mark phase fails on a store without repositories: one, with no manifest.
        await reference.put("docker/registry/v2/repositories/bench/_manifests/tags/.keep", b"")
        await asyncio.gather(*(one(i) for i in range(count)))
        async with services.db.write() as conn:
            await conn.execute(insert(blobs), rows)
    finally:
        await reference.aclose()
        await services.aclose()


async def _count(env: dict[str, str], bucket_settings: object) -> tuple[int, int]:
    """Data keys left in each layout after the runs."""
    assert isinstance(bucket_settings, S3Driver.Settings)
    left = []
    for root in ("moorage", "reference"):
        driver = S3Driver(bucket_settings.model_copy(update={"rootdirectory": root}))
        try:
            left.append(sum([1 async for info in driver.list("") if info.path.endswith("/data")]))
        finally:
            await driver.aclose()
    return left[0], left[1]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed, (result.stdout + result.stderr).strip().splitlines()[-1] if (result.stdout + result.stderr).strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blobs", type=int, default=2000)
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="moorage-gcbench-", dir="/tmp"))
    ceph = start_service("ceph-rgw.sh")
    print(f"ceph: {ceph['S3_ENDPOINT']} ({'started' if ceph.started_here else 'reused'})", flush=True)
    settings = s3_settings(ceph, unique("gcbench"))
    ensure_bucket(settings)
    env = {
        **os.environ,
        "MOORAGE_DATA_DIR": str(workdir / "moorage-data"),
        "MOORAGE_STORAGE__S3__REGIONENDPOINT": ceph["S3_ENDPOINT"],
        "MOORAGE_STORAGE__S3__REGION": ceph["S3_REGION"],
        "MOORAGE_STORAGE__S3__ACCESSKEY": ceph["S3_ACCESS_KEY"],
        "MOORAGE_STORAGE__S3__SECRETKEY": ceph["S3_SECRET_KEY"],
        "MOORAGE_STORAGE__S3__BUCKET": settings.bucket,
        "MOORAGE_STORAGE__S3__ROOTDIRECTORY": "/moorage",
    }
    if args.database_url:
        env["MOORAGE_DATABASE_URL"] = args.database_url
    config = workdir / "reference-config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  s3:\n"
        f"    accesskey: {ceph['S3_ACCESS_KEY']}\n    secretkey: {ceph['S3_SECRET_KEY']}\n"
        f"    region: {ceph['S3_REGION']}\n    regionendpoint: {ceph['S3_ENDPOINT']}\n"
        f"    bucket: {settings.bucket}\n    rootdirectory: /reference\n    secure: false\n"
        "    v4auth: true\n  delete:\n    enabled: true\n"
    )
    try:
        subprocess.run([*moorage_command(), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=300)
        started = time.perf_counter()
        asyncio.run(_fill(env, settings, args.blobs))
        print(f"stored {args.blobs} blobs in each layout in {time.perf_counter() - started:.1f} s", flush=True)
        moorage, moorage_said = _timed([*moorage_command(), "gc", "run", "--grace-period", "0s"], env)
        print(f"moorage gc run: {moorage:.1f} s ({moorage_said})", flush=True)
        reference, _ = _timed(
            ["docker-registry", "garbage-collect", str(config)], {**os.environ, "AWS_CA_BUNDLE": ""}
        )
        print(f"docker-registry garbage-collect: {reference:.1f} s", flush=True)
        left = asyncio.run(_count(env, settings))
        if left != (0, 0):
            raise SystemExit(f"blobs left behind (moorage, reference): {left}")
    finally:
        _stop(ceph)
    moorage_rate, reference_rate = args.blobs / moorage * 60, args.blobs / reference * 60
    print(f"\n{args.blobs} unreferenced blobs on Ceph RGW S3, one run each, blobs/minute")
    print(f"{'reference':>12}{'moorage':>12}{'ratio':>8}")
    print(f"{reference_rate:12,.0f}{moorage_rate:12,.0f}{moorage_rate / reference_rate:8.1f}")
    write_rows(args.results_json, [
        row("gc", f"{args.blobs} unreferenced blobs, Ceph RGW", "blobs/min", moorage_rate, reference_rate),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
