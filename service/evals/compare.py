"""Two eval runs side by side: metrics with the better one marked, and differing cases."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from service.evals.runner import RunResult

# metric -> True when higher is better
METRICS = {
    "agreement": True,
    "hard_violations": False,
    "fallback_rate": False,
    "review_rate": False,
    "llm_call_rate": False,
    "tokens_per_decision": False,
    "cost_per_decision_usd": False,
}


def compare_runs(a: RunResult, b: RunResult) -> dict[str, Any]:
    rows = []
    for metric, higher in METRICS.items():
        va, vb = float(a.summary[metric] or 0), float(b.summary[metric] or 0)
        better = "same" if va == vb else ("A" if (va > vb) == higher else "B")
        rows.append(
            {"metric": metric, "A": a.summary[metric], "B": b.summary[metric], "better": better}
        )
    bcases = {(c.suite, c.id): c for c in b.cases}
    diffs = []
    for ca in a.cases:
        cb = bcases.get((ca.suite, ca.id))
        if cb is None:
            continue
        if ca.got.get("outcome") != cb.got.get("outcome") or ca.status != cb.status:
            diffs.append(
                {
                    "case": f"{ca.suite}/{ca.id}",
                    "A": ca.got.get("outcome"),
                    "A_status": ca.status,
                    "B": cb.got.get("outcome"),
                    "B_status": cb.status,
                }
            )
    return {"A": a.config.label, "B": b.config.label, "metrics": rows, "differences": diffs}


def print_compare(out: Console, cmp: dict[str, Any]) -> None:
    t = Table(
        "metric",
        f"A: {cmp['A']}",
        f"B: {cmp['B']}",
        "better",
        title="compare (same cases, same mode)",
    )
    for r in cmp["metrics"]:
        t.add_row(r["metric"], str(r["A"]), str(r["B"]), r["better"])
    out.print(t)
    if not cmp["differences"]:
        out.print("No case decided differently.")
        return
    d = Table("case", "A outcome", "A", "B outcome", "B", title="cases decided differently")
    for r in cmp["differences"]:
        d.add_row(r["case"], str(r["A"]), r["A_status"], str(r["B"]), r["B_status"])
    out.print(d)
