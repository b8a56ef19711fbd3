"""Boundary cases generated from a policy: each window at day N-1, N and N+1, each
threshold at, just below and just above, each category in and out. The expected outcome
is proposed by the deterministic policy (rules mode) and the cases are written as
`proposed`: a person accepts (removes `proposed: true`) or edits each before it gates
anything. Regenerating after a policy change re-proposes every proposed case and reports
which expectations moved; an accepted case whose expectation the new policy contradicts is
reported too, and left as the person wrote it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from service.evals.suite import EvalCase, Expect, Suite, load_suite
from service.specs.diff import flatten
from service.specs.loader import Spec

GENERATED = "generated.yaml"
PROPOSED_FIELDS = ("outcome", "needs_review")
PLACEHOLDER_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)")

Setter = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class Probe:
    """How to put one parameter's quantity at a value: `at(value)` gives the `set:` paths
    of a case (over the suite's base case) where the quantity equals `value`."""

    param: str  # dotted path into the parameters
    shape: str  # window | threshold | category
    at: Setter
    step: Any = 1  # one day, one unit, one cent
    unit: str = ""
    out: Any = None  # for a category: a value in no list


def _day(start: str, days: int, clock: str = "12:00:00") -> str:
    d = datetime.fromisoformat(start.replace("Z", "+00:00")).date() + timedelta(days=days)
    return f"{d.isoformat()}T{clock}Z"


def _hours(start: str, hours: int) -> str:
    t = datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- returns (base: delivered 2026-10-06, a 129.00 outerwear jacket) --------------------

DELIVERED = "2026-10-06T18:40:00Z"


def _return(reason: str, condition: str, day: int = 10, **more: Any) -> dict[str, Any]:
    item = {"sku": "JKT-RAIN-M", "quantity": 1, "reason": reason, "condition": condition}
    if reason in ("defective", "damaged_in_transit", "wrong_item"):
        item |= {"customer_comment": "It stopped working.", "photos": 2}
    return {"request.requested_at": _day(DELIVERED, day), "request.items": [item], **more}


def _category(reason: str, condition: str) -> Setter:
    return lambda c: _return(reason, condition, **{"order.lines.0.category": c})


def _price(reason: str, condition: str) -> Setter:
    return lambda v: _return(reason, condition, 5, **{"order.lines.0.unit_price": f"{v:.2f}"})


RETURNS = [
    Probe("return_window_days", "window", lambda d: _return("changed_mind", "new", d), unit="day"),
    Probe("defect_window_days", "window", lambda d: _return("defective", "used", d), unit="day"),
    Probe("final_sale_categories", "category", _category("changed_mind", "new"), out="home"),
    Probe("hygiene_categories", "category", _category("changed_mind", "opened"), out="home"),
    Probe("hazmat_categories", "category", _category("changed_mind", "new"), out="home"),
    Probe("refurbish_categories", "category", _category("changed_mind", "opened"), out="home"),
    Probe("vendor_return_categories", "category", _category("defective", "used"), out="home"),
    Probe("restocking_fee_categories", "category", _category("changed_mind", "opened"), out="home"),
    Probe("max_auto_refund", "threshold", _price("changed_mind", "new"), Decimal("0.01")),
    Probe("inspect_above_value", "threshold", _price("defective", "used"), Decimal("0.01")),
    Probe("returnless_max_value", "threshold", _price("defective", "used"), Decimal("0.01")),
    Probe(
        "high_return_min_orders",
        "threshold",
        lambda n: _return(
            "changed_mind", "new", 5, **{"customer.order_count": n, "customer.return_count": n}
        ),
    ),
]

# --- exceptions (base: 4 mugs at 18.00 placed 2026-11-18, inventory shortfall) ---------

PLACED = "2026-11-18T08:30:00Z"


def _fraud(score: int, signals: list[str] | None = None) -> dict[str, Any]:
    return {"exception": "fraud_review", "details": {"risk_score": score, "signals": signals or []}}


def _payment(code: str = "insufficient_funds", attempts: int = 1) -> dict[str, Any]:
    return {
        "exception": "payment_failed",
        "details": {
            "decline_code": code,
            "attempts": attempts,
            "amount": "72.00",
            "last_attempt_at": "2026-11-19T09:00:00Z",
        },
    }


def _split(extra: Decimal, flags: list[str] | None = None) -> dict[str, Any]:
    leg = {"location_id": "WH-1", "lines": [{"sku": "MUG-BLUE", "quantity": 2}], "cost": "6.00"}
    return {
        "exception": "split_shipment",
        "order.promised_by": "2026-11-26",
        "customer.flags": flags or [],
        "details": {
            "proposed": [
                {**leg, "id": "P1", "ship_date": "2026-11-19"},
                {**leg, "id": "P2", "location_id": "WH-2", "ship_date": "2026-11-21"},
            ],
            "extra_cost": f"{extra:.2f}",
            "consolidate_date": "2026-11-22",
            "consolidated_arrival": "2026-11-24",
            "split_arrival": "2026-11-21",
        },
    }


def _address(confidence: Decimal) -> dict[str, Any]:
    suggestion = {
        "id": "S1",
        "confidence": float(confidence),
        "address": {
            "name": "Dana Reyes",
            "line1": "18 Harbour Street",
            "city": "Portland",
            "region": "ME",
            "postal_code": "04101",
            "country": "US",
        },
    }
    return {
        "exception": "address_invalid",
        "details": {
            "result": "invalid",
            "validator": "usps",
            "messages": ["street number not found"],
            "suggestions": [suggestion],
        },
    }


def _auth(hours: int) -> dict[str, Any]:
    as_of = "2026-11-25T08:30:00Z"
    return {
        "exception": "payment_auth_expiring",
        "order.lines.1": {
            "sku": "KETTLE-1",
            "title": "Kettle",
            "category": "kitchen",
            "quantity": 1,
            "unit_price": "45.00",
            "tags": [],
        },
        "details": {
            "as_of": as_of,
            "expires_at": _hours(as_of, hours),
            "authorized_amount": "117.00",
            "unshipped": [
                {"sku": "MUG-BLUE", "quantity": 4, "ready_to_ship": True},
                {"sku": "KETTLE-1", "quantity": 1, "ready_to_ship": False},
            ],
        },
    }


EXCEPTIONS = [
    Probe(
        "max_backorder_days",
        "window",
        lambda d: {
            "details": {
                "short_lines": [{"sku": "MUG-BLUE", "quantity_short": 4}],
                "restock_eta": _day(PLACED, d)[:10],
                "alternatives": [],
            }
        },
        unit="day",
    ),
    Probe("auth_expiry_buffer_hours", "window", _auth, unit="hour"),
    Probe("release_below_risk", "threshold", _fraud),
    Probe("hard_fraud_threshold", "threshold", _fraud),
    Probe("auto_cancel_fraud_threshold", "threshold", _fraud),
    Probe("strong_fraud_signals", "category", lambda s: _fraud(20, [s]), out="geo_mismatch"),
    Probe("max_payment_retries", "threshold", lambda n: _payment(attempts=n)),
    Probe("hard_decline_codes", "category", lambda c: _payment(c), out="do_not_honor"),
    Probe("contact_decline_codes", "category", lambda c: _payment(c), out="do_not_honor"),
    Probe("split_max_extra_cost", "threshold", _split, Decimal("0.01")),
    Probe("vip_flags", "category", lambda f: _split(Decimal("20.00"), [f]), out="wholesale"),
    Probe("address_min_suggestion_confidence", "threshold", _address, Decimal("0.01")),
    Probe(
        "release_unverifiable_min_orders",
        "threshold",
        lambda n: {
            "exception": "address_invalid",
            "customer.order_count": n,
            "details": {"result": "unverifiable", "messages": ["new construction"]},
        },
    ),
]

# --- routing (base: a lamp and bulbs from a Chicago warehouse or a store) --------------


def _transit(method: str) -> Setter:
    return lambda d: {
        "order.shipping_method": method,
        "order.promised_by": "2026-12-10",
        "locations.0.options.0.transit_days": d,
        "locations.0.options.1.transit_days": d,
    }


ROUTING = [
    Probe("max_transit_days.standard", "window", _transit("standard"), unit="day"),
    Probe("max_transit_days.express", "window", _transit("express"), unit="day"),
    Probe("max_transit_days.next_day", "window", _transit("next_day"), unit="day"),
    Probe(
        "peak_store_backlog_hours",
        "threshold",
        lambda h: {"locations.1.backlog_hours": h, "locations.1.stock.LAMP-ARC": 5},
    ),
]

PROBES: dict[str, list[Probe]] = {"returns": RETURNS, "exceptions": EXCEPTIONS, "routing": ROUTING}


@dataclass
class Generated:
    """A generated suite and what regenerating it changed."""

    suite: Suite
    added: list[str] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)  # proposed, re-proposed
    contradicted: list[dict[str, Any]] = field(default_factory=list)  # accepted by a person


def clause_params(spec: Spec) -> dict[str, list[str]]:
    """Parameter name → the clauses whose text shows it with {{ }}."""
    lines = spec.text.splitlines()
    starts = sorted((c.line, c.id) for c in spec.clauses.values())
    out: dict[str, list[str]] = {}
    for i, (line, cid) in enumerate(starts):
        stop = starts[i + 1][0] - 1 if i + 1 < len(starts) else len(lines)
        for name in PLACEHOLDER_NAME.findall("\n".join(lines[line - 1 : stop])):
            out.setdefault(name, [])
            if cid not in out[name]:
                out[name].append(cid)
    return out


def _number(value: Any) -> Any:
    """A Decimal quantity as a JSON number (money is formatted as a string by its setter)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-").lower()


def probe_cases(kind: str, spec: Spec) -> Iterator[EvalCase]:
    """The boundary cases of a spec's parameters, without expectations."""
    params = flatten(spec.params.model_dump(mode="python"))
    clauses = clause_params(spec)
    for p in PROBES.get(kind, []):
        value: Any = params.get(p.param)
        if value is None:
            continue
        if isinstance(value, float):
            value = Decimal(str(value))
        tags = ["generated", p.param, *clauses.get(p.param.split(".")[0], [])]
        if p.shape == "category":
            points = [("in", m) for m in value] + [("out", p.out)]
        else:
            points = [("below", value - p.step), ("at", value), ("above", value + p.step)]
        for role, v in points:
            if p.shape != "category" and v < 0:
                continue
            label = f"{p.unit} {v}" if p.unit else str(v)
            what = (
                f"{p.param} {role} the list ({v})"
                if p.shape == "category"
                else f"{p.param} = {value}: {label} ({role} the {p.shape})"
            )
            yield EvalCase(
                id=f"gen-{p.param}-{role}-{_slug(v)}",
                description=f"Generated: {what}.",
                tags=[*tags, role],
                set=json.loads(json.dumps(p.at(v), default=_number)),
                expect=Expect(),
                proposed=True,
            )


def propose(
    kind: str, spec: Spec, cases: list[EvalCase], *, base: str, folder: Path, settings: Any
) -> dict[str, dict[str, Any]]:
    """The outcome the deterministic policy of `spec` gives each case (rules mode)."""
    from service.evals.runner import RunConfig, run_suites

    suite = Suite(
        suite=f"{kind}-generated", kind=kind, base=base, cases=cases, path=folder / GENERATED
    )
    result = run_suites(
        settings=settings, config=RunConfig(mode="rules", override=spec), suites=[suite]
    )
    out = {}
    for c in result.cases:
        if c.envelope is None:
            raise ValueError(f"generated case {c.id} does not run: {'; '.join(c.misses)}")
        out[c.id] = {k: c.envelope[k] for k in PROPOSED_FIELDS}
    return out


def generate(*, kind: str, spec: Spec, evals_dir: Path, settings: Any) -> Generated:
    """Regenerate evals/<kind>/generated.yaml from `spec`: new boundary cases are added,
    proposed cases re-proposed, accepted cases kept; the moves are reported."""
    folder = evals_dir / kind
    path = folder / GENERATED
    old = load_suite(path) if path.exists() else None
    kept = list(old.cases) if old else []
    known = {c.id for c in kept}
    fresh = [c for c in probe_cases(kind, spec) if c.id not in known]
    cases = kept + fresh
    base = (old.base if old else None) or "base.json"
    outcomes = propose(
        kind, spec, copy.deepcopy(cases), base=base, folder=folder, settings=settings
    )
    result = Generated(suite=Suite(suite=f"{kind}-generated", kind=kind, base=base, cases=[]))
    new_cases = []
    for c in cases:
        got = outcomes[c.id]
        had = {k: c.expect.fields[k] for k in PROPOSED_FIELDS if k in c.expect.fields}
        if c.id not in known:
            result.added.append(c.id)
        elif had != {k: got[k] for k in had}:
            entry = {"case": c.id, "from": had, "to": got}
            (result.moved if c.proposed else result.contradicted).append(entry)
        if c.proposed:
            c = c.model_copy(update={"expect": Expect(fields=got)})
        new_cases.append(c)
    result.suite = Suite(
        suite=f"{kind}-generated",
        kind=kind,
        description=(
            f"Boundary cases generated by `arbiter eval generate {kind}` from the policy's "
            "parameters and clauses; expectations proposed by the deterministic policy. "
            "Cases marked `proposed: true` gate nothing until a person accepts them (deletes "
            "that line) or edits the expectation."
        ),
        base=base,
        generated_from={
            "sha256": spec.sha256,
            "version": spec.version,
            "parameters": json.loads(json.dumps(spec.params.model_dump(mode="json"))),
        },
        cases=new_cases,
    )
    return result


def dump(suite: Suite) -> str:
    """The suite as YAML, cases in order, without defaults."""
    data = suite.model_dump(mode="json", exclude={"path"}, exclude_none=True)
    data["cases"] = [c.model_dump(mode="json", exclude_defaults=True) for c in suite.cases]
    for c in data["cases"]:
        c.setdefault("expect", {})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def write(result: Generated, evals_dir: Path) -> Path:
    path = evals_dir / result.suite.kind / GENERATED
    path.write_text(dump(result.suite), encoding="utf-8")
    return path
