"""Builders for routing cases."""

from __future__ import annotations

from typing import Any

from service.routing.models import RoutingCase


def opt(
    carrier: str = "UPS",
    service: str = "ground",
    cost: str = "10.00",
    days: int = 1,
    on_time: float = 0.95,
    co2: float = 1.0,
) -> dict[str, Any]:
    return {
        "carrier": carrier,
        "service": service,
        "cost": cost,
        "transit_days": days,
        "on_time_rate": on_time,
        "co2_kg": co2,
    }


def loc(
    id: str,
    stock: dict[str, int],
    *,
    type: str = "warehouse",
    caps: list[str] | None = None,
    options: list[dict[str, Any]] | None = None,
    backlog: float = 2,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "id": id,
        "type": type,
        "stock": stock,
        "backlog_hours": backlog,
        "capabilities": caps or [],
        "options": options or [opt()],
        "active": active,
    }


def case(
    lines: list[tuple[str, int, list[str]]],
    locations: list[dict[str, Any]],
    *,
    promised: str = "2026-11-27",
    method: str = "standard",
    placed: str = "2026-11-23T10:00:00Z",
    peak: bool = False,
) -> dict[str, Any]:
    return {
        "order": {
            "id": "ORD-R1",
            "placed_at": placed,
            "promised_by": promised,
            "shipping_method": method,
            "destination": {"postal_code": "60614", "country": "US"},
            "lines": [{"sku": s, "quantity": q, "tags": t} for s, q, t in lines],
        },
        "locations": locations,
        "peak": peak,
    }


def parse(data: dict[str, Any]) -> RoutingCase:
    return RoutingCase.model_validate(data)


def tie_case() -> dict[str, Any]:
    """Two warehouses whose best plans score within the tie margin."""
    return case(
        [("LAMP", 1, ["fragile"]), ("BULB", 2, [])],
        [
            loc(
                "WH-A",
                {"LAMP": 5, "BULB": 50},
                caps=["fragile"],
                options=[opt("UPS", "ground", "10.00", 1, 0.95, 1.0)],
            ),
            loc(
                "WH-B",
                {"LAMP": 5, "BULB": 50},
                caps=["fragile"],
                options=[opt("FedEx", "home", "10.20", 1, 0.95, 0.6)],
            ),
        ],
    )
