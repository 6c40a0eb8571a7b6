"""Push/pull through Moorage and Debian's docker-registry, both on the same Ceph RGW bucket.

Run by hand from the repository root (starts the project's Ceph with tests/services/ceph-rgw.sh):

    .venv/bin/python benchmarks/object_storage.py [--layers 5] [--layer-mib 32] [--repeat 2]

Both registries use S3 on one RGW bucket (under different root directories) with their default
redirect behaviour: blob GETs are redirected to presigned RGW URLs, so a pull measures the
registry's redirect path plus RGW; pushes stream through the registry into multipart uploads.
The same freshly generated images are pushed with skopeo and pulled back into fresh OCI
layouts, one registry at a time, alternating which goes first. Prints MB/s and the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.clients import Skopeo
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, start_moorage, start_reference
from tests.services.fixtures import _stop, start_service
from tests.storage.objectstores import ensure_bucket, s3_settings, unique

MIB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="moorage-objbench-", dir="/tmp"))
    ceph = start_service("ceph-rgw.sh")
    print(f"ceph: {ceph['S3_ENDPOINT']} ({'started' if ceph.started_here else 'reused'})", flush=True)
    settings = s3_settings(ceph, unique("bench"))
    ensure_bucket(settings)
    servers: dict[str, RegistryProcess] = {}
    try:
        servers["reference"] = start_reference(
            workdir,
            storage_yaml=(
                "  s3:\n"
                f"    accesskey: {ceph['S3_ACCESS_KEY']}\n    secretkey: {ceph['S3_SECRET_KEY']}\n"
                f"    region: {ceph['S3_REGION']}\n    regionendpoint: {ceph['S3_ENDPOINT']}\n"
                f"    bucket: {settings.bucket}\n    rootdirectory: /reference\n    secure: false\n"
                "    v4auth: true\n    chunksize: 5242880\n"
            ),
        )
        servers["moorage"] = start_moorage(
            workdir,
            extra_env={
                "MOORAGE_STORAGE__S3__REGIONENDPOINT": ceph["S3_ENDPOINT"],
                "MOORAGE_STORAGE__S3__REGION": ceph["S3_REGION"],
                "MOORAGE_STORAGE__S3__ACCESSKEY": ceph["S3_ACCESS_KEY"],
                "MOORAGE_STORAGE__S3__SECRETKEY": ceph["S3_SECRET_KEY"],
                "MOORAGE_STORAGE__S3__BUCKET": settings.bucket,
                "MOORAGE_STORAGE__S3__ROOTDIRECTORY": "/moorage",
            },
        )
        skopeo = Skopeo(workdir / "skopeo")
        samples: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.repeat):
            layout = OciLayout(workdir / f"images-{rep}")
            image = layout.add_image(f"img{rep}", [args.layer_mib * MIB] * args.layers)
            payload = sum(b.size for b in image.blobs)
            order = list(servers.items()) if rep % 2 == 0 else list(reversed(servers.items()))
            for kind, server in order:
                remote = f"docker://{server.host}/bench/img{rep}:1"
                started = time.perf_counter()
                skopeo.copy(image.ref, remote)
                push = payload / (time.perf_counter() - started) / 1e6
                pulled = workdir / f"pulled-{kind}-{rep}"
                started = time.perf_counter()
                skopeo.copy(remote, f"oci:{pulled}:1")
                pull = payload / (time.perf_counter() - started) / 1e6
                shutil.rmtree(pulled)
                samples.setdefault(("push", kind), []).append(push)
                samples.setdefault(("pull", kind), []).append(pull)
                print(f"  round {rep + 1} {kind:9}: push {push:7.1f} MB/s, pull {pull:7.1f} MB/s", flush=True)
            shutil.rmtree(layout.root)
    finally:
        for server in servers.values():
            server.stop()
        _stop(ceph)
    print(f"\n{args.layers} x {args.layer_mib} MiB on Ceph RGW S3 (medians of {args.repeat})")
    print(f"{'':8}{'reference':>12}{'moorage':>12}{'ratio':>8}")
    rows: list[ResultRow] = []
    for op in ("push", "pull"):
        ref, moo = statistics.median(samples[(op, "reference")]), statistics.median(samples[(op, "moorage")])
        print(f"{op:8}{ref:12.1f}{moo:12.1f}{moo / ref:8.2f}")
        rows.append(row("object_storage", f"{op} {args.layers} x {args.layer_mib} MiB, Ceph RGW", "MB/s", moo, ref,
                        target=">= 1.0"))
    write_rows(args.results_json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
