"""M5: routing planner time for 50 locations x 20 lines (target: <= 20 ms per case)."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from service.routing.models import RoutingCase, RoutingParameters
from service.routing.planner import plan
from service.settings import PROJECT_ROOT
from service.specs.loader import load_spec


def big_case(n_locations: int = 50, n_lines: int = 20, seed: int = 7) -> dict[str, Any]:
    """A realistic large case: mixed location types, partial stock, a few groups and tags."""
    rnd = random.Random(seed)
    skus = [f"SKU-{i:03d}" for i in range(n_lines)]
    lines = []
    for i, sku in enumerate(skus):
        tags = []
        if i % 7 == 0:
            tags.append("fragile")
        if i % 11 == 0:
            tags.append("hazmat")
        if i in (3, 4):
            tags.append("ship_together:kit")
        lines.append({"sku": sku, "quantity": rnd.randint(1, 3), "tags": tags})
    locations = []
    for j in range(n_locations):
        kind = rnd.choice(["warehouse", "warehouse", "store", "3pl"])
        stock = {s: rnd.choice([0, 2, 5, 20, 100]) for s in skus}
        options = [
            {
                "carrier": c,
                "service": "std",
                "cost": f"{rnd.randint(600, 2400) / 100:.2f}",
                "transit_days": rnd.randint(1, 4),
                "on_time_rate": rnd.uniform(0.85, 0.99),
                "co2_kg": rnd.uniform(0.2, 3.0),
            }
            for c in ("UPS", "FedEx", "USPS")
        ]
        locations.append(
            {
                "id": f"LOC-{j:02d}",
                "type": kind,
                "stock": stock,
                "backlog_hours": rnd.randint(0, 48),
                "capabilities": rnd.sample(["fragile", "hazmat"], rnd.randint(0, 2)),
                "options": options,
            }
        )
    return {
        "order": {
            "id": "ORD-BENCH",
            "placed_at": "2026-11-23T10:00:00Z",
            "promised_by": "2026-12-01",
            "shipping_method": "standard",
            "destination": {"postal_code": "60614", "country": "US"},
            "lines": lines,
        },
        "locations": locations,
    }


def run(repeats: int = 50) -> dict[str, Any]:
    params = load_spec(PROJECT_ROOT / "specs" / "routing.md").params
    assert isinstance(params, RoutingParameters)
    data = big_case()
    times = []
    plans = 0
    for _ in range(repeats):
        case = RoutingCase.model_validate(data)
        t0 = time.perf_counter()
        result = plan(case, params)
        times.append((time.perf_counter() - t0) * 1000)
        plans = len(result.plans)
    times.sort()
    return {
        "metric": "M5",
        "case": "50 locations x 20 lines",
        "plans": plans,
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
        "target_ms": 20,
        "met": statistics.median(times) <= 20,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=50)
    print(json.dumps(run(ap.parse_args().repeats), indent=2))
