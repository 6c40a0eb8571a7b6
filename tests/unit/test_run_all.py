"""benchmarks/run_all.py: how the one table reads targets, shows failures and is appended to results.md.

No benchmark runs here: the rows are made with benchmarks/results.py as the scripts make them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.results import row
from benchmarks.run_all import (
    BENCHMARKS,
    RESULTS_HEADER,
    Benchmark,
    Outcome,
    append_record,
    met,
    number,
    run_one,
    section,
    selected,
    table,
)


def test_a_target_without_unit_reads_the_ratio_and_one_with_a_unit_reads_moorages_figure() -> None:
    faster = row("push_pull", "push", "MB/s", 120.0, 100.0, target=">= 1.0")
    slower = row("push_pull", "push", "MB/s", 90.0, 100.0, target=">= 1.0")
    small = row("memory", "peak RSS", "MiB", 150.0, 60.0, target="< 200 MiB", higher_is_better=False)
    big = row("memory", "peak RSS", "MiB", 250.0, 60.0, target="< 200 MiB", higher_is_better=False)
    no_reference = row("multi_site", "lag", "s", 2.1, target="< 5", higher_is_better=False)
    assert [met(r) for r in (faster, slower, small, big, no_reference)] == ["yes", "no", "yes", "no", "yes"]
    assert met(row("x", "y", "s", 1.0)) == ""
    assert met(row("x", "y", "s", 1.0, target="fast")) == "?"
    assert met(row("x", "y", "req/s", 5_736.0, target=">= 1,000 req/s")) == "yes"


def test_numbers_keep_a_precision_that_suits_their_size() -> None:
    assert [number(v) for v in (5736.4, 35.44, 1.054, 0.0523, 0.0, None)] == ["5,736", "35.4", "1.05", "0.0523",
                                                                              "0.00", "-"]


def test_the_table_has_one_line_per_row_and_one_failed_line_per_failed_benchmark(tmp_path: Path) -> None:
    log = tmp_path / "gc.log"
    log.write_text("Traceback ...\n")
    outcomes = [
        Outcome("push_pull", [row("push_pull", "pull 5 x 100 MiB", "MB/s", 310.2, 259.3, target=">= 1.0")]),
        Outcome("gc", error="exit status 1", log=log),
        Outcome("scale", error="no benchmarks/scale.py in this checkout"),
    ]
    lines = table(outcomes).splitlines()
    assert lines[0] == "| benchmark | workload | unit | reference | moorage | ratio | target | met? |"
    assert lines[2] == "| push_pull | pull 5 x 100 MiB | MB/s | 259 | 310 | 1.20 | >= 1.0 | yes |"
    assert lines[3] == f"| gc | FAILED: exit status 1 (log: {log}) | | | | | | no |"
    assert lines[4] == "| scale | FAILED: no benchmarks/scale.py in this checkout | | | | | | no |"
    assert len(lines) == 5


def test_the_record_gets_its_header_once_and_each_run_is_appended(tmp_path: Path) -> None:
    record = tmp_path / "results.md"
    facts = {"cores": "2", "load average before": "1.00 2.00 3.00", "load average after": "1.50 2.00 3.00"}
    outcomes = [Outcome("memory", [row("memory", "idle RSS", "MiB", 120.0, 20.0, higher_is_better=False)])]
    first = section(outcomes, "quick", ["--quick"], facts, datetime(2026, 11, 29, 21, 0, tzinfo=UTC))
    append_record(record, first)
    append_record(record, first.replace("21:00", "22:00"))
    text = record.read_text()
    assert text.startswith(RESULTS_HEADER.splitlines()[0])
    assert text.count("# Benchmark results") == 1
    assert text.count("| memory | idle RSS | MiB | 20.0 | 120 | 0.167 |  |  |") == 2
    assert "## 2026-11-29 21:00 UTC, commit " in text and "## 2026-11-29 22:00 UTC, commit " in text
    assert text.index("21:00 UTC") < text.index("22:00 UTC")
    assert "- load average before: 1.00 2.00 3.00" in text
    assert "`benchmarks/run_all.py --quick`" in text


def test_only_and_skip_name_known_benchmarks() -> None:
    assert [b.name for b in selected("memory,scaling", "scaling")] == ["memory"]
    assert len(selected("", "")) == len(BENCHMARKS)
    with pytest.raises(SystemExit, match="unknown benchmark"):
        selected("memroy", "")


def test_a_missing_script_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    outcome = run_one(Benchmark("no_such_benchmark", (), (), 1, 1), quick=True, timeout=1, log_dir=tmp_path)
    assert outcome.error == "no benchmarks/no_such_benchmark.py in this checkout"
    assert outcome.rows == []


def test_args_replace_one_benchmarks_own_arguments() -> None:
    from benchmarks.run_all import parse_overrides

    assert parse_overrides(["manifest_pulls=--repeat 2 --workers 2", "blob_get="], {"manifest_pulls", "blob_get"}) == {
        "manifest_pulls": ["--repeat", "2", "--workers", "2"], "blob_get": []}
    with pytest.raises(SystemExit, match="NAME=ARGS"):
        parse_overrides(["nope=--x"], {"blob_get"})
    with pytest.raises(SystemExit, match="NAME=ARGS"):
        parse_overrides(["blob_get"], {"blob_get"})
