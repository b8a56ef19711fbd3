"""The `routing` decision kind: the planner decides, the LLM only breaks ties."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from service.kinds.base import (
    DecisionKind,
    Ruling,
    Term,
    TermRule,
    VerdictBase,
    sample_json,
    utc_day,
)
from service.routing.models import (
    RoutingCase,
    RoutingParameters,
    RoutingVerdict,
    Shipment,
    ShipmentLine,
    Tie,
)
from service.routing.planner import Plan, PlanResult, plan


def _verdict(
    result: PlanResult,
    chosen: Plan | None,
    *,
    clauses: list[str],
    rationale: str,
    confidence: float,
) -> RoutingVerdict:
    tie = Tie(
        tie=result.is_tie, tied_plan_ids=[p.plan_id for p in result.tied] if result.is_tie else []
    )
    if chosen is None:
        return RoutingVerdict(
            action="cannot_fulfil",
            plan_id=None,
            shipments=[],
            total_cost=Decimal("0.00"),
            packages=0,
            score_breakdown={},
            tie=tie,
            blocking=result.blocking,
            cited_clauses=["T11"],
            rationale="No feasible plan: " + "; ".join(result.blocking),
            confidence=1.0,
        )
    shipments = [
        Shipment(
            location_id=leg.location.id,
            lines=[ShipmentLine(sku=ln.sku, quantity=ln.quantity) for ln in leg.lines],
            carrier=leg.option.carrier,
            service=leg.option.service,
            cost=leg.option.cost,
            eta=leg.eta,
        )
        for leg in chosen.legs
    ]
    return RoutingVerdict(
        action="ship",
        plan_id=chosen.plan_id,
        shipments=shipments,
        total_cost=chosen.cost,
        packages=chosen.packages,
        score_breakdown=chosen.parts,
        tie=tie,
        cited_clauses=clauses,
        rationale=rationale,
        confidence=confidence,
    )


def _describe(p: Plan) -> str:
    return f"{p.plan_id} (score {p.score:.2f}, cost {p.cost}, {p.packages} package(s))"


class Routing(DecisionKind[RoutingCase, RoutingVerdict, RoutingParameters]):
    """Which location and carrier ship an order; the LLM only chooses among tied plans."""

    name = "routing"
    Case = RoutingCase
    Verdict = RoutingVerdict
    Parameters = RoutingParameters
    guardrails_version = "routing-guard-2"
    clause_refs = frozenset(f"T{i}" for i in range(1, 12))
    outcome_field = None  # a plan id, or cannot_fulfil

    def example(self) -> dict[str, Any]:
        return sample_json("routing.json")

    def analyse(self, case: RoutingCase, params: RoutingParameters) -> PlanResult:
        """The planner's feasible plans, scores and tie (T1-T8), once per decision."""
        return plan(case, params)

    def precheck(
        self, case: RoutingCase, params: RoutingParameters, facts: PlanResult | None = None
    ) -> RoutingVerdict | None:
        result = self.facts(case, params, facts)
        if result.best is None:
            return _verdict(result, None, clauses=[], rationale="", confidence=1.0)
        if result.is_tie:
            return None
        best = result.best
        runner = result.plans[1] if len(result.plans) > 1 else None
        why = f"Best plan {_describe(best)}"
        if runner is not None:
            why += (
                f"; next {_describe(runner)} is {runner.score - best.score:.2f} worse, "
                f"beyond the tie margin {params.tie_margin}"
            )
        return _verdict(
            result, best, clauses=["T5", "T8"], rationale=why + " (T5, T8).", confidence=1.0
        )

    def rulings(
        self,
        case: RoutingCase,
        params: RoutingParameters,
        facts: PlanResult,
        verdict: RoutingVerdict | None,
        *,
        person: bool = False,
    ) -> list[Ruling[RoutingVerdict]]:
        """The rules' plan (T5, or T10 in a tie) first, then every other tied plan (T9)."""
        result = facts
        chosen = result.chosen_by_rules()
        if chosen is None:
            v = _verdict(result, None, clauses=[], rationale="", confidence=1.0)
            return [Ruling(v, {}, "cannot_fulfil", Term("plan_in_tie", "T11", "no"))]
        if not result.is_tie:
            first = _verdict(
                result,
                chosen,
                clauses=["T5"],
                rationale=f"Best plan {_describe(chosen)} (T5).",
                confidence=1.0,
            )
        else:
            first = _verdict(
                result,
                chosen,
                clauses=["T8", "T10"],
                confidence=1.0,
                rationale=f"Tie among {len(result.tied)} plans; by the stable order "
                f"(lowest cost, fewest packages, location id) {_describe(chosen)} "
                "(T10).",
            )
        allowed = result.tied if result.is_tie else result.plans[:1]
        feasible = {p.plan_id for p in result.plans}

        def plan_term(got: Any) -> Term:
            why = (
                "is feasible but not one of the tied plans"
                if got in feasible
                else "is not a feasible plan"
            )
            return Term(
                "plan_in_tie",
                "T8",
                "no",
                f"{got!r} {why}; allowed: {', '.join(p.plan_id for p in allowed)}",
            )

        terms: dict[str, TermRule] = {"plan_id": plan_term, "action": plan_term}
        planner = Term("plan_matches_planner", "T5", "yes", "restored from the planner")
        out = [Ruling(first, terms, chosen.plan_id, planner)]
        if verdict is not None:
            for p in allowed:
                if p is not chosen:
                    v = _verdict(result, p, clauses=["T9"], rationale="", confidence=1.0)
                    out.append(Ruling(v, terms, p.plan_id, planner))
        return out

    def llm_model(
        self, case: RoutingCase, params: RoutingParameters, facts: PlanResult | None = None
    ) -> type[BaseModel]:
        """A choice restricted to the ids of the tied plans."""
        ids = tuple(p.plan_id for p in self.facts(case, params, facts).tied)
        choice: Any = Literal[ids]
        model: type[BaseModel] = create_model(
            "RoutingChoice",
            __base__=VerdictBase,
            plan_id=(choice, Field(description="The id of one of the tied plans.")),
        )
        return model

    def from_llm(
        self,
        case: RoutingCase,
        params: RoutingParameters,
        answer: Any,
        facts: PlanResult | None = None,
    ) -> RoutingVerdict:
        result = self.facts(case, params, facts)
        chosen = next((p for p in result.plans if p.plan_id == answer.plan_id), None)
        verdict = _verdict(
            result,
            chosen,
            clauses=list(answer.cited_clauses),
            rationale=answer.rationale,
            confidence=answer.confidence,
        )
        if chosen is None:  # keep what the LLM named so the guard can refuse it
            verdict.plan_id, verdict.action = str(answer.plan_id), "ship"
            verdict.cited_clauses = list(answer.cited_clauses)
        return verdict

    def prompt_case(
        self, case: RoutingCase, params: RoutingParameters, facts: PlanResult | None = None
    ) -> dict[str, Any]:
        """The order and only the tied plans, described by their ids."""
        result = self.facts(case, params, facts)
        locations = {loc.id: loc for loc in case.locations}
        tied = []
        for p in result.tied:
            tied.append(
                {
                    "plan_id": p.plan_id,
                    "total_cost": str(p.cost),
                    "packages": p.packages,
                    "score": p.parts,
                    "shipments": [
                        {
                            "location_id": leg.location.id,
                            "location_type": leg.location.type,
                            "backlog_hours": leg.location.backlog_hours,
                            "capabilities": leg.location.capabilities,
                            "lines": [
                                {
                                    "sku": ln.sku,
                                    "quantity": ln.quantity,
                                    "tags": ln.tags,
                                    "stock_at_location": locations[leg.location.id].stock.get(
                                        ln.sku, 0
                                    ),
                                }
                                for ln in leg.lines
                            ],
                            "carrier": leg.option.carrier,
                            "service": leg.option.service,
                            "cost": str(leg.option.cost),
                            "eta": leg.eta.isoformat(),
                            "on_time_rate": leg.option.on_time_rate,
                            "co2_kg": leg.option.co2_kg,
                        }
                        for leg in p.legs
                    ],
                }
            )
        return {"order": case.order.model_dump(mode="json"), "peak": case.peak, "tied_plans": tied}

    def outcome(self, verdict: RoutingVerdict) -> str:
        return verdict.plan_id or "cannot_fulfil"

    def reference_date(self, case: RoutingCase) -> date:
        return utc_day(case.order.placed_at)

    def subjects(self, case: RoutingCase) -> tuple[str | None, str | None]:
        return case.order.id, None


KIND = Routing()
