"""POST /v1/decisions/routing: the LLM is asked only on a tie, and only among tied plans."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import contract, reply
from tests.routing_cases import case, loc, opt, tie_case


def choice(plan_id: str, **kw: Any) -> httpx.Response:
    return reply(
        {
            "plan_id": plan_id,
            "cited_clauses": ["T9"],
            "confidence": 0.8,
            "rationale": "Greener option at nearly the same cost (T9).",
            **kw,
        },
        name="RoutingChoice",
    )


async def test_contract_example_without_tie_never_calls_the_llm(llm_api: Any) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(return_value=choice("x"))
    body = (await api.decide("routing", contract("routing.request"))).json()
    assert body["source"] == "rules" and body["outcome"] == "WH-CHI:UPS.ground"
    assert body["verdict"]["tie"] == {"tie": False, "tied_plan_ids": []}
    assert body["verdict"]["shipments"][0]["eta"] == "2026-11-24"
    assert not route.called


async def test_rules_mode_contract_example(api: Any) -> None:
    body = (await api.decide("routing", contract("routing.request"))).json()
    assert body["source"] == "rules" and body["verdict"]["total_cost"] == "11.40"


async def test_tie_is_broken_by_the_llm(llm_api: Any) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(return_value=choice("WH-B:FedEx.home"))
    body = (await api.decide("routing", tie_case())).json()
    assert body["source"] == "llm", body["checks"]
    assert body["outcome"] == "WH-B:FedEx.home"
    assert body["verdict"]["tie"]["tie"] is True
    assert set(body["verdict"]["tie"]["tied_plan_ids"]) == {"WH-A:UPS.ground", "WH-B:FedEx.home"}
    sent = json.loads(route.calls[0].request.content)
    shown = sent["messages"][1]["content"]
    assert "WH-A:UPS.ground" in shown and "WH-B:FedEx.home" in shown
    assert '"locations"' not in shown  # only the tied plans are shown
    schema = json.dumps(sent["tools"][0]["function"]["parameters"])
    assert "WH-A:UPS.ground" in schema  # the response model restricts the choice


async def test_llm_naming_a_plan_outside_the_tie_is_refused(llm_api: Any) -> None:
    api, mock = llm_api
    data = tie_case()
    data["locations"].append(
        loc(
            "WH-C",
            {"LAMP": 5, "BULB": 50},
            caps=["fragile"],
            options=[opt("DHL", "slow", "30.00", 2, 0.8, 3.0)],
        )
    )
    route = mock.post("/chat/completions").mock(return_value=choice("WH-C:DHL.slow"))
    body = (await api.decide("routing", data)).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"
    assert body["outcome"] == "WH-A:UPS.ground"
    assert route.call_count == 4  # ask + one re-ask per model of the chain


async def test_llm_naming_an_infeasible_plan_is_refused(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(return_value=choice("ST-LINCOLN:Local.courier"))
    body = (await api.decide("routing", tie_case())).json()
    assert body["source"] == "fallback" and body["outcome"] == "WH-A:UPS.ground"


async def test_llm_failure_falls_back_to_stable_order(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(return_value=httpx.Response(503, json={}))
    body = (await api.decide("routing", tie_case())).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "llm_error"
    assert body["outcome"] == "WH-A:UPS.ground" and "T10" in body["cited_clauses"]


async def test_cannot_fulfil_is_a_verdict_not_an_error(api: Any) -> None:
    data = case([("A", 9, [])], [loc("W1", {"A": 1})])
    r = await api.decide("routing", data)
    assert r.status_code == 200
    body = r.json()
    assert body["outcome"] == "cannot_fulfil" and body["verdict"]["blocking"]


async def test_duplicate_location_ids_are_422(api: Any) -> None:
    data = case([("A", 1, [])], [loc("W1", {"A": 1}), loc("W1", {"A": 1})])
    r = await api.decide("routing", data)
    assert r.status_code == 422 and "location ids must be unique" in r.text
