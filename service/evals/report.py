"""report.json and a self-contained report.html (tables and inline SVG bars)."""

from __future__ import annotations

import dataclasses
import json
from html import escape
from pathlib import Path
from typing import Any

from service.evals.runner import RunResult


def as_json(result: RunResult) -> dict[str, Any]:
    return {
        "config": dataclasses.asdict(result.config),
        "summary": result.summary,
        "cases": [
            {k: v for k, v in dataclasses.asdict(c).items() if k != "envelope"}
            for c in result.cases
        ],
    }


def _bars(rows: dict[str, dict[str, Any]]) -> str:
    height = 22 * len(rows) + 10
    parts = [f'<svg width="640" height="{height}" role="img" aria-label="agreement by group">']
    for i, (name, row) in enumerate(rows.items()):
        y = 5 + i * 22
        w = int(400 * row["agreement"])
        color = (
            "#2e7d32"
            if row["agreement"] >= 0.9
            else "#f9a825"
            if row["agreement"] >= 0.7
            else "#c62828"
        )
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{escape(name)}</text>'
            f'<rect x="160" y="{y}" width="{w}" height="16" fill="{color}"/>'
            f'<text x="{165 + w}" y="{y + 13}" font-size="11">'
            f"{row['passed']}/{row['cases']}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def as_html(result: RunResult, title: str = "Arbiter eval report") -> str:
    s = result.summary
    metrics = [
        ("cases", s["cases"]),
        ("agreement", f"{(s['agreement'] or 0):.1%}"),
        ("hard-policy violations", s["hard_violations"]),
        ("fallback rate", f"{s['fallback_rate']:.1%}"),
        ("review rate", f"{s['review_rate']:.1%}"),
        ("LLM call rate", f"{s['llm_call_rate']:.1%}"),
        ("decided by rules alone", f"{s['decided_by_rules_alone']:.1%}"),
        ("latency p50 / p95 (ms)", f"{s['latency_ms']['p50']:.0f} / {s['latency_ms']['p95']:.0f}"),
        ("tokens per decision", s["tokens_per_decision"]),
        ("cost per decision (USD)", s["cost_per_decision_usd"]),
        ("needs re-recording", s["needs_rerecording"]),
        ("errors", s["errors"]),
    ]
    failed = [c for c in result.cases if c.status != "passed"]
    rows = "".join(
        f"<tr><td>{escape(c.suite)}</td><td>{escape(c.id)}</td><td>{escape(c.status)}</td>"
        f"<td>{escape(c.description)}</td><td><pre>{escape(json.dumps(c.expected, indent=1))}"
        f"</pre></td><td><pre>{escape(json.dumps(c.got, indent=1))}</pre></td>"
        f"<td>{escape('; '.join(c.hard + c.misses))}</td></tr>"
        for c in failed
    )
    cfg = result.config
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{escape(title)}</title><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}}pre{{margin:0;font-size:12px}}h2{{margin-top:2rem}}
</style></head><body><h1>{escape(title)}</h1>
<p>mode <b>{escape(cfg.mode)}</b>, spec <b>{escape(cfg.spec or "live")}</b>,
model <b>{escape(cfg.model or "from spec")}</b></p>
<table>{"".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in metrics)}
</table>
<h2>Agreement by tag</h2>{_bars(s["by_tag"])}
<h2>Agreement by clause</h2>{_bars(s["by_clause"])}
<h2>Cases that did not pass ({len(failed)})</h2>
<table><tr><th>suite</th><th>case</th><th>status</th><th>description</th><th>expected</th>
<th>got</th><th>why</th></tr>{rows}</table></body></html>"""


def write_reports(result: RunResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j, h = out / "report.json", out / "report.html"
    j.write_text(json.dumps(as_json(result), indent=1, default=str))
    h.write_text(as_html(result))
    return j, h
