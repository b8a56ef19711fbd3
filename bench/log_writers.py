"""`python -m bench.log_writers`: decision-log appends per second with 1, 2 and 4 writer
processes, each appending records of distinct orders as fast as it can for --seconds.

    python -m bench.log_writers --url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python -m bench.log_writers --url sqlite:////tmp/bench-log.db --writers 1

Every run starts from an empty log (a fresh database) of --shards chains, and
ends with a full chain verification. Results go to bench/results/log-writers-<date>.json/.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def sample_row(order: str) -> Any:
    """A decision record of ordinary size (a rules decision of a two-item return)."""
    from service.engine import new_decision_id
    from service.log.models import DecisionRow, utcnow

    items = [
        {"sku": f"SKU-{i}", "qty": 1, "price": "49.00", "reason": "too_small", "category": "shoes"}
        for i in range(2)
    ]
    return DecisionRow(
        id=new_decision_id(),
        kind="returns",
        created_at=utcnow(),
        caller="key_bench",
        idempotency_key=None,
        order_id=order,
        customer_id="CUS-1",
        outcome="approve",
        source="rules",
        needs_review=False,
        fallback_reason="llm_disabled",
        case={"order_id": order, "items": items, "delivered_at": "2026-11-20T10:00:00Z"},
        verdict={"outcome": "approve", "refund": "98.00", "items": items},
        llm_verdict=None,
        checks=[],
        review_reasons=[],
        cited_clauses=["R1", "R4"],
        rationale="Within the 30-day window; unworn items are refunded in full.",
        confidence=0.8,
        spec_name="returns",
        spec_version="4",
        spec_sha256="a" * 64,
        prompt_sha256=None,
        prompt_template_sha256=None,
        prompt=None,
        guardrails_version="returns-1",
        model=None,
        attempts=[],
        usage={"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": "0"},
        latency_ms={"total": 1, "llm": 0},
        shadow_of=None,
        supersedes=None,
        prev_hash="",
        hash="",
    )


def _writer(url: str, seconds: float, ready: Any, counts: Any, index: int) -> None:
    from service.log.stores import open_stores

    stores = open_stores(url, migrate=False)
    stores.log.append(row=sample_row(f"WARM-{index}"))  # imports, connection, shard count
    n = 0
    ready.wait()  # every writer warmed up: the clock starts for all at once
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        stores.log.append(row=sample_row(f"ORD-{index}-{n}"))
        n += 1
    counts[index] = n
    stores.close()


def _fresh_url(base: str) -> tuple[str, Any]:
    """A new empty database beside `base` and a function that drops it."""
    from sqlalchemy import create_engine, text

    if base.startswith("sqlite"):
        folder = tempfile.mkdtemp(prefix="arbiter-bench-")
        return f"sqlite:///{folder}/log.db", lambda: None
    name = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = base.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return url, drop


def run(url: str, *, writers: int, shards: int, seconds: float) -> dict[str, Any]:
    """Appends/s of `writers` processes on a fresh log of `shards` chains."""
    from service.log.stores import open_stores

    db_url, drop = _fresh_url(url)
    try:
        open_stores(db_url, shards=shards).close()  # migrate once, before the writers start
        ctx = mp.get_context("spawn")
        ready, counts = ctx.Barrier(writers), ctx.Array("l", writers)
        procs = [
            ctx.Process(target=_writer, args=(db_url, seconds, ready, counts, i))
            for i in range(writers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        total = sum(counts)
        stores = open_stores(db_url, migrate=False)
        try:
            report = stores.log.verify()
        finally:
            stores.close()
        return {
            "writers": writers,
            "shards": shards,
            "seconds": seconds,
            "appends": total,
            "appends_per_s": round(total / seconds, 1),
            "chain_ok": report.ok,
        }
    finally:
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3, help="runs per point; the median is kept")
    ap.add_argument("--label", default="", help="a note saved with the results")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    rows = []
    for shards in args.shards:
        for writers in args.writers:
            runs = [
                run(args.url, writers=writers, shards=shards, seconds=args.seconds)
                for _ in range(args.repeats)
            ]
            rates = sorted(x["appends_per_s"] for x in runs)
            r = {
                **sorted(runs, key=lambda x: x["appends_per_s"])[len(runs) // 2],
                "min_per_s": rates[0],
                "max_per_s": rates[-1],
                "chain_ok": all(x["chain_ok"] for x in runs),
            }
            rows.append(r)
            print(
                f"{'postgresql' if args.url.startswith('postgres') else 'sqlite'}  "
                f"shards={shards} writers={writers}: {r['appends_per_s']} appends/s "
                f"(median of {args.repeats}, {r['min_per_s']}–{r['max_per_s']}; "
                f"chain {'OK' if r['chain_ok'] else 'BROKEN'})"
            )
    if args.no_save:
        return
    now = datetime.now(UTC)
    db = "postgresql" if args.url.startswith("postgres") else "sqlite"
    stem = RESULTS / f"log-writers-{now:%Y-%m-%d}-{db}"
    doc = {
        "when": now.isoformat(timespec="seconds"),
        "database": db,
        "label": args.label,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runs": rows,
    }
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"# Log appends per second, {db}, {doc['when']}",
        "",
        f"{os.cpu_count()} cores shared with other work (writers, PostgreSQL and other "
        f"sessions' tests on the same cores); {args.seconds:g} s per run, median of "
        f"{args.repeats}; a fresh database per run. {args.label}",
        "",
        "| shards | writer processes | appends/s (median) | min–max | chain verifies |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r['shards']} | {r['writers']} | {r['appends_per_s']} | "
            f"{r['min_per_s']}–{r['max_per_s']} | {r['chain_ok']} |"
            for r in rows
        ),
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
