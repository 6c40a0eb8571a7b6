"""Manifest GET and HEAD by tag: Moorage with token auth, audit and pull times against the reference.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/manifest_pulls.py                        # SQLite and PostgreSQL, 1 and 2 workers
    .venv/bin/python benchmarks/manifest_pulls.py --database sqlite --workers 2 --duration 5
    .venv/bin/python benchmarks/manifest_pulls.py --src /tmp/before/src  # another checkout's code

Each round starts Debian's ``docker-registry`` (Distribution 2.8, filesystem storage, no auth,
logging at ``error`` so neither side writes a line per request) and, for every database and
worker count asked for, ``moorage serve`` in ``auth.mode: token`` with
``retention.record_pull_time`` on: every manifest ``GET`` then writes a ``pull`` audit row and a
last-pull time (both through the write-behind, ``moorage/db/write_behind.py``) and publishes a
``pull`` artifact event. One small image is pushed with skopeo to each registry, and
``GET``/``HEAD /v2/<repo>/manifests/v1`` is loaded from ``--connections`` keep-alive connections
for ``--duration`` seconds:

* reference: no credentials;
* Moorage token: a bearer token of a project member (guest) on a private project, the figure the
  issue's targets are about (>= 5x the reference on SQLite, >= 3x on PostgreSQL);
* Moorage anonymous: no credentials, on a public project of the same server (for context).

GETs are loaded with wrk (a raw asyncio client when missing; ``--load-tool asyncio`` forces it),
HEADs with the asyncio client: wrk 4.1 waits for the body a HEAD answer's ``Content-Length``
announces and reports 0/s, and ab (``--head-tool ab``) speaks HTTP/1.0, on which uvicorn closes
every connection after its answer while Go keeps it open, so ab measures Moorage with a new TCP
connection per HEAD, which no registry client does. Both registries are loaded by the same tool in
the same round, so the ratio is the figure to read. Next to each rate the server's CPU time per
request is printed (its process tree, from /proc), the steadier figure on a shared machine.

PostgreSQL: each Moorage server gets a throwaway database created on the server of
``--database-url`` (default ``$MOORAGE_TEST_POSTGRES_URL`` or the local one) and dropped after.
After each Moorage server is stopped (SIGTERM flushes the write-behind queues) the ``pull`` audit
rows are counted: they must cover every 200 of the GET loads.

``--results-json PATH`` writes the rows (benchmarks/results.py) that ``run_all.py`` collects.
``--src DIR`` puts DIR first on the server's ``PYTHONPATH``: the same venv runs another
checkout's code (``mkdir /tmp/before && git archive <commit> src | tar -x -C /tmp/before``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.push_pull import ACCEPT, ensure_wrk
from benchmarks.results import ResultRow, row, write_rows
from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, PASSWORD, AdminApi, basic, start_token_moorage
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess, _spawn, free_port, throwaway_postgres_database

KIB = 1024
#: Harbor's role ids: 3 is guest (pull only), so the token path reads a membership.
GUEST = 3
TARGETS = {"sqlite": 5.0, "postgres": 3.0}
METHODS = ("GET", "HEAD")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="moorage serve --workers (each)")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--database-url", default=os.environ.get(
        "MOORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (admin database) on which throwaway databases are created")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (fresh servers each); medians reported")
    parser.add_argument("--src", type=Path, help="run Moorage from this src/ directory (PYTHONPATH)")
    parser.add_argument("--load-tool", choices=["auto", "asyncio"], default="auto",
                        help="auto: wrk for GET (asyncio when missing); HEAD: see --head-tool")
    parser.add_argument("--head-tool", choices=["asyncio", "ab"], default="asyncio",
                        help="ab speaks HTTP/1.0, on which uvicorn closes every connection (Go keeps it open)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install wrk")
    parser.add_argument("--pull-time", choices=["on", "off"], default="on",
                        help="record last pull times (retention.record_pull_time)")
    parser.add_argument("--no-anonymous", action="store_true", help="skip the anonymous-public context loads")
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    return parser.parse_args(argv)


# -- load generators ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    rps: float
    total: int
    bad: int


def wrk_get(wrk: str, url: str, token: str | None, args: argparse.Namespace, workdir: Path) -> Load:
    script = workdir / "wrk-get.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    script.write_text(f'wrk.method = "GET"\nwrk.headers["Accept"] = "{ACCEPT}"\n{auth}')
    argv = [wrk, "-t", str(min(2, args.connections)), "-c", str(args.connections), "-d", f"{args.duration:g}s",
            "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Load(rps, total, int(bad.group(1)) if bad else 0)


def ab_head(ab: str, url: str, token: str | None, args: argparse.Namespace) -> Load:
    """ab -i (HEAD) -k (keep-alive); ab knows a HEAD answer has no body, whatever its Content-Length."""
    argv = [ab, "-q", "-i", "-k", "-c", str(args.connections), "-t", f"{args.duration:g}", "-n", "10000000",
            "-H", f"Accept: {ACCEPT}"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    return Load(rps, total, (int(bad.group(1)) if bad else 0) + failed)


def asyncio_load(method: str, url: str, token: str | None, args: argparse.Namespace) -> Load:
    """Raw keep-alive HTTP/1.1 from one Python process (the fallback: it costs a core itself)."""
    parts = urlsplit(url)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"{method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {ACCEPT}\r\n{auth}\r\n".encode()

    async def worker(deadline: float, counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length and method != "HEAD":
                    await reader.readexactly(length)
                counts[0] += 1
                counts[1] += int(head.split(b" ", 2)[1]) >= 300
        finally:
            writer.close()

    async def run() -> list[int]:
        counts = [0, 0]
        deadline = time.perf_counter() + args.duration
        await asyncio.gather(*(worker(deadline, counts) for _ in range(args.connections)))
        return counts

    start = time.perf_counter()
    total, bad = asyncio.run(run())
    return Load(total / (time.perf_counter() - start), total, bad)


@dataclass
class Tools:
    wrk: str | None
    ab: str | None

    def load(self, method: str, url: str, token: str | None, args: argparse.Namespace, workdir: Path) -> Load:
        if method == "GET" and self.wrk:
            return wrk_get(self.wrk, url, token, args, workdir)
        if method == "HEAD" and self.ab:
            return ab_head(self.ab, url, token, args)
        return asyncio_load(method, url, token, args)

    def name(self, method: str) -> str:
        return ("wrk" if self.wrk else "asyncio") if method == "GET" else ("ab" if self.ab else "asyncio")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (from /proc)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(tools: Tools, method: str, url: str, token: str | None, pid: int, args: argparse.Namespace,
            workdir: Path) -> tuple[Load, float]:
    """A load and the server's CPU milliseconds per request during it."""
    before = tree_cpu_seconds(pid)
    load = tools.load(method, url, token, args, workdir)
    return load, (tree_cpu_seconds(pid) - before) * 1000 / max(load.total, 1)


# -- servers ------------------------------------------------------------------------------------
def start_reference(workdir: Path) -> RegistryProcess:
    """docker-registry on filesystem storage, no auth, logging only errors (Moorage runs without access log)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("`docker-registry` is missing (apt-get install docker-registry)")
    host = f"127.0.0.1:{free_port()}"
    data_dir = workdir / "reference-data"
    data_dir.mkdir(parents=True)
    config = workdir / "reference-config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir}\n  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: {host}\n"
    )
    return _spawn("reference", "reference", [binary, "serve", str(config)], host, data_dir, {}, workdir, 30)


@contextmanager
def database(kind: str, args: argparse.Namespace) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    with throwaway_postgres_database(args.database_url, prefix="moorage_bench") as url:
        yield url


def pull_rows(reg: RegistryProcess, database_url: str | None) -> int:
    """``pull`` rows in the audit log, read after the server stopped."""
    query = "SELECT count(*) FROM audit_log WHERE operation = 'pull'"
    if database_url is None:
        with sqlite3.connect(reg.data_dir / "moorage.db") as conn:
            return int(conn.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(database_url) as pg:
        found = pg.execute(query).fetchone()
        return int(found[0]) if found else 0


@dataclass
class Figures:
    """Rates and CPU per request by (setup label, method), one list entry per round."""

    rps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, label: str, method: str, load: Load, cpu_ms: float) -> None:
        self.rps.setdefault((label, method), []).append(load.rps)
        self.cpu.setdefault((label, method), []).append(cpu_ms)

    def median(self, label: str, method: str) -> tuple[float, float]:
        return statistics.median(self.rps[(label, method)]), statistics.median(self.cpu[(label, method)])


def push_image(workdir: Path, reg: RegistryProcess, ref: str, creds: str | None) -> None:
    layout = OciLayout(workdir / f"layout-{reg.label}")
    image = layout.add_image("v1", (16 * KIB,))
    extra = ["--dest-creds", creds] if creds else []
    Skopeo(workdir / f"skopeo-{reg.label}").copy(image.ref, f"docker://{reg.host}/{ref}:v1", *extra)


def reference_round(tools: Tools, args: argparse.Namespace, workdir: Path, figures: Figures) -> None:
    reg = start_reference(workdir)
    try:
        push_image(workdir, reg, "bench/app", None)
        url = f"{reg.url}/v2/bench/app/manifests/v1"
        for method in METHODS:
            load, cpu_ms = measure(tools, method, url, None, reg.process.pid, args, workdir)
            figures.add("reference", method, load, cpu_ms)
            print(f"  reference           {method:4} {load.rps:8,.0f}/s  server CPU {cpu_ms:.3f} ms/req  "
                  f"({load.total} requests, {load.bad} not 2xx)", flush=True)
    finally:
        reg.stop()


def moorage_round(tools: Tools, args: argparse.Namespace, workdir: Path, figures: Figures, kind: str,
                  workers: int) -> None:
    env = {"MOORAGE_HTTP__WORKERS": str(workers), "MOORAGE_LOG__ACCESS_LOG": "false",
           "MOORAGE_RETENTION__RECORD_PULL_TIME": "true" if args.pull_time == "on" else "false"}
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    label = f"{kind}-{workers}w"
    with database(kind, args) as url:
        reg = start_token_moorage(workdir, label=f"moorage-{label}", database_url=url, extra_env=env)
        gets = 0
        try:
            api = AdminApi(reg)
            private = api.project()
            public = api.project(public=True)
            user = api.user(private, GUEST)
            api.close()
            creds = f"admin:{ADMIN_PASSWORD}"
            push_image(workdir, reg, f"{private}/app", creds)
            push_image(workdir, reg, f"{public}/app", creds)
            token = httpx.get(
                f"{reg.url}/service/token", headers=basic(user, PASSWORD),
                params={"service": "moorage", "scope": f"repository:{private}/app:pull"}, timeout=30,
            ).json()["token"]
            setups = [("token", f"{private}/app", token)]
            if not args.no_anonymous:
                setups.append(("anonymous", f"{public}/app", None))
            for who, repository, bearer in setups:
                url_v1 = f"{reg.url}/v2/{repository}/manifests/v1"
                for method in METHODS:
                    load, cpu_ms = measure(tools, method, url_v1, bearer, reg.process.pid, args, workdir)
                    if load.bad:
                        raise SystemExit(f"{label} {who} {method}: {load.bad} answers were not 2xx")
                    figures.add(f"{label} {who}", method, load, cpu_ms)
                    gets += load.total if method == "GET" else 0
                    print(f"  moorage {label:5} {who:9} {method:4} {load.rps:8,.0f}/s  server CPU {cpu_ms:.3f} "
                          f"ms/req  ({load.total} requests)", flush=True)
        finally:
            reg.stop()  # SIGTERM: the shutdown flushes what the write-behind queues hold
        rows = pull_rows(reg, url)
        # Requests in flight when a load stopped are answered and recorded too: rows >= 200s.
        print(f"  moorage {label:5} pull rows in the audit log after shutdown: {rows} (GET 200s: {gets})"
              + ("" if rows >= gets else "  <-- MISSING ROWS"), flush=True)
        if rows < gets:
            raise SystemExit("pull audit rows were lost")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = None if args.load_tool == "asyncio" else ensure_wrk(not args.no_install)
    ab = shutil.which("ab") if args.load_tool == "auto" and args.head_tool == "ab" else None
    tools = Tools(wrk, ab)
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    src = args.src or Path(__file__).resolve().parents[1] / "src"
    print(f"code: {src}; workers {args.workers}; databases {kinds}; {args.connections} connections x "
          f"{args.duration:g}s; GET: {tools.name('GET')}, HEAD: {tools.name('HEAD')}; pull time {args.pull_time}; "
          f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    figures = Figures()
    setups = [(kind, workers) for kind in kinds for workers in args.workers]
    for round_number in range(args.repeat):
        print(f"round {round_number + 1}", flush=True)
        with tempfile.TemporaryDirectory(prefix="moorage-pulls-") as tmp:
            workdir = Path(tmp)
            order = setups if round_number % 2 == 0 else setups[::-1]
            reference_first = round_number % 2 == 0
            if reference_first:
                reference_round(tools, args, workdir, figures)
            for kind, workers in order:
                moorage_round(tools, args, workdir, figures, kind, workers)
            if not reference_first:
                reference_round(tools, args, workdir, figures)
    print(f"medians of {args.repeat} round(s); load average after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[ResultRow] = []
    header = f"{'setup':26} {'method':6} {'req/s':>9} {'ref req/s':>9} {'ratio':>6} {'CPU ms':>7} {'ref CPU':>7} {'ratio':>6}"
    print(header)
    for method in METHODS:
        ref_rps, ref_cpu = figures.median("reference", method)
        for kind, workers in setups:
            for who in ("token", "anonymous"):
                label = f"{kind}-{workers}w {who}"
                if (label, method) not in figures.rps:
                    continue
                rps, cpu = figures.median(label, method)
                print(f"{label:26} {method:6} {rps:9,.0f} {ref_rps:9,.0f} {rps / ref_rps:6.2f} {cpu:7.3f} "
                      f"{ref_cpu:7.3f} {ref_cpu / cpu:6.2f}")
                db_name = "SQLite" if kind == "sqlite" else "PostgreSQL"
                what = ("token auth, audit, pull times" if who == "token" else "anonymous, public project")
                workload = f"manifest {method} by tag, {what}, {db_name}, {workers} worker{'s' if workers > 1 else ''}"
                target = f">= {TARGETS[kind]:g}" if who == "token" else None
                rows.append(row("manifest_pulls", workload, "req/s", rps, ref_rps, target=target))
                rows.append(row("manifest_pulls", f"{workload}: server CPU per request", "ms", cpu, ref_cpu,
                                higher_is_better=False))
    write_rows(args.results_json, rows)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
