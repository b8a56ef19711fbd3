"""Enumerate feasible fulfilment plans, score them, and find ties."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import combinations

from service.kinds.base import utc_day
from service.routing.models import (
    CarrierOption,
    Location,
    OrderLine,
    RoutingCase,
    RoutingParameters,
)


@dataclass(frozen=True)
class Unit:
    """Lines that must ship from one location: a ship-together group, or a single line."""

    key: str
    lines: tuple[OrderLine, ...]

    @property
    def needs(self) -> set[str]:
        return {t for ln in self.lines for t in ln.tags if t in ("fragile", "hazmat")}


@dataclass
class Leg:
    """One shipment of a plan."""

    location: Location
    lines: list[OrderLine]
    option: CarrierOption
    ship_date: date
    eta: date


@dataclass
class Plan:
    plan_id: str
    legs: list[Leg]
    score: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return sum((leg.option.cost for leg in self.legs), Decimal("0.00"))

    @property
    def packages(self) -> int:
        return len(self.legs)

    @property
    def location_ids(self) -> tuple[str, ...]:
        return tuple(leg.location.id for leg in self.legs)

    def tie_order(self) -> tuple[Decimal, int, tuple[str, ...], str]:
        """Stable order among tied plans: lowest cost, fewest packages, location id (T10)."""
        return (self.cost, self.packages, self.location_ids, self.plan_id)


@dataclass
class PlanResult:
    plans: list[Plan]  # feasible, best first
    tied: list[Plan]  # the best plans within the tie margin (>= 2 means a tie)
    blocking: list[str]

    @property
    def best(self) -> Plan | None:
        return self.plans[0] if self.plans else None

    @property
    def is_tie(self) -> bool:
        return len(self.tied) >= 2

    def chosen_by_rules(self) -> Plan | None:
        """No tie: the best plan. A tie: the first in the stable tie order."""
        if not self.plans:
            return None
        return min(self.tied, key=Plan.tie_order) if self.is_tie else self.plans[0]


def units_of(case: RoutingCase) -> list[Unit]:
    """Group lines: every ship_together group is one unit (T2)."""
    groups: dict[str, list[OrderLine]] = {}
    for ln in case.order.lines:
        groups.setdefault(f"group:{ln.group}" if ln.group else f"line:{ln.sku}", []).append(ln)
    return [Unit(key=k, lines=tuple(v)) for k, v in groups.items()]


def business_day_on_or_after(day: date, holidays: set[date]) -> date:
    while day.weekday() >= 5 or day in holidays:
        day += timedelta(days=1)
    return day


def add_business_days(day: date, n: int, holidays: set[date]) -> date:
    for _ in range(n):
        day = business_day_on_or_after(day + timedelta(days=1), holidays)
    return day


def ship_date(placed_at: datetime, location: Location, holidays: set[date]) -> date:
    """When a location can hand the parcel over: placed time plus backlog, on a UTC business day."""
    return business_day_on_or_after(
        utc_day(placed_at + timedelta(hours=location.backlog_hours)), holidays
    )


def can_serve(location: Location, unit: Unit) -> bool:
    """Stock and capabilities for every line of the unit (T1)."""
    return (
        location.active
        and unit.needs <= set(location.capabilities)
        and all(location.stock.get(ln.sku, 0) >= ln.quantity for ln in unit.lines)
    )


def option_ok(case: RoutingCase, p: RoutingParameters, option: CarrierOption, eta: date) -> bool:
    """Promised date and shipping method (T3, T4)."""
    return (
        eta <= case.order.promised_by
        and option.transit_days <= p.max_transit_days[case.order.shipping_method]
    )


def _legs_for(
    case: RoutingCase,
    p: RoutingParameters,
    location: Location,
    lines: list[OrderLine],
    holidays: set[date],
) -> list[Leg]:
    ship = ship_date(case.order.placed_at, location, holidays)
    legs = []
    for option in location.options:
        eta = add_business_days(ship, option.transit_days, holidays)
        if option_ok(case, p, option, eta):
            legs.append(Leg(location, lines, option, ship, eta))
    return legs


def _leg_key(leg: Leg) -> str:
    return f"{leg.location.id}:{leg.option.carrier}.{leg.option.service}"


def score(case: RoutingCase, p: RoutingParameters, plan: Plan) -> None:
    """Score parts in currency-equivalent units; lower is better (T5–T7)."""
    w = p.weights
    promised = case.order.promised_by
    slack = min((promised - leg.eta).days for leg in plan.legs)
    store_legs = [leg for leg in plan.legs if leg.location.type == "store"]
    parts = {
        "cost": w.cost * float(plan.cost),
        "packages": w.package * (plan.packages - 1),
        "eta_slack": w.eta_slack * max(0, p.slack_target_days - slack),
        "on_time": w.on_time * (1 - min(leg.option.on_time_rate for leg in plan.legs)),
        "co2": w.co2 * sum(leg.option.co2_kg for leg in plan.legs),
        "store_backlog": w.store_backlog
        * sum(leg.location.backlog_hours / 24 for leg in store_legs),
        "store_stock": w.store_stock
        * sum(
            ln.quantity / max(1, leg.location.stock.get(ln.sku, 0))
            for leg in store_legs
            for ln in leg.lines
        ),
    }
    plan.parts = {k: round(v, 4) for k, v in parts.items()}
    plan.score = round(sum(parts.values()), 4)
    plan.parts["total"] = plan.score


def _split_plans(
    case: RoutingCase,
    p: RoutingParameters,
    units: list[Unit],
    serving: dict[str, list[Location]],
    holidays: set[date],
) -> Iterable[Plan]:
    """Plans over 2..max_split_locations locations among the best-covering candidates."""
    coverage: dict[str, int] = {}
    for locs in serving.values():
        for loc in locs:
            coverage[loc.id] = coverage.get(loc.id, 0) + 1
    by_id = {loc.id: loc for locs in serving.values() for loc in locs}
    candidates = sorted(
        by_id.values(), key=lambda loc: (-coverage[loc.id], loc.backlog_hours, loc.id)
    )[: p.split_candidates]
    for size in range(2, p.max_split_locations + 1):
        for combo in combinations(candidates, size):
            for order in (combo, combo[::-1]):
                assignment: dict[str, list[OrderLine]] = {}
                for unit in units:
                    server = next((c for c in order if can_serve(c, unit)), None)
                    if server is None:
                        break
                    assignment.setdefault(server.id, []).extend(unit.lines)
                else:
                    if len(assignment) != size:
                        continue  # not a real split: one location took everything
                    legs = []
                    for loc_id, lines in assignment.items():
                        options = _legs_for(case, p, by_id[loc_id], lines, holidays)
                        if not options:
                            break
                        legs.append(
                            min(options, key=lambda lg: (lg.option.cost, -lg.option.on_time_rate))
                        )
                    else:
                        legs.sort(key=lambda lg: lg.location.id)
                        yield Plan(plan_id="+".join(_leg_key(lg) for lg in legs), legs=legs)


def plan(case: RoutingCase, p: RoutingParameters) -> PlanResult:
    """Every feasible plan, scored and ranked, with the tie among the best."""
    holidays = set(p.holidays)
    units = units_of(case)
    active = [loc for loc in case.locations if loc.active]
    serving = {u.key: [loc for loc in active if can_serve(loc, u)] for u in units}
    serving_ids = {k: {loc.id for loc in locs} for k, locs in serving.items()}
    plans: dict[str, Plan] = {}
    # single-location plans first: every carrier option of every location serving all units
    for loc in active:
        if all(loc.id in serving_ids[u.key] for u in units):
            lines = [ln for u in units for ln in u.lines]
            for leg in _legs_for(case, p, loc, lines, holidays):
                pl = Plan(plan_id=_leg_key(leg), legs=[leg])
                plans[pl.plan_id] = pl
    if len(units) > 1 and p.max_split_locations > 1:
        for pl in _split_plans(case, p, units, serving, holidays):
            plans.setdefault(pl.plan_id, pl)
    for pl in plans.values():
        score(case, p, pl)
    ranked = sorted(plans.values(), key=lambda pl: (pl.score, *pl.tie_order()))
    tied = (
        [pl for pl in ranked if pl.score - ranked[0].score <= p.tie_margin][: p.max_tied_plans]
        if ranked
        else []
    )
    return PlanResult(
        plans=ranked, tied=tied, blocking=[] if ranked else blocking(case, p, units, holidays)
    )


def blocking(
    case: RoutingCase, p: RoutingParameters, units: list[Unit], holidays: set[date]
) -> list[str]:
    """Why no plan is feasible, in words an ops person can act on (T11)."""
    reasons = []
    active = [loc for loc in case.locations if loc.active]
    inactive = [loc.id for loc in case.locations if not loc.active]
    if inactive:
        reasons.append(f"inactive locations skipped: {', '.join(inactive)}")
    for unit in units:
        label = unit.key.split(":", 1)[1]
        what = f"ship-together group {label}" if unit.key.startswith("group:") else label
        stocked = [
            loc
            for loc in active
            if all(loc.stock.get(ln.sku, 0) >= ln.quantity for ln in unit.lines)
        ]
        if not stocked:
            reasons.append(f"stock: no active location holds all of {what}")
            continue
        capable = [loc for loc in stocked if unit.needs <= set(loc.capabilities)]
        if not capable:
            reasons.append(
                f"capability: {what} needs {', '.join(sorted(unit.needs))}; the "
                f"locations with stock ({', '.join(x.id for x in stocked)}) lack it"
            )
            continue
        if not any(_legs_for(case, p, loc, list(unit.lines), holidays) for loc in capable):
            reasons.append(
                f"promised date: no carrier option from "
                f"{', '.join(x.id for x in capable)} delivers {what} by "
                f"{case.order.promised_by} with {case.order.shipping_method} "
                "shipping"
            )
    if len(reasons) == len(inactive[:1]):  # every unit is servable alone
        reasons.append(
            "no combination of locations within the split limit "
            f"({p.max_split_locations}) covers every line"
        )
    return reasons
