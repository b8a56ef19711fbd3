"""Re-run logged decisions against a candidate spec and report what would change."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from service.engine import DecisionResponse
from service.errors import InvalidInput
from service.evals.runner import RunConfig, Runner
from service.kinds.base import field_paths
from service.kinds.registry import AnyKind, Kinds
from service.log.chain import parse_utc
from service.services import build_services
from service.settings import Settings


def _money(kind: AnyKind, verdict: dict[str, Any]) -> dict[str, Decimal]:
    """The verdict's top-level amounts: the fields the kind tags as money."""
    names = [p for p in field_paths(kind.Verdict).money if "." not in p]
    return {n: Decimal(str(verdict[n])) for n in names if verdict.get(n) is not None}


def _amounts(money: dict[str, Decimal]) -> str | None:
    return " ".join(f"{n}={v}" for n, v in money.items()) or None


def parse_since(text: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError:
        raise InvalidInput(f"--since {text!r} is not a date such as 2026-11-01") from None


def replay_log(
    *,
    settings: Settings,
    kind: str,
    since: str,
    spec: str,
    limit: int,
    mode: str,
    kinds: Kinds | None = None,
) -> dict[str, Any]:
    if mode not in ("rules", "live"):
        raise InvalidInput("--mode must be rules or live for replay")
    services = build_services(settings, engine=False, migrate=False, kinds=kinds)
    try:
        rows = services.stores.log.decisions_since(kind=kind, since=parse_since(since), limit=limit)
    finally:
        services.stores.close()

    async def run() -> list[dict[str, Any]]:
        with tempfile.TemporaryDirectory(prefix="arbiter-replay-") as tmp:
            runner = Runner(
                settings=settings,
                config=RunConfig(mode=mode, spec=spec),
                workdir=Path(tmp),
                kinds=kinds,
            )
            k = runner.engine.kind(kind)
            out = []
            try:
                for row in rows:
                    case = runner.engine.parse_case(kind, row.case)
                    spec_used = runner.spec_for(kind, case)
                    new = await runner.engine.evaluate(k, case, spec_used, caller="replay")
                    env = DecisionResponse.from_row(new).model_dump(mode="json")
                    old_money, new_money = _money(k, row.verdict), _money(k, env["verdict"])
                    out.append(
                        {
                            "decision_id": row.id,
                            "order_id": row.order_id,
                            "old_outcome": row.outcome,
                            "new_outcome": env["outcome"],
                            "old_amount": _amounts(old_money),
                            "new_amount": _amounts(new_money),
                            "changed": row.outcome != env["outcome"] or old_money != new_money,
                            "candidate": spec_used.sha256,
                        }
                    )
            finally:
                await runner.services.aclose()
            return out

    results = asyncio.run(run())
    changed = [r for r in results if r["changed"]]
    return {
        "kind": kind,
        "since": since,
        "spec": spec,
        "mode": mode,
        "replayed": len(results),
        "changed": len(changed),
        "changes": changed,
        "candidate_sha256": results[0]["candidate"] if results else None,
    }


def print_replay(out: Console, result: dict[str, Any]) -> None:
    out.print(
        f"replayed {result['replayed']} {result['kind']} decision(s) since "
        f"{result['since']} against {result['spec']}: {result['changed']} would change"
    )
    if result["changes"]:
        t = Table(
            "decision",
            "order",
            "outcome now",
            "outcome with candidate",
            "amount now",
            "amount with candidate",
            title="would change",
        )
        for r in result["changes"]:
            t.add_row(
                r["decision_id"],
                str(r["order_id"]),
                r["old_outcome"],
                r["new_outcome"],
                str(r["old_amount"]),
                str(r["new_amount"]),
            )
        out.print(t)


def write_replay_html(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<tr><td>{escape(r['decision_id'])}</td><td>{escape(str(r['order_id']))}</td>"
        f"<td>{escape(r['old_outcome'])}</td><td>{escape(r['new_outcome'])}</td>"
        f"<td>{escape(str(r['old_amount']))}</td><td>{escape(str(r['new_amount']))}</td></tr>"
        for r in result["changes"]
    )
    path = out_dir / "replay.html"
    path.write_text(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Replay {escape(result["kind"])}</title><style>body{{font:14px system-ui;margin:2rem}}
td,th{{border:1px solid #ccc;padding:4px 8px}}table{{border-collapse:collapse}}</style></head>
<body><h1>Replay of {escape(result["kind"])} decisions since {escape(result["since"])}</h1>
<p>Candidate {escape(result["spec"])} ({escape(str(result["candidate_sha256"]))}), mode
{escape(result["mode"])}: {result["replayed"]} replayed, <b>{result["changed"]}</b> would change.
</p><table><tr><th>decision</th><th>order</th><th>outcome now</th><th>with candidate</th>
<th>amount now</th><th>with candidate</th></tr>{rows}</table></body></html>""")
    return path
