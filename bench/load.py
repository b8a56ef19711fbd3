"""A closed-loop load generator in its own process: N clients, fixed duration, JSON result."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx


async def run(
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    clients: int,
    duration: float,
    warmup: float,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as c:
        start = time.monotonic()
        measure_from = start + warmup
        stop = measure_from + duration

        async def client() -> None:
            nonlocal errors
            while (now := time.monotonic()) < stop:
                t0 = time.monotonic()
                try:
                    r = await (c.post(url, content=body) if body is not None else c.get(url))
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                t1 = time.monotonic()
                if t0 >= measure_from:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1
                del now

        await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "rps": len(latencies) / duration,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "ok": len(latencies),
        "errors": errors,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--body-file")
    ap.add_argument("--key")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    a = ap.parse_args()
    body = open(a.body_file, "rb").read() if a.body_file else None
    headers = {"content-type": "application/json"}
    if a.key:
        headers["authorization"] = f"Bearer {a.key}"
    result = asyncio.run(run(a.url, body, headers, a.clients, a.duration, a.warmup))
    json.dump(result, sys.stdout)
