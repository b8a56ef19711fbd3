"""Builders for exceptions cases, one per exception type."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import contract

ADDRESS = {
    "name": "Dana Reyes",
    "line1": "18 Harbor St",
    "line2": None,
    "city": "Portland",
    "region": "ME",
    "postal_code": "04101",
    "country": "US",
}


def base(exception: str, details: dict[str, Any], **changes: Any) -> dict[str, Any]:
    case = contract("exceptions.request")
    case["exception"] = exception
    case["details"] = details
    case["customer"]["email"] = "dana@example.com"
    for key, value in changes.items():
        if key == "flags":
            case["customer"]["flags"] = value
        elif key == "orders":
            case["customer"]["order_count"] = value
        elif key == "lines":
            case["order"]["lines"] = value
        elif key == "promised_by":
            case["order"]["promised_by"] = value
        else:
            case[key] = value
    return case


def address(
    result: str = "invalid", suggestions: list[tuple[str, float]] | None = None, **kw: Any
) -> dict[str, Any]:
    sugg = [
        {"id": sid, "address": {**ADDRESS, "line1": f"{sid} Harbor Street"}, "confidence": conf}
        for sid, conf in (suggestions or [])
    ]
    return base(
        "address_invalid",
        {
            "validator": "usps",
            "result": result,
            "messages": ["street not found"],
            "suggestions": sugg,
        },
        **kw,
    )


def payment(
    code: str = "insufficient_funds",
    attempts: int = 1,
    expires: str | None = "2026-11-25T08:30:00Z",
    **kw: Any,
) -> dict[str, Any]:
    return base(
        "payment_failed",
        {
            "decline_code": code,
            "attempts": attempts,
            "amount": "72.00",
            "last_attempt_at": "2026-11-18T09:00:00Z",
            "auth_expires_at": expires,
        },
        **kw,
    )


def auth(
    ready: list[bool], *, hours_left: int = 6, failed: bool = False, **kw: Any
) -> dict[str, Any]:
    lines = [
        {
            "sku": f"SKU-{i}",
            "title": f"Item {i}",
            "category": "kitchen",
            "quantity": 1,
            "unit_price": "20.00",
            "tags": [],
        }
        for i in range(len(ready))
    ]
    return base(
        "payment_auth_expiring",
        {
            "expires_at": "2026-11-25T12:00:00Z",
            "as_of": f"2026-11-25T{12 - hours_left:02d}:00:00Z"
            if hours_left <= 12
            else "2026-11-23T12:00:00Z",
            "authorized_amount": f"{20 * len(ready)}.00",
            "unshipped": [
                {"sku": f"SKU-{i}", "quantity": 1, "ready_to_ship": r} for i, r in enumerate(ready)
            ],
            "reauthorization_failed": failed,
        },
        lines=lines,
        **kw,
    )


def shortfall(
    eta: str | None = "2026-12-09", alternatives: bool = True, short: int = 2, **kw: Any
) -> dict[str, Any]:
    case = contract("exceptions.request")
    case["details"]["short_lines"][0]["quantity_short"] = short
    if eta is None:
        case["details"]["restock_eta"] = None
    else:
        case["details"]["restock_eta"] = eta
    if not alternatives:
        case["details"]["alternatives"] = []
    return base("inventory_shortfall", case["details"], **kw)


def fraud(risk: int, signals: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return base("fraud_review", {"risk_score": risk, "signals": signals or []}, **kw)


def split(
    extra: str = "5.00", consolidated: str = "2026-11-24", promised: str = "2026-11-26", **kw: Any
) -> dict[str, Any]:
    return base(
        "split_shipment",
        {
            "proposed": [
                {
                    "id": "P1",
                    "location_id": "WH-1",
                    "lines": [{"sku": "MUG-BLUE", "quantity": 2}],
                    "ship_date": "2026-11-19",
                    "cost": "6.00",
                },
                {
                    "id": "P2",
                    "location_id": "WH-2",
                    "lines": [{"sku": "MUG-BLUE", "quantity": 2}],
                    "ship_date": "2026-11-21",
                    "cost": "6.00",
                },
            ],
            "extra_cost": extra,
            "consolidate_date": "2026-11-22",
            "consolidated_arrival": consolidated,
            "split_arrival": "2026-11-21",
        },
        promised_by=promised,
        **kw,
    )


def clone(case: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(case)
