"""A quick smoke run of the benchmarks (no timing assertions: timing is bench's job)."""

from __future__ import annotations

from bench import planner


def test_planner_bench_runs() -> None:
    result = planner.run(repeats=2)
    assert result["metric"] == "M5" and result["plans"] > 0 and result["median_ms"] > 0
