"""A quick smoke run of the benchmarks (no timing assertions: timing is bench's job)."""

from __future__ import annotations

import subprocess
import sys

from bench import planner
from service.settings import PROJECT_ROOT


def test_planner_bench_runs() -> None:
    result = planner.run(repeats=2)
    assert result["metric"] == "M5" and result["plans"] > 0 and result["median_ms"] > 0


def test_full_bench_quick_run_prints_every_metric() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-save"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for metric in ("| M1 |", "| M2 |", "| M3 |", "| M4 |", "| M5 |", "M6", "M7"):
        assert metric in out.stdout
    assert "records written" in out.stdout
