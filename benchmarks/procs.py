"""What a server's processes use, read from /proc: resident memory per process and CPU of the tree.

Shared by ``memory.py`` and ``scaling.py``. A registry is a process tree (``moorage serve`` is a
uvicorn supervisor plus one process per worker; ``docker-registry`` is one Go process), so every
figure here is of the tree rooted at the pid that the benchmark started.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE_KIB = 4


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants that are alive now (children found through /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    """Resident set size of one process in MiB (VmRSS), or ``None`` once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return 0.0


def private_mib(pid: int) -> float | None:
    """Memory only this process holds (Private_Clean + Private_Dirty of smaps_rollup), in MiB.

    RSS counts the shared libraries and the pages a forked worker still shares with its parent
    once per process; the private part is what each extra worker really costs.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kib = sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(("Private_Clean:", "Private_Dirty:")))
    return kib / 1024


def role(pid: int) -> str:
    """A short name for a process of a registry's tree, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = " ".join(part.decode(errors="replace") for part in argv if part)
    if "docker-registry" in text:
        return "docker-registry"
    if "multiprocessing.spawn" in text or "spawn_main" in text:
        return "worker"
    if "resource_tracker" in text:
        return "resource-tracker"
    if "moorage" in text and " serve" in text:
        return "supervisor"
    return text[:40] or "?"


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of the live processes of ``root``'s tree (from /proc/<pid>/stat)."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / 100


@dataclass
class RssSampler:
    """Samples the RSS of every process of a tree every ``interval`` seconds in a thread.

    ``peak`` holds each pid's highest RSS since :meth:`start`, ``last`` its latest; ``roles`` the
    role seen at its first sample (a worker's command line does not change).
    """

    root: int
    interval: float = 0.2
    peak: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[int, float]:
        """One reading of every process of the tree (also folded into ``peak`` and ``last``)."""
        now: dict[int, float] = {}
        for pid in tree_pids(self.root):
            value = rss_mib(pid)
            if value is None:
                continue
            now[pid] = value
            self.roles.setdefault(pid, role(pid))
            self.peak[pid] = max(self.peak.get(pid, 0.0), value)
            self.last[pid] = value
        self.samples += 1
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def settle(seconds: float) -> None:
    """Give a server time to return memory and finish writes before an "end" reading."""
    time.sleep(seconds)
