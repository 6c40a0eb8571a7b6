"""Resident memory per process of ``moorage serve`` (2 workers) and of the reference, idle and under load.

Run by hand from the repository root (needs Debian's ``docker-registry``):

    .venv/bin/python benchmarks/memory.py                          # 64 concurrent x 1 GiB (the issue's load)
    .venv/bin/python benchmarks/memory.py --concurrency 8 --mib 64 # a one-minute run

For each registry in turn (``moorage serve --workers 2`` on SQLite + filesystem, then Debian's
``docker-registry``, Distribution 2.8.2, on filesystem), in a fresh data dir:

1. idle: the RSS of every process of the server's tree a few seconds after it answers ``/v2/``;
2. pulls: one blob of ``--mib`` MiB is pushed, then ``--concurrency`` clients GET it at once;
3. pushes: ``--concurrency`` clients upload a distinct blob of ``--mib`` MiB each at once, as
   docker and containerd do: ``POST`` to open an upload, one streamed ``PATCH`` (chunked transfer
   encoding, bytes made by a generator while they are sent, never held whole), ``PUT ?digest=``.

During each load a thread reads every process's ``VmRSS`` from /proc every 200 ms: the figures
are each process's peak during the load and its value once the load ended and the server had
``--settle`` seconds to finish writing. The target (issue 17) is flat memory under 200 MB per
worker. The server's CPU seconds per GiB moved (its process tree, from /proc) are printed too.

Disk: the pushes write ``--concurrency`` x ``--mib`` MiB into the data dir (64 GiB at the
defaults); the script checks the free space first, and removes each registry's data before the
next one starts and everything when it ends. ``--workdir`` puts the data on another disk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procs import RssSampler, private_mib, settle, tree_cpu_seconds
from benchmarks.results import ResultRow, print_rows, row, write_rows
from tests.e2e.servers import RegistryProcess, start_moorage, start_reference

REPO = "bench/memory"
CHUNK = 1 << 20
TARGET = "< 200 MiB"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64, help="clients at once (default 64)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB per blob (default 1024)")
    parser.add_argument("--workers", type=int, default=2, help="moorage serve --workers (default 2)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after a load before the end reading")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    parser.add_argument("--only", choices=["moorage", "reference"], help="measure one registry only")
    parser.add_argument("--src", type=Path, help="run Moorage from this src/ directory (PYTHONPATH), e.g. a branch's")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of moorage serve, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="push loads one after the other (a leak grows each)")
    parser.add_argument("--workdir", type=Path, help="where the data dirs go (default: a new temp dir)")
    parser.add_argument("--results-json", help="write result rows (benchmarks/results.py) to this file")
    return parser.parse_args(argv)


@dataclass
class Phase:
    """One load (or the idle reading): RSS per process, bytes moved, time and server CPU."""

    peak: dict[int, float] = field(default_factory=dict)
    end: dict[int, float] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    moved: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    private: dict[int, float] = field(default_factory=dict)
    """Private memory (not shared with other processes) of each process at the end reading."""

    def worst(self, values: dict[int, float], roles: tuple[str, ...]) -> float:
        """The largest figure among the processes with one of ``roles`` (0 when none)."""
        return max((v for pid, v in values.items() if self.roles.get(pid) in roles), default=0.0)


def chunks(index: int, total: int, block: bytes) -> tuple[AsyncIterator[bytes], hashlib._Hash]:
    """A generator of ``total`` bytes unique to ``index`` (1 MiB at a time) and the hash it fills.

    Each chunk is ``block`` with its first 16 bytes replaced by (index, chunk number), so no two
    uploads share a digest (no deduplication) while no more than a chunk exists at a time.
    """
    digest = hashlib.sha256()

    async def gen() -> AsyncIterator[bytes]:
        sent, number = 0, 0
        while sent < total:
            size = min(CHUNK, total - sent)
            chunk = (struct.pack(">QQ", index, number) + block[16:])[:size]
            digest.update(chunk)
            sent += size
            number += 1
            yield chunk

    return gen(), digest


async def upload(http: aiohttp.ClientSession, base: str, index: int, total: int, block: bytes) -> str:
    """POST, one streamed PATCH, PUT ?digest= (docker's sequence); returns the blob's digest."""
    async with http.post(f"{base}/v2/{REPO}/blobs/uploads/") as opened:
        if opened.status != 202:
            raise RuntimeError(f"POST upload: {opened.status} {await opened.text()}")
        location = urljoin(base, opened.headers["Location"])
    body, digest = chunks(index, total, block)
    async with http.patch(location, data=body, headers={"Content-Type": "application/octet-stream"}) as patched:
        if patched.status != 202:
            raise RuntimeError(f"PATCH upload: {patched.status} {await patched.text()}")
        location = urljoin(base, patched.headers["Location"])
    name = "sha256:" + digest.hexdigest()
    separator = "&" if "?" in location else "?"
    async with http.put(f"{location}{separator}digest={name}") as put:
        if put.status != 201:
            raise RuntimeError(f"PUT upload: {put.status} {await put.text()}")
    return name


async def download(http: aiohttp.ClientSession, base: str, name: str) -> int:
    """GET a blob and count its bytes without keeping them."""
    size = 0
    async with http.get(f"{base}/v2/{REPO}/blobs/{name}") as answer:
        if answer.status != 200:
            raise RuntimeError(f"GET blob: {answer.status} {await answer.text()}")
        async for piece in answer.content.iter_chunked(CHUNK):
            size += len(piece)
    return size


def session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency + 4),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
    )


async def pushes(base: str, concurrency: int, total: int, block: bytes, first: int) -> list[str]:
    async with session(concurrency) as http:
        return await asyncio.gather(*(upload(http, base, first + i, total, block) for i in range(concurrency)))


async def pulls(base: str, concurrency: int, name: str) -> int:
    async with session(concurrency) as http:
        sizes = await asyncio.gather(*(download(http, base, name) for _ in range(concurrency)))
    return sum(sizes)


def measured(server: RegistryProcess, args: argparse.Namespace, load: object) -> Phase:
    """Run the coroutine ``load`` (returns bytes moved) while sampling the server's tree."""
    sampler = RssSampler(server.process.pid, args.interval)
    sampler.sample()
    sampler.start()
    cpu, started = tree_cpu_seconds(server.process.pid), time.perf_counter()
    try:
        moved = asyncio.run(load)  # type: ignore[arg-type]
    finally:
        seconds = time.perf_counter() - started
        sampler.stop()
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    settle(args.settle)
    end = RssSampler(server.process.pid)
    end.sample()
    roles = {**sampler.roles, **end.roles}
    private = {pid: v for pid in end.last if (v := private_mib(pid)) is not None}
    return Phase(sampler.peak, end.last, roles, int(moved), seconds, cpu, private)


def idle(server: RegistryProcess, seconds: float) -> Phase:
    """The median of a few readings a while after start (the first imports and migrations are done)."""
    time.sleep(seconds)
    sampler = RssSampler(server.process.pid)
    readings = [sampler.sample() for _ in range(5) if not time.sleep(0.2)]
    median = {pid: statistics.median(r[pid] for r in readings if pid in r) for pid in readings[-1]}
    private = {pid: v for pid in median if (v := private_mib(pid)) is not None}
    return Phase(median, median, sampler.roles, private=private)


def measure(server: RegistryProcess, args: argparse.Namespace, block: bytes) -> dict[str, Phase]:
    total = args.mib * CHUNK
    phases = {"idle": idle(server, args.settle)}
    (pulled,) = asyncio.run(pushes(server.url, 1, total, block, first=1_000_000))
    expected = args.concurrency * total
    for number in range(args.rounds):
        # With --rounds, the figures kept are the last round's: a leak grows round after round,
        # memory an allocator keeps for reuse does not.
        phases["pulls"] = measured(server, args, pulls(server.url, args.concurrency, pulled))
        if phases["pulls"].moved != expected:
            raise RuntimeError(f"pulls moved {phases['pulls'].moved} bytes, expected {expected}")

        async def push_all(first: int) -> int:
            await pushes(server.url, args.concurrency, total, block, first=first)
            return expected

        phases["pushes"] = measured(server, args, push_all(number * args.concurrency))
        if args.rounds > 1:
            ends = ", ".join(f"{pid}: pulls {phases['pulls'].end[pid]:.1f}, pushes {phases['pushes'].end.get(pid, 0):.1f}"
                             for pid in sorted(phases["pulls"].end))
            print(f"  round {number + 1}: RSS after (MiB) {ends}", flush=True)
    return phases


def report(label: str, phases: dict[str, Phase]) -> None:
    print(f"\n{label}: RSS per process (MiB)")
    pids = sorted({pid for phase in phases.values() for pid in phase.roles})
    print(f"  {'pid':>8} {'role':18} {'idle':>8} {'pull peak':>10} {'pull end':>9} {'push peak':>10} {'push end':>9}"
          "   private: idle, after pulls, after pushes")
    for pid in pids:
        role = next((p.roles[pid] for p in phases.values() if pid in p.roles), "?")
        cells = [phases["idle"].end.get(pid), phases["pulls"].peak.get(pid), phases["pulls"].end.get(pid),
                 phases["pushes"].peak.get(pid), phases["pushes"].end.get(pid)]
        shown = " ".join(f"{'-' if c is None else f'{c:.1f}':>{w}}" for c, w in zip(cells, (8, 10, 9, 10, 9)))
        private = " / ".join(f"{p.private[pid]:.1f}" if pid in p.private else "-"
                             for p in (phases["idle"], phases["pulls"], phases["pushes"]))
        print(f"  {pid:>8} {role:18} {shown}   {private}")
    for name in ("pulls", "pushes"):
        phase = phases[name]
        gib = phase.moved / (1 << 30)
        print(f"  {name}: {phase.moved / 1e6 / phase.seconds:.1f} MB/s, server CPU {phase.cpu:.1f} s"
              f" ({phase.cpu / gib if gib else 0:.2f} s per GiB)")


def rows_for(results: dict[str, dict[str, Phase]], args: argparse.Namespace) -> list[ResultRow]:
    """Per-worker figures: Moorage's largest worker against the reference's one process."""
    load = f"{args.concurrency} x {args.mib} MiB"
    rows: list[ResultRow] = []
    # With one worker uvicorn serves in its first process, which the role names "supervisor".
    serving = ("worker", "docker-registry") if args.workers > 1 else ("worker", "docker-registry", "supervisor")

    def figure(label: str, phase: str, which: str) -> float | None:
        if label not in results:
            return None
        p = results[label][phase]
        values = p.peak if which == "peak" else p.end
        return p.worst(values, serving)

    for phase, which, workload in [
        ("idle", "end", f"idle RSS per worker ({args.workers} workers)"),
        ("pulls", "peak", f"peak RSS per worker, {load} pulls"),
        ("pulls", "end", f"RSS per worker after {load} pulls"),
        ("pushes", "peak", f"peak RSS per worker, {load} pushes"),
        ("pushes", "end", f"RSS per worker after {load} pushes"),
    ]:
        ours, theirs = figure("moorage", phase, which), figure("reference", phase, which)
        if ours is not None:
            rows.append(row("memory", workload, "MiB", ours, theirs, target=TARGET, higher_is_better=False))
    private = {label: results[label]["idle"].worst(results[label]["idle"].private, serving) for label in results}
    if "moorage" in private:
        rows.append(row("memory", f"idle private memory per worker ({args.workers} workers; RSS minus shared pages)",
                        "MiB", private["moorage"], private.get("reference"), higher_is_better=False))
    if "moorage" in results:
        for phase in ("pulls", "pushes"):
            p = results["moorage"][phase]
            ref = results.get("reference", {}).get(phase)
            rows.append(row("memory", f"{load} {phase} (aggregate)", "MB/s", p.moved / 1e6 / p.seconds,
                            ref.moved / 1e6 / ref.seconds if ref else None))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="moorage-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    need = (args.concurrency * args.rounds + 1) * args.mib * CHUNK * 1.05 + (2 << 30)
    free = shutil.disk_usage(workdir).free
    if free < need:
        print(f"not enough disk in {workdir}: {free / 2**30:.1f} GiB free, need {need / 2**30:.1f} GiB"
              " (lower --concurrency/--mib or pass --workdir)", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 2
    block = os.urandom(CHUNK)
    results: dict[str, dict[str, Phase]] = {}
    env = {"MOORAGE_HTTP__WORKERS": str(args.workers), "MOORAGE_LOG__ACCESS_LOG": "false"}
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    env.update(item.split("=", 1) for item in args.env)
    try:
        for label in ("moorage", "reference"):
            if args.only and args.only != label:
                continue
            place = workdir / label
            place.mkdir()
            server = (start_moorage(place, extra_env=env) if label == "moorage" else start_reference(place))
            try:
                results[label] = measure(server, args, block)
            finally:
                server.stop()
                shutil.rmtree(place, ignore_errors=True)
            report(label, results[label])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = rows_for(results, args)
    print_rows(rows, width=52, digits=1)
    write_rows(args.results_json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
