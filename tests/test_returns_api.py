"""POST /v1/decisions/returns end to end, with the OpenAI HTTP API mocked by respx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from service.log.models import DecisionRow
from tests.conftest import LLM_BASE, completion, contract, reply

GOOD = {
    "outcome": "approve",
    "items": [
        {
            "sku": "JKT-RAIN-M",
            "quantity_approved": 1,
            "refund_amount": "129.00",
            "disposition": "refurbish",
        }
    ],
    "refund_method": "original_payment",
    "refund_timing": "on_carrier_scan",
    "restocking_fee": "0.00",
    "label_required": True,
    "customer_message": "Your return for the rain jacket is approved.",
    "cited_clauses": ["R2", "R8"],
    "rationale": "Zip failure reported on day 14, inside the 90-day defect window (R2).",
    "confidence": 0.91,
}


def verdict(**changes: Any) -> dict[str, Any]:
    v = json.loads(json.dumps(GOOD))
    v.update(changes)
    return v


def rows(api: Any) -> list[DecisionRow]:
    with Session(api.engine.log.db.engine) as s:
        return list(s.exec(select(DecisionRow)).all())


ENVELOPE_KEYS = set(json.loads(open("tests/fixtures/contract/decision.response.json").read()))


async def test_contract_example_rules_mode(api: Any) -> None:
    r = await api.decide("returns", contract("returns.request"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert ENVELOPE_KEYS <= set(body)
    assert body["decision_id"].startswith("dec_") and len(body["decision_id"]) == 30
    assert body["source"] == "fallback" and body["fallback_reason"] == "llm_disabled"
    assert body["outcome"] == "approve"
    assert body["verdict"]["items"][0]["refund_amount"] == "129.00"
    assert body["spec"]["name"] == "returns" and len(body["spec"]["sha256"]) == 64
    assert body["created_at"].endswith("Z")
    assert len(rows(api)) == 1


async def test_in_policy_llm_verdict(llm_api: Any) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(return_value=reply(GOOD))
    r = await api.decide("returns", contract("returns.request"))
    body = r.json()
    assert r.status_code == 200, body
    assert body["source"] == "llm" and body["model"] == "gpt-4o-mini"
    assert body["outcome"] == "approve" and body["needs_review"] is False
    assert body["cited_clauses"] == ["R2", "R8"]
    assert {c["status"] for c in body["checks"]} == {"passed"}
    assert body["usage"] == {
        "prompt_tokens": 1200,
        "completion_tokens": 150,
        "llm_calls": 1,
        "cost_usd": "0.000270",
    }
    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    assert (
        sent["messages"][0]["role"] == "system"
        and "R1 Return window" in sent["messages"][0]["content"]
    )
    assert "<case>" in sent["messages"][1]["content"]
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-test-not-a-real-key"


async def test_refund_above_paid_is_repaired(llm_api: Any) -> None:
    api, mock = llm_api
    bad = verdict(
        items=[
            {
                "sku": "JKT-RAIN-M",
                "quantity_approved": 1,
                "refund_amount": "499.00",
                "disposition": "refurbish",
            }
        ]
    )
    mock.post("/chat/completions").mock(return_value=reply(bad))
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "llm"
    assert body["verdict"]["items"][0]["refund_amount"] == "129.00"
    check = next(c for c in body["checks"] if c["name"] == "refund_within_paid")
    assert check["status"] == "repaired" and "499.00 → 129.00" in check["detail"]


async def test_llm_approving_a_final_sale_change_of_mind_fails_to_fallback(llm_api: Any) -> None:
    api, mock = llm_api
    case = contract("returns.request")
    case["request"]["items"].append(
        {"sku": "SWIM-01-S", "quantity": 2, "reason": "changed_mind", "condition": "new"}
    )
    both = verdict(
        items=[
            *GOOD["items"],
            {
                "sku": "SWIM-01-S",
                "quantity_approved": 2,
                "refund_amount": "70.00",
                "disposition": "restock",
            },
        ]
    )
    mock.post("/chat/completions").mock(return_value=reply(both))
    body = (await api.decide("returns", case)).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "guardrail_violation"
    check = next(c for c in body["checks"] if c["name"] == "hard_eligibility")
    assert check["status"] == "failed" and "SWIM-01-S" in check["detail"]
    assert body["outcome"] == "approve_partial"
    swim = next(i for i in body["verdict"]["items"] if i["sku"] == "SWIM-01-S")
    assert swim["quantity_approved"] == 0 and "R3" in body["cited_clauses"]


async def test_cited_clause_that_does_not_exist(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(return_value=reply(verdict(cited_clauses=["R2", "R99"])))
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "fallback"
    assert body["fallback_reason"] == "guardrail_violation"
    check = next(c for c in body["checks"] if c["name"] == "cited_clauses_exist")
    assert check["status"] == "failed" and "R99" in check["detail"]
    assert "R99" not in body["cited_clauses"]


async def test_timeout_falls_back(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(side_effect=httpx.ReadTimeout("slow model"))
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "llm_timeout"
    assert body["outcome"] == "approve"
    detail = (
        await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("audit"))
    ).json()
    assert detail["attempts"] and {a["status"] for a in detail["attempts"]} == {"timeout"}


async def test_deadline_falls_back(llm_api: Any) -> None:
    api, mock = llm_api

    async def hang(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(30)
        return reply(GOOD)

    mock.post("/chat/completions").mock(side_effect=hang)
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["fallback_reason"] == "llm_timeout"
    assert body["latency_ms"]["total"] < 5000


@pytest.mark.parametrize("status", [429, 500])
async def test_retried_then_fallback(llm_api: Any, status: int) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(
        return_value=httpx.Response(status, json={"error": {"message": "busy"}})
    )
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "llm_error"
    # 3 attempts on the primary, 3 on the fallback model of the spec's chain
    assert route.call_count == 6
    detail = (
        await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("audit"))
    ).json()
    expected = "rate_limited" if status == 429 else "server_error"
    assert [a["status"] for a in detail["attempts"]] == [expected] * 6
    assert [a["model"] for a in detail["attempts"]] == ["gpt-4o-mini"] * 3 + ["gpt-4o"] * 3


async def test_retry_then_success(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(
        side_effect=[httpx.Response(500, json={"error": {"message": "oops"}}), reply(GOOD)]
    )
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "llm" and body["usage"]["llm_calls"] == 2


async def test_malformed_json_reasks_once_then_falls_back(llm_api: Any) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=completion('{"outcome": "approve", "items": ['))
    )
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"
    assert route.call_count == 4  # one ask + one re-ask, per model in the chain
    detail = (
        await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("audit:pii"))
    ).json()
    assert [a["status"] for a in detail["attempts"]] == ["invalid_output"] * 4
    assert detail["attempts"][0]["raw_output"] == '{"outcome": "approve", "items": ['
    assert detail["usage"]["llm_calls"] == 4 and detail["usage"]["prompt_tokens"] == 4800


async def test_reask_recovers(llm_api: Any) -> None:
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(
        side_effect=[httpx.Response(200, json=completion('{"outcome": "maybe"}')), reply(GOOD)]
    )
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "llm" and route.call_count == 2
    second = json.loads(route.calls[1].request.content)
    assert len(second["messages"]) > 2  # the re-ask carries the validation error back


async def test_low_confidence_needs_review(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(return_value=reply(verdict(confidence=0.4)))
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "llm" and body["needs_review"] is True
    assert any("confidence 0.40" in r for r in body["review_reasons"])


async def test_invalid_case_is_422_and_not_logged(api: Any) -> None:
    case = contract("returns.request")
    case["order"]["lines"][0]["unit_price"] = 129.0
    del case["request"]["requested_at"]
    r = await api.decide("returns", case)
    assert r.status_code == 422
    err = r.json()["error"]
    fields = {d["field"] for d in err["details"]}
    assert "order.lines.0.unit_price" in fields and "request.requested_at" in fields
    assert rows(api) == []


async def test_unknown_sku_is_422(api: Any) -> None:
    case = contract("returns.request")
    case["request"]["items"][0]["sku"] = "NOPE"
    r = await api.decide("returns", case)
    assert r.status_code == 422
    assert "not a line of the order" in r.json()["error"]["message"]


async def test_malformed_body_is_400(api: Any) -> None:
    r = await api.client.post(
        "/v1/decisions/returns",
        content=b"{not json",
        headers={**api.auth(), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


async def test_unknown_kind_is_404(api: Any) -> None:
    r = await api.decide("nope", {})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_auth(api: Any) -> None:
    r = await api.client.post("/v1/decisions/returns", json=contract("returns.request"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = await api.client.post(
        "/v1/decisions/returns",
        json=contract("returns.request"),
        headers={"Authorization": "Bearer arb_wrong"},
    )
    assert r.status_code == 401
    r = await api.client.post(
        "/v1/decisions/returns", json=contract("returns.request"), headers=api.auth("audit")
    )
    assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "decide"
    ok = await api.decide("returns", contract("returns.request"))
    r = await api.client.get(f"/v1/decisions/{ok.json()['decision_id']}", headers=api.auth())
    assert r.status_code == 403
    r = await api.client.get(f"/v1/decisions/{ok.json()['decision_id']}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["chain"]["seq"] == 1


async def test_store_failure_is_503_and_nothing_returned(api: Any) -> None:
    from sqlalchemy import text

    with api.engine.log.db.engine.begin() as conn:  # the log becomes unwritable
        conn.execute(text("ALTER TABLE decisions RENAME TO decisions_gone"))
    r = await api.decide("returns", contract("returns.request"))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "store_unavailable"
    assert "decision_id" not in r.text
    with api.engine.log.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE decisions_gone RENAME TO decisions"))
        assert conn.execute(text("SELECT count(*) FROM decisions")).scalar() == 0
        assert conn.execute(text("SELECT count FROM chain_head WHERE id = 1")).scalar() == 0


async def test_health(api: Any) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["specs"]["returns"] == "ok"
    assert r.json()["llm"].startswith("disabled")


def test_llm_base_is_mocked_host() -> None:
    assert LLM_BASE.startswith("http://llm.test")
