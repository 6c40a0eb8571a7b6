"""One shape for every benchmark's figures, so ``benchmarks/run_all.py`` can gather them in one table.

Each benchmark script takes ``--results-json PATH`` and, when given, writes a JSON list of rows made
with :func:`row`. A row compares Moorage with the reference registry measured in the same run. The
ratio always reads "how far Moorage leads": moorage/reference when a higher figure is better
(MB/s, requests/s), reference/moorage when a lower one is (milliseconds, MiB of memory). A row
without a reference (a p99 against a fixed bound, an RSS against a ceiling) has no ratio and says
its target instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypedDict


class ResultRow(TypedDict):
    """One figure of one workload: what ``--results-json`` files hold, one list per script."""

    benchmark: str
    workload: str
    unit: str
    reference: float | None
    moorage: float
    ratio: float | None
    target: str | None
    higher_is_better: bool


def row(
    benchmark: str,
    workload: str,
    unit: str,
    moorage: float,
    reference: float | None = None,
    *,
    target: str | None = None,
    higher_is_better: bool = True,
) -> ResultRow:
    """A result row; the ratio is computed here so that every script reads it the same way."""
    ratio: float | None = None
    if reference is not None and reference > 0 and moorage > 0:
        ratio = moorage / reference if higher_is_better else reference / moorage
    return ResultRow(
        benchmark=benchmark,
        workload=workload,
        unit=unit,
        reference=reference,
        moorage=moorage,
        ratio=ratio,
        target=target,
        higher_is_better=higher_is_better,
    )


def write_rows(path: str | Path | None, rows: list[ResultRow]) -> None:
    """Write ``rows`` to ``path`` as JSON (nothing when no ``--results-json`` was given)."""
    if path is None:
        return
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")


def read_rows(path: str | Path) -> list[ResultRow]:
    """The rows a script wrote; an absent or empty file (a script that failed early) is no rows."""
    file = Path(path)
    if not file.exists() or not file.read_text().strip():
        return []
    rows: list[ResultRow] = json.loads(file.read_text())
    return rows


def print_rows(rows: list[ResultRow], *, width: int = 52, digits: int = 1) -> None:
    """The rows as a plain table on stdout, then the load average (what the figures were measured under)."""
    print(f"\n{'workload':{width}} {'reference':>10} {'moorage':>10} {'ratio':>7}  {'unit':6} target")
    for r in rows:
        ref = "-" if r["reference"] is None else f"{r['reference']:.{digits}f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['workload']:{width}} {ref:>10} {r['moorage']:>10.{digits}f} {ratio:>7}  {r['unit']:6} {r['target'] or ''}")
    print(f"(load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
