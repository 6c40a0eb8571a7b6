"""One command for every benchmark: each against the reference in the same run, one table, one record.

Run from the repository root (one benchmark at a time on a shared machine: take the lock):

    flock -x /work/notes/bench.lock .venv/bin/python benchmarks/run_all.py --quick   # ~10 minutes, small sizes
    .venv/bin/python benchmarks/run_all.py                                          # the issues' full sizes
    .venv/bin/python benchmarks/run_all.py --only memory,scaling
    .venv/bin/python benchmarks/run_all.py --skip object_storage,gc,multi_site      # no Ceph/Swift here

Each benchmark runs as its own subprocess (``<script> <sizes> --results-json <file>``) with a
timeout; its output goes to a log file in ``--log-dir``. A benchmark that fails, times out or
writes no rows is a ``FAILED`` line of the table and makes the exit status 1, but the others still
run. The table (benchmark, workload, unit, reference, moorage, ratio, target, met?) is printed and
appended to ``benchmarks/results.md`` with the commit, the date and the machine (CPU, cores, RAM,
disk free, kernel, Python, load average before and after), so runs can be compared over time.

Reading a row: ``ratio`` > 1 means Moorage leads whatever the unit (see benchmarks/results.py).
A target with a unit ("< 200 MiB", "< 50 ms") is checked against Moorage's figure; one without
(">= 1.0") against the ratio when the row has one, else against Moorage's figure.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import ResultRow, read_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = Path(__file__).resolve().with_name("results.md")


@dataclass(frozen=True)
class Benchmark:
    """A script of ``benchmarks/`` and the arguments of its quick and full runs."""

    name: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    """Arguments of each mode; ``{log_dir}`` is replaced by the run's log directory."""
    quick_timeout: float
    full_timeout: float
    needs: str = ""
    """What it needs beyond the venv, PostgreSQL and docker-registry (shown by ``--list``)."""


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("push_pull", ("--small",), ("--repeat", "2"), 300, 1800, "skopeo, wrk"),
    Benchmark("manifest_pulls", ("--duration", "3", "--database", "sqlite", "--workers", "2"), ("--repeat", "3"),
              300, 1800, "wrk"),
    Benchmark("blob_get", ("--mib", "32", "--requests", "2"), ("--repeat", "3"), 300, 1800),
    Benchmark("object_storage", ("--layers", "3", "--layer-mib", "16", "--repeat", "1"), (), 420, 1800,
              "Ceph RGW (tests/services/ceph-rgw.sh)"),
    Benchmark("gc", ("--blobs", "300"), (), 420, 1800, "Ceph RGW"),
    Benchmark("replication", ("--small",), (), 300, 1800, "skopeo"),
    Benchmark("proxy_cache", ("--layers", "2", "--mib", "16", "--rounds", "1", "--big-mib", "256"), (), 300,
              1800, "skopeo"),
    Benchmark("multi_site", ("--runs", "3"), (), 420, 1800, "Ceph RGW, Swift SAIO"),
    Benchmark("ha_throughput", ("--seconds", "4"), (), 300, 900, "nginx"),
    Benchmark("scale", ("--repositories", "1000", "--tags", "10000", "--blobs", "20000", "--big-tags", "1000",
                        "--samples", "200", "--explain-out", "{log_dir}/scale-plans.txt"),
              ("--explain-out", "{log_dir}/scale-plans.txt"), 420, 7200, "PostgreSQL"),
    Benchmark("memory", ("--concurrency", "16", "--mib", "64"), (), 300, 3600),
    Benchmark("scaling", ("--quick",), (), 420, 1800, "nginx, wrk, redis"),
)


@dataclass
class Outcome:
    """What one benchmark subprocess left: its rows, or why there are none."""

    name: str
    rows: list[ResultRow] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    log: Path | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: about ten minutes for everything")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    parser.add_argument("--timeout-factor", type=float, default=1.0, help="multiply every timeout")
    parser.add_argument("--log-dir", type=Path, help="where each benchmark's output goes (default: a temp dir)")
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD, help="the record the table is appended to")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their arguments, run nothing")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                        help="replace one benchmark's own arguments (repeatable), e.g. "
                        "--args 'manifest_pulls=--repeat 2 --workers 2'; recorded with the command line")
    return parser.parse_args(argv)


def selected(only: str, skip: str) -> list[Benchmark]:
    """The benchmarks named by ``--only`` minus ``--skip``; an unknown name is an error, not a no-op."""
    known = {b.name: b for b in BENCHMARKS}
    wanted = [n for n in only.split(",") if n] or list(known)
    skipped = {n for n in skip.split(",") if n}
    unknown = sorted((set(wanted) | skipped) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in wanted if n not in skipped]


def run_one(bench: Benchmark, quick: bool, timeout: float, log_dir: Path,
            arguments: list[str] | None = None) -> Outcome:
    """Run one script to the end or the timeout; never raises for the script's own failure.

    On a timeout the script gets SIGINT first: its ``finally`` blocks stop the servers it started
    (they run in their own sessions, out of reach of a group kill), then SIGKILL a minute later.
    """
    script = ROOT / "benchmarks" / f"{bench.name}.py"
    log = log_dir / f"{bench.name}.log"
    rows_file = log_dir / f"{bench.name}.json"
    outcome = Outcome(bench.name, log=log)
    if not script.exists():
        outcome.error = f"no {script.relative_to(ROOT)} in this checkout"
        return outcome
    chosen = arguments if arguments is not None else list(bench.quick if quick else bench.full)
    own = [a.replace("{log_dir}", str(log_dir)) for a in chosen]
    argv = [sys.executable, str(script), *own, "--results-json", str(rows_file)]
    started = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            _interrupt(process)
            outcome.error = f"timed out after {timeout:.0f} s"
            code = None
        except KeyboardInterrupt:
            # The script runs in its own session, out of reach of the terminal's Ctrl-C: pass it on.
            _interrupt(process)
            raise
    outcome.seconds = time.monotonic() - started
    try:
        outcome.rows = read_rows(rows_file)
    except ValueError as exc:
        outcome.error = outcome.error or f"unreadable rows: {exc}"
    if outcome.error is None and code != 0:
        outcome.error = f"exit status {code}"
    if outcome.error is None and not outcome.rows:
        outcome.error = "wrote no rows (does it take --results-json?)"
    return outcome


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (the script's ``finally`` blocks stop its servers), then SIGKILL after a minute."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


TARGET = re.compile(r"^\s*(<=|>=|<|>|=)\s*([-+]?[\d.,]+)\s*(.*?)\s*$")


def met(item: ResultRow) -> str:
    """``yes``/``no`` for a row with a target, ``""`` without one, ``?`` when it cannot be read.

    A target with a unit is about Moorage's own figure; without one, about the ratio if there is
    one (``>= 1.0``: at least as good as the reference), else about Moorage's figure.
    """
    target = item["target"]
    if not target:
        return ""
    match = TARGET.match(target)
    if match is None:
        return "?"
    op, number, unit = match[1], float(match[2].replace(",", "")), match[3]
    value = item["ratio"] if not unit and item["ratio"] is not None else item["moorage"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    ok = {"<": value < number, "<=": value <= number, ">": value > number, ">=": value >= number,
          "=": value == number}[op]
    return "yes" if ok else "no"


def number(value: float | None) -> str:
    """A figure at a precision that suits its size (MB/s in thousands, ratios and seconds below 10)."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


HEADER = ("benchmark", "workload", "unit", "reference", "moorage", "ratio", "target", "met?")


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table of every row; a failed benchmark is one row saying why (and where its log is)."""
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join(["---"] * 2 + ["---:"] * 4 + ["---"] * 2) + " |"]
    for outcome in outcomes:
        for item in outcome.rows:
            cells = [item["benchmark"], item["workload"], item["unit"], number(item["reference"]),
                     number(item["moorage"]), number(item["ratio"]), item["target"] or "", met(item)]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        if outcome.error is not None:
            where = f" (log: {outcome.log})" if outcome.log is not None and outcome.log.exists() else ""
            lines.append(f"| {outcome.name} | FAILED: {outcome.error}{where} | | | | | | no |")
    return "\n".join(lines)


def git_commit() -> str:
    """``<short sha>`` of HEAD, ``+dirty`` when the work tree has uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()
    sha = git("rev-parse", "--short=10", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine(load_before: tuple[float, float, float], load_after: tuple[float, float, float]) -> dict[str, str]:
    """What the figures depend on: the hardware, the system and how busy it was."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))
        ram = f"{mem_kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        ram = "unknown"
    free = shutil.disk_usage(tempfile.gettempdir()).free
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "disk free": f"{free / 2**30:.0f} GiB in {tempfile.gettempdir()}",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "load average before": " ".join(f"{x:.2f}" for x in load_before),
        "load average after": " ".join(f"{x:.2f}" for x in load_after),
    }


RESULTS_HEADER = """# Benchmark results

Appended by `benchmarks/run_all.py` (see benchmarks/README.md), one section per run, newest last.
Each section names the commit (`+dirty`: uncommitted changes were measured too), whether it was a
`--quick` run (small sizes, for trends only) or a full one, and the machine with its load average
before and after: on a shared machine a load above the core count means the figures are low.

Reading a row: `reference` is Debian's `docker-registry` (Distribution 2.8.2), or what the workload
names, measured in the same run; `ratio` > 1 means Moorage leads, whatever the unit (moorage /
reference when higher is better, reference / moorage when lower is). `target` is the issue's goal:
with a unit it is about Moorage's figure, without one about the ratio (or the figure when there is
no reference). `met?` says whether it was reached; a `FAILED` row is a benchmark that did not finish.
"""


def section(outcomes: list[Outcome], mode: str, argv: list[str], facts: dict[str, str], when: datetime) -> str:
    """One run's record for ``results.md``: heading, command, machine, table."""
    lines = [f"## {when:%Y-%m-%d %H:%M} UTC, commit {git_commit()}, {mode}", "",
             f"`{' '.join(['benchmarks/run_all.py', *argv])}`", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    durations = ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes)
    lines += [f"- durations: {durations}", "", table(outcomes), ""]
    return "\n".join(lines)


def append_record(path: Path, text: str) -> None:
    """Append a run to ``path``, writing the explanatory header first when the file is new."""
    existing = path.read_text() if path.exists() else RESULTS_HEADER
    path.write_text(existing.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")


def parse_overrides(given: list[str], known: set[str]) -> dict[str, list[str]]:
    """``NAME=ARGS`` options as {name: argv}; an unknown name or a missing ``=`` is a usage error."""
    overrides: dict[str, list[str]] = {}
    for item in given:
        name, sep, rest = item.partition("=")
        if not sep or name not in known:
            raise SystemExit(f"--args wants NAME=ARGS with NAME one of {', '.join(sorted(known))}; got {item!r}")
        overrides[name] = shlex.split(rest)
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benches = selected(args.only, args.skip)
    if args.list:
        for b in benches:
            print(f"{b.name:16} quick: {' '.join(b.quick) or '-':50} full: {' '.join(b.full) or '-':20}"
                  f" needs: {b.needs or '-'}")
        return 0
    overrides = parse_overrides(args.args, {b.name for b in BENCHMARKS})
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="moorage-run-all-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    when = datetime.now(UTC)
    outcomes: list[Outcome] = []
    for bench in benches:
        timeout = (bench.quick_timeout if args.quick else bench.full_timeout) * args.timeout_factor
        print(f"== {bench.name} (timeout {timeout:.0f} s, log {log_dir / (bench.name + '.log')})", flush=True)
        outcome = run_one(bench, args.quick, timeout, log_dir, overrides.get(bench.name))
        outcomes.append(outcome)
        status = f"FAILED: {outcome.error}" if outcome.error else f"{len(outcome.rows)} rows"
        print(f"   {outcome.seconds:.0f} s, {status}", flush=True)
    facts = machine(load_before, os.getloadavg())
    mode = "quick" if args.quick else "full"
    text = section(outcomes, mode, list(sys.argv[1:] if argv is None else argv), facts, when)
    print("\n" + text)
    if not args.no_record:
        append_record(args.results_md, text)
        print(f"(appended to {args.results_md})")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
