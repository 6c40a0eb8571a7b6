"""Push/pull throughput and manifest request rates: Moorage against Debian's docker-registry.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/push_pull.py            # 5 x 100 MiB and 200 x 1 MiB images
    .venv/bin/python benchmarks/push_pull.py --small    # 5 x 10 MiB and 50 x 1 MiB
    .venv/bin/python benchmarks/push_pull.py --workers 2 \
        --moorage-cmd "moorage serve --listen {listen} --workers {workers}"
    .venv/bin/python benchmarks/push_pull.py --server granian --workers 2 --results-json rows.json

Both registries run side by side on loopback ports with filesystem storage in one temp dir.
The same freshly generated random images are pushed to each with ``skopeo copy oci:… docker://…``
and pulled back into fresh OCI layouts, one registry at a time so they never compete for the 2
cores; then ``--parallel-pulls`` (4) skopeo copies of the big image run at once (MB/s of all
their payload over the wall time). Then a concurrent load generator measures manifest HEAD and GET requests per second on a
tag: a raw asyncio HTTP/1.1 client for both, plus ``wrk`` for GET when available (installed with
apt when missing and allowed). The table shows MB/s (10^6 bytes of blob payload per second of wall
time) and the ratio moorage/reference; the issue's target is a ratio >= 1.0 for push and pull.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.asgi_servers import SERVERS, server_command
from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.clients import Skopeo
from tests.e2e.images import MT_OCI_INDEX, MT_OCI_MANIFEST, BuiltImage, OciLayout
from tests.e2e.servers import RegistryProcess, moorage_command, start_moorage, start_reference

MIB = 1024 * 1024
ACCEPT = f"{MT_OCI_MANIFEST}, {MT_OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"


@dataclass
class Row:
    """One line of the result table: a workload's figure for each registry."""

    workload: str
    unit: str
    reference: float | None = None
    moorage: float | None = None
    note: str = ""

    def ratio(self) -> str:
        if not self.reference or self.moorage is None:
            return "-"
        return f"{self.moorage / self.reference:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="5 x 10 MiB and 50 x 1 MiB (a quick run)")
    p.add_argument("--big-layers", type=int, help="layers in the big image (default 5)")
    p.add_argument("--big-mib", type=int, help="MiB per big layer (default 100, 10 with --small)")
    p.add_argument(
        "--many-layers", type=int, help="layers in the many-layer image (default 200, 50 with --small)"
    )
    p.add_argument(
        "--many-mib", type=int, default=1, help="MiB per layer of the many-layer image (default 1)"
    )
    p.add_argument(
        "--moorage-cmd",
        help="command starting Moorage; {listen} {host} {port} {data_dir} {workers} are filled in "
        "(default: '<venv>/bin/moorage serve --listen {listen}' plus '--workers N' when --workers is given)",
    )
    p.add_argument("--workers", type=int, help="worker processes for Moorage")
    p.add_argument("--server", choices=SERVERS,
                   help="run Moorage under this ASGI server (benchmarks/asgi_servers.py) instead of --moorage-cmd")
    p.add_argument("--parallel-pulls", type=int, default=4,
                   help="skopeo pulls of the big image at once, after the single pulls (default 4; 0: none)")
    p.add_argument("--results-json", help="write the result rows here (benchmarks/results.py)")
    p.add_argument("--src", type=Path, help="run Moorage from this source tree (PYTHONPATH), e.g. an older commit's")
    p.add_argument("--database-url", help="MOORAGE_DATABASE_URL for Moorage (default: embedded SQLite)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of fresh images; the table shows medians")
    p.add_argument("--duration", type=float, default=10, help="seconds per manifest load test (default 10)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections for the load test")
    p.add_argument("--load-tool", choices=["auto", "wrk", "asyncio"], default="auto")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--only", choices=["both", "moorage", "reference"], default="both")
    p.add_argument(
        "--workdir", type=Path, help="where images and registry data go (default: a temp dir in /tmp)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (images, data, server logs)")
    args = p.parse_args(argv)
    args.big_layers = args.big_layers or 5
    args.big_mib = args.big_mib or (10 if args.small else 100)
    args.many_layers = args.many_layers or (50 if args.small else 200)
    return args


def moorage_argv(args: argparse.Namespace) -> list[str]:
    """The command for :func:`start_moorage`, with ``{workers}`` resolved here."""
    if args.server is not None:
        return server_command(args.server, args.workers or 1)
    if args.moorage_cmd is None:
        argv = [*moorage_command(), "serve", "--listen", "{listen}"]
        if args.workers:
            argv += ["--workers", str(args.workers)]
        return argv
    parts = shlex.split(args.moorage_cmd)
    if args.workers and not any("{workers}" in part for part in parts):
        parts += ["--workers", "{workers}"]
    return [part.replace("{workers}", str(args.workers or 1)) for part in parts]


def warm(image: BuiltImage) -> None:
    """Read every blob once so the first registry does not pay for a cold page cache alone."""
    for blob in image.blobs:
        with (image.layout / "blobs" / "sha256" / blob.digest[7:]).open("rb") as f:
            while f.read(8 * MIB):
                pass


def timed_copy(skopeo: Skopeo, src: str, dest: str) -> float:
    start = time.perf_counter()
    skopeo.copy(src, dest)
    return time.perf_counter() - start


def timed_parallel_pulls(skopeo: Skopeo, src: str, dests: list[Path]) -> float:
    """Wall seconds for one ``skopeo copy`` of ``src`` into each of ``dests``, all at once."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(dests)) as pool:
        list(pool.map(lambda dest: skopeo.copy(src, f"oci:{dest}:1"), dests))
    elapsed = time.perf_counter() - start
    for dest in dests:
        shutil.rmtree(dest)
    return elapsed


# -- manifest load --------------------------------------------------------------------------
def ensure_wrk(allow_install: bool) -> str | None:
    """Path of ``wrk``, installing Debian's package when missing (root + apt + allowed)."""
    found = shutil.which("wrk")
    if found or not allow_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print("installing wrk (apt-get install wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    return shutil.which("wrk")


def wrk_rps(wrk: str, url: str, method: str, args: argparse.Namespace, workdir: Path) -> tuple[float, str]:
    """Requests/s reported by wrk; the note counts non-2xx answers (they must be zero)."""
    script = workdir / f"wrk-{method}.lua"
    script.write_text(f'wrk.method = "{method}"\nwrk.headers["Accept"] = "{ACCEPT}"\n')
    threads = str(min(2, args.connections))
    out = subprocess.run(
        [
            wrk,
            "-t",
            threads,
            "-c",
            str(args.connections),
            "-d",
            f"{args.duration:g}s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    note = "; ".join(x for x in (bad and f"{bad.group(1)} non-2xx", errors and errors.group(0)) if x)
    return rps, note


def asyncio_rps(url: str, method: str, args: argparse.Namespace) -> tuple[float, str]:
    """Requests/s from ``connections`` keep-alive connections driven by raw asyncio streams.

    Raw HTTP/1.1 rather than httpx: httpx's per-request overhead caps a 2-core machine at a
    few thousand requests/s, which would measure the client, not the registry. Also used for
    HEAD when wrk is the tool: wrk 4.1 does not know a HEAD answer has no body, waits for the
    ``Content-Length`` bytes a registry rightly announces, and reports 0 requests/s.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"{method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {ACCEPT}\r\n\r\n").encode()

    async def worker(deadline: float, counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if method != "HEAD" and length:
                    await reader.readexactly(length)
                counts[0] += 1
                counts[1] += status >= 300
        finally:
            writer.close()

    async def main() -> list[int]:
        counts = [0, 0]
        deadline = time.perf_counter() + args.duration
        await asyncio.gather(*(worker(deadline, counts) for _ in range(args.connections)))
        return counts

    start = time.perf_counter()
    done, bad = asyncio.run(main())
    return done / (time.perf_counter() - start), (f"{bad} non-2xx" if bad else "")


def result_rows(rows: list[Row], args: argparse.Namespace) -> list[ResultRow]:
    """The table as benchmarks/results.py rows, with the issue's targets (pulls >= 1.1, pushes >= 1.0)."""
    server = args.server or ("custom" if args.moorage_cmd else "moorage")
    out: list[ResultRow] = []
    for line in rows:
        if line.moorage is None:
            continue
        target = ">= 1.1" if "pull" in line.workload else ">= 1.0" if "push" in line.workload else None
        workload = f"{line.workload} ({server}, {args.workers or 1}w)"
        out.append(row("push_pull", workload, line.unit, line.moorage, line.reference, target=target))
    return out


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for binary in ("skopeo", "docker-registry"):
        if shutil.which(binary) is None:
            print(f"`{binary}` is missing: bash scripts/test.sh installs it", file=sys.stderr)
            return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="moorage-bench-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    need = 4 * (args.big_layers * args.big_mib + args.many_layers * args.many_mib) * MIB
    free = shutil.disk_usage(workdir).free
    if free < need:
        print(f"{workdir}: {free / MIB:.0f} MiB free, about {need / MIB:.0f} MiB needed", file=sys.stderr)
        return 2
    print(f"work dir: {workdir}", flush=True)

    servers: dict[str, RegistryProcess] = {}
    try:
        kinds = ["reference", "moorage"] if args.only == "both" else [args.only]
        if "reference" in kinds:
            servers["reference"] = start_reference(workdir)
        if "moorage" in kinds:
            servers["moorage"] = start_moorage(
                workdir, command=moorage_argv(args), database_url=args.database_url, label="moorage",
                extra_env={"PYTHONPATH": str(args.src.resolve())} if args.src else None,
            )
        for kind, server in servers.items():
            print(f"{kind}: {server.url}  (log {server.log_path})", flush=True)
        skopeo = Skopeo(workdir / "skopeo")

        samples: dict[tuple[str, str], list[float]] = {}
        labels = [f"{args.big_layers}x{args.big_mib}MiB", f"{args.many_layers}x{args.many_mib}MiB"]
        for rep in range(args.repeat):
            # Fresh images every repetition: a second push of known blobs would be answered by
            # "already there" (or a cross-repository mount from skopeo's blob-info cache).
            t = time.perf_counter()
            layout = OciLayout(workdir / f"images-{rep}")
            images = {
                labels[0]: layout.add_image(f"big{rep}", [args.big_mib * MIB] * args.big_layers),
                labels[1]: layout.add_image(f"many{rep}", [args.many_mib * MIB] * args.many_layers),
            }
            os.sync()  # the generated GiB must not be written back during the first timed push
            print(
                f"round {rep + 1}/{args.repeat}: generated images in {time.perf_counter() - t:.1f}s",
                flush=True,
            )
            # Alternate which registry goes first, so neither always meets a cold cache.
            order = list(servers.items()) if rep % 2 == 0 else list(reversed(servers.items()))
            for label, image in images.items():
                payload = sum(b.size for b in image.blobs)
                warm(image)
                for kind, server in order:
                    remote = f"docker://{server.host}/bench/{image.tag}:1"
                    pulled = workdir / f"pulled-{kind}-{image.tag}"
                    push = payload / timed_copy(skopeo, image.ref, remote) / 1e6
                    os.sync()
                    pull = payload / timed_copy(skopeo, remote, f"oci:{pulled}:1") / 1e6
                    shutil.rmtree(pulled)
                    os.sync()
                    samples.setdefault((f"push {label}", kind), []).append(push)
                    samples.setdefault((f"pull {label}", kind), []).append(pull)
                    print(f"  {kind:9} {label}: push {push:8.1f} MB/s, pull {pull:8.1f} MB/s", flush=True)
                    if args.parallel_pulls and label == labels[0]:
                        dests = [workdir / f"pulled-{kind}-{image.tag}-{n}" for n in range(args.parallel_pulls)]
                        rate = args.parallel_pulls * payload / timed_parallel_pulls(skopeo, remote, dests) / 1e6
                        os.sync()
                        samples.setdefault((f"{args.parallel_pulls} parallel pulls {label}", kind), []).append(rate)
                        print(f"  {kind:9} {label}: {args.parallel_pulls} parallel pulls {rate:8.1f} MB/s", flush=True)
            shutil.rmtree(layout.root)

        rows: list[Row] = []
        workloads = [f"{op} {label}" for label in labels for op in ("push", "pull")]
        if args.parallel_pulls:
            workloads.insert(2, f"{args.parallel_pulls} parallel pulls {labels[0]}")
        for workload in workloads:
            line = Row(workload, "MB/s")
            for kind in servers:
                setattr(line, kind, statistics.median(samples[(workload, kind)]))
            rows.append(line)
        bench_tag = "big0"

        use_wrk: str | None = None
        if args.load_tool in ("auto", "wrk"):
            use_wrk = ensure_wrk(not args.no_install)
            if use_wrk is None and args.load_tool == "wrk":
                print("wrk is not available", file=sys.stderr)
                return 2
        plan: list[tuple[str, str | None]] = [("HEAD", None), ("GET", None)] + (
            [("GET", use_wrk)] if use_wrk else []
        )
        for method, tool in plan:
            line = Row(
                f"manifest {method} ({'wrk' if tool else 'asyncio'}, {args.connections} conns)", "req/s"
            )
            notes = []
            for kind, server in servers.items():
                url = f"{server.url}/v2/bench/{bench_tag}/manifests/1"
                rps, note = (
                    wrk_rps(tool, url, method, args, workdir) if tool else asyncio_rps(url, method, args)
                )
                setattr(line, kind, rps)
                if note:
                    notes.append(f"{kind}: {note}")
                print(f"  {kind:9} {line.workload}: {rps:9.0f} req/s {note}", flush=True)
            line.note = "; ".join(notes)
            rows.append(line)

        load = os.getloadavg()
        print()
        print(
            f"moorage command: {shlex.join(moorage_argv(args))}   database: {args.database_url or 'sqlite'}"
            f"   rounds: {args.repeat} (median)   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        print(f"{'workload':44} {'unit':6} {'reference':>10} {'moorage':>10} {'ratio':>6}  note")
        for r in rows:
            ref = f"{r.reference:10.1f}" if r.reference is not None else f"{'-':>10}"
            moo = f"{r.moorage:10.1f}" if r.moorage is not None else f"{'-':>10}"
            print(f"{r.workload:44} {r.unit:6} {ref} {moo} {r.ratio():>6}  {r.note}")
        write_rows(args.results_json, result_rows(rows, args))
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
