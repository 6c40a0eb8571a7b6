"""Manifest GETs per second with token auth, where every pull is audited: sync rows vs write-behind.

Run by hand (not collected by pytest), from the repository root, with the venv's Python:

    .venv/bin/python benchmarks/manifest_pulls.py                       # this checkout
    .venv/bin/python benchmarks/manifest_pulls.py --src /tmp/before/src # another checkout's code

Starts ``moorage serve`` in token mode (SQLite and filesystem in a temp dir, unless
``--database-url``), creates a project, pushes one small image with skopeo, fetches a pull
token, and loads ``GET /v2/<project>/app/manifests/v1`` with the bearer token from
``--connections`` keep-alive connections for ``--duration`` seconds (wrk when available, else a
raw asyncio client). Every 200 there writes one ``pull`` row to the audit log, so the rate shows
what the audit write costs. After the load the server is stopped with SIGTERM (its shutdown
flushes the write-behind queue) and the ``pull`` rows in the database are counted: the figure
must equal the number of 200s.

``--src DIR`` puts DIR first on ``PYTHONPATH`` of the server, so the same venv runs the code of
another checkout (``git worktree add /tmp/before <commit>``): that is how "before" is measured.

``--pull-time both`` measures the last-pull-time write-behind (``retention.record_pull_time``,
docs/lifecycle.md): rounds alternate between a server that records it and one that does not,
the medians of each and their ratio are printed, and after each recording round the script
checks that the manifest's ``pulled_at`` was written (the shutdown flushes it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.push_pull import ACCEPT, ensure_wrk
from tests.e2e.clients import Skopeo
from tests.e2e.identity_helpers import ADMIN_PASSWORD, AdminApi, basic, start_token_moorage
from tests.e2e.images import OciLayout
from tests.e2e.servers import RegistryProcess

KIB = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="moorage serve --workers")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (fresh server each); medians reported")
    parser.add_argument("--src", type=Path, help="run the server from this src/ directory (PYTHONPATH)")
    parser.add_argument("--database-url", help="default: SQLite in the server's data dir")
    parser.add_argument("--load-tool", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install wrk")
    parser.add_argument("--pull-time", choices=["on", "off", "both"], default="on",
                        help="record last pull times (retention.record_pull_time); both: alternate and compare")
    return parser.parse_args(argv)


def wrk_load(wrk: str, url: str, token: str, args: argparse.Namespace, workdir: Path) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx) as wrk reports them."""
    script = workdir / "wrk-get.lua"
    script.write_text(
        f'wrk.method = "GET"\nwrk.headers["Accept"] = "{ACCEPT}"\nwrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    threads = str(min(2, args.connections))
    argv = [wrk, "-t", threads, "-c", str(args.connections), "-d", f"{args.duration:g}s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, total, int(bad.group(1)) if bad else 0


def asyncio_load(url: str, token: str, args: argparse.Namespace) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx) from raw keep-alive HTTP/1.1 connections (see push_pull.py)."""
    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {ACCEPT}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()

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
                if length:
                    await reader.readexactly(length)
                counts[0] += 1
                counts[1] += int(head.split(b" ", 2)[1]) >= 300
        finally:
            writer.close()
            await writer.wait_closed()

    async def run() -> list[int]:
        counts = [0, 0]
        deadline = time.perf_counter() + args.duration
        await asyncio.gather(*(worker(deadline, counts) for _ in range(args.connections)))
        return counts

    start = time.perf_counter()
    total, bad = asyncio.run(run())
    return total / (time.perf_counter() - start), total, bad


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (from /proc).

    Under a loaded machine requests/s swing with the neighbours; the server's CPU per request
    does not, so both are reported.
    """
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


def pull_rows(reg: RegistryProcess, database_url: str | None) -> int | None:
    """``pull`` rows in the audit log (read from the SQLite file after the server stopped)."""
    if database_url is not None:
        return None  # counted by the caller's own means on PostgreSQL
    with sqlite3.connect(reg.data_dir / "moorage.db") as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log WHERE operation = 'pull'").fetchone()[0])


def pulled_at(reg: RegistryProcess, database_url: str | None) -> str | None:
    """The manifest's ``pulled_at`` after the server stopped (SQLite only), ``"n/a"`` otherwise."""
    if database_url is not None:
        return "n/a"
    with sqlite3.connect(reg.data_dir / "moorage.db") as conn:
        row = conn.execute("SELECT max(pulled_at) FROM manifests").fetchone()
    return None if row is None or row[0] is None else str(row[0])


def one_round(
    args: argparse.Namespace, workdir: Path, wrk: str | None, record_pull_time: bool = True
) -> tuple[float, float, int, int, int | None, str | None]:
    env = {"MOORAGE_HTTP__WORKERS": str(args.workers), "MOORAGE_LOG__ACCESS_LOG": "false",
           "MOORAGE_RETENTION__RECORD_PULL_TIME": str(record_pull_time).lower()}
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    reg = start_token_moorage(workdir, label="pulls", database_url=args.database_url, extra_env=env)
    try:
        api = AdminApi(reg)
        project = api.project()
        api.close()
        layout = OciLayout(workdir / "layout")
        image = layout.add_image("v1", (16 * KIB,))
        Skopeo(workdir / "skopeo").copy(image.ref, f"docker://{reg.host}/{project}/app:v1", "--dest-creds", f"admin:{ADMIN_PASSWORD}")
        token = httpx.get(
            f"{reg.url}/service/token", headers=basic("admin", ADMIN_PASSWORD),
            params={"service": "moorage", "scope": f"repository:{project}/app:pull"}, timeout=30,
        ).json()["token"]
        url = f"{reg.url}/v2/{project}/app/manifests/v1"
        cpu_before = tree_cpu_seconds(reg.process.pid)
        if wrk is not None:
            rps, total, bad = wrk_load(wrk, url, token, args, workdir)
        else:
            rps, total, bad = asyncio_load(url, token, args)
        cpu_ms = (tree_cpu_seconds(reg.process.pid) - cpu_before) * 1000 / max(total, 1)
    finally:
        reg.stop()  # SIGTERM: the shutdown flushes what the write-behind queue holds
    return rps, cpu_ms, total, bad, pull_rows(reg, args.database_url), pulled_at(reg, args.database_url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = None
    if args.load_tool in ("auto", "wrk"):
        wrk = ensure_wrk(not args.no_install)
        if wrk is None and args.load_tool == "wrk":
            print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
            return 1
    src = args.src or Path(__file__).resolve().parents[1] / "src"
    print(f"code: {src}; {args.workers} workers; {args.connections} connections x {args.duration:g}s; "
          f"load: {'wrk' if wrk else 'asyncio'}; database: {args.database_url or 'SQLite'}")
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.pull_time]
    rates: dict[bool, list[float]] = {mode: [] for mode in modes}
    costs: dict[bool, list[float]] = {mode: [] for mode in modes}
    for round_number in range(args.repeat):
        for mode in modes:  # alternating, so both see the same neighbours on a shared machine
            with tempfile.TemporaryDirectory(prefix="moorage-pulls-") as tmp:
                rps, cpu_ms, total, bad, rows, pulled = one_round(args, Path(tmp), wrk, mode)
            rates[mode].append(rps)
            costs[mode].append(cpu_ms)
            label = "pull time on " if mode else "pull time off"
            print(f"round {round_number + 1} {label}: {rps:,.0f} manifest GET/s, server CPU {cpu_ms:.2f} ms per "
                  f"GET; {total} requests, {bad} non-2xx; pull rows in the audit log after shutdown: "
                  f"{rows if rows is not None else 'n/a'} (requests still in flight when the load stopped count "
                  f"too); manifests.pulled_at: {pulled or 'never'}")
            if mode and pulled is None:
                print("error: pull times were on but nothing was recorded", file=sys.stderr)
                return 1
    for mode in modes:
        label = "pull time on " if mode else "pull time off"
        print(f"median {label}: {statistics.median(rates[mode]):,.0f} manifest GET/s, "
              f"{statistics.median(costs[mode]):.2f} ms server CPU per GET")
    if len(modes) == 2:
        rate = statistics.median(rates[True]) / statistics.median(rates[False])
        cpu = statistics.median(costs[True]) / statistics.median(costs[False])
        print(f"with / without pull times: {rate:.3f} x the GET rate ({(rate - 1) * 100:+.1f} %), "
              f"{cpu:.3f} x the server CPU per GET ({(cpu - 1) * 100:+.1f} %); target: within 5 %")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
