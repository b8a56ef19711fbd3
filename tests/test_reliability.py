"""Faults injected one by one: storms, breakers, overload, truncation, idempotency races,
limits, secrets. (Crash safety and multi-process writers: test_crash.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import Session, func, select

from service.log.models import DecisionRow
from tests.conftest import LLM_BASE, completion, contract, reply
from tests.test_returns_api import GOOD


def count(api: Any) -> int:
    with Session(api.engine.log.db.engine) as s:
        return int(s.exec(select(func.count()).select_from(DecisionRow)).one())


class FakeClock:
    """A monotonic clock the test moves by hand, so breaker timing never depends on load."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def faulty(api_factory: Any) -> Any:
    """An LLM app whose breaker opens after 3 failures and cools down in 30 s of its clock."""
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        api, cm = await api_factory(
            llm=True, breaker_threshold=3, breaker_cooldown_s=30, llm_max_attempts=1
        )
        api.engine.llm.breakers.clock = FakeClock()
        yield api, mock
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_timeout_storm_opens_the_breaker_then_rules_answer(faulty: Any) -> None:
    api, mock = faulty
    route = mock.post("/chat/completions").mock(side_effect=httpx.ConnectTimeout("down"))
    bodies = [
        r.json()
        for r in await asyncio.gather(
            *(api.decide("returns", contract("returns.request")) for _ in range(20))
        )
    ]
    assert all(b["outcome"] == "approve" and b["source"] == "fallback" for b in bodies)
    reasons = {b["fallback_reason"] for b in bodies}
    assert reasons <= {"llm_timeout", "circuit_open"}  # concurrent ones all tried first
    calls = route.call_count
    later = (await api.decide("returns", contract("returns.request"))).json()
    assert later["fallback_reason"] == "circuit_open" and later["usage"]["llm_calls"] == 0
    assert route.call_count == calls  # no call while every breaker is open
    metrics = (await api.client.get("/metrics")).text
    assert 'arbiter_breaker_open{model="gpt-4o-mini"} 1' in metrics


@pytest.mark.parametrize("status", [429, 500])
async def test_error_storm_breaker_transitions(faulty: Any, status: int) -> None:
    api, mock = faulty
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(status, json={}))
    for _ in range(4):
        await api.decide("returns", contract("returns.request"))
    breakers = api.engine.llm.breakers
    assert breakers.state("gpt-4o-mini") == "open" and breakers.state("gpt-4o") == "open"
    assert (await api.decide("returns", contract("returns.request"))).json()[
        "fallback_reason"
    ] == "circuit_open"
    breakers.clock.now += 31  # cool-down passes: half-open
    assert breakers.state("gpt-4o-mini") == "half_open"
    route.mock(return_value=reply(GOOD))
    probe = (await api.decide("returns", contract("returns.request"))).json()
    assert probe["source"] == "llm" and breakers.state("gpt-4o-mini") == "closed"


async def test_truncated_output_is_invalid_output(llm_api: Any) -> None:
    api, mock = llm_api
    cut = completion('{"outcome": "approve", "items": [{"sku": "JKT')
    cut["choices"][0]["finish_reason"] = "length"
    mock.post("/chat/completions").mock(return_value=httpx.Response(200, json=cut))
    body = (await api.decide("returns", contract("returns.request"))).json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"


async def _slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.3)
    return reply(GOOD)


@pytest.mark.parametrize("mode", ["rules", "reject"])
async def test_overload_beyond_the_limit(api_factory: Any, mode: str) -> None:
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        mock.post("/chat/completions").mock(side_effect=_slow)
        api, cm = await api_factory(llm=True, llm_max_concurrency=2, overload_mode=mode)
        try:
            rs = await asyncio.gather(
                *(api.decide("returns", contract("returns.request")) for _ in range(8))
            )
            llm = [r for r in rs if r.status_code == 200 and r.json()["source"] == "llm"]
            shed = [r for r in rs if r not in llm]
            assert len(llm) == 2 and len(shed) == 6
            if mode == "rules":
                assert {r.json()["fallback_reason"] for r in shed} == {"overloaded"}
                assert count(api) == 8
            else:
                assert {r.status_code for r in shed} == {503}
                assert all(r.headers["retry-after"] == "1" for r in shed)
                assert shed[0].json()["error"]["code"] == "overloaded" and count(api) == 2
        finally:
            await api.client.aclose()
            await cm.__aexit__(None, None, None)


async def test_a_rejected_overload_computes_no_fallback(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """overload_mode=reject answers 503 before the rules' fallback is worked out."""
    from service.kinds.registry import KINDS

    kind, calls = KINDS["returns"], []
    real = kind.fallback
    monkeypatch.setattr(kind, "fallback", lambda c, p: calls.append(c) or real(c, p))
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        mock.post("/chat/completions").mock(side_effect=_slow)
        api, cm = await api_factory(llm=True, llm_max_concurrency=1, overload_mode="reject")
        try:
            rs = await asyncio.gather(
                *(api.decide("returns", contract("returns.request")) for _ in range(4))
            )
            assert sorted(r.status_code for r in rs) == [200, 503, 503, 503]
            assert calls == [] and count(api) == 1
        finally:
            await api.client.aclose()
            await cm.__aexit__(None, None, None)


async def test_per_request_deadline(llm_api: Any) -> None:
    api, mock = llm_api
    mock.post("/chat/completions").mock(side_effect=_slow)
    r = await api.client.post(
        "/v1/decisions/returns",
        json=contract("returns.request"),
        headers=api.auth(),
        params={"deadline_ms": 100},
    )
    assert r.json()["fallback_reason"] == "llm_timeout"
    r = await api.client.post(
        "/v1/decisions/returns",
        json=contract("returns.request"),
        headers=api.auth(),
        params={"deadline_ms": 999_000},
    )
    assert r.status_code == 422


async def test_idempotency_race_one_key_one_record(api: Any) -> None:
    h = {"Idempotency-Key": "refund-RET-5521"}
    rs = await asyncio.gather(
        *(api.decide("returns", contract("returns.request"), **h) for _ in range(100))
    )
    ok = [r for r in rs if r.status_code == 200]
    busy = [r for r in rs if r.status_code == 409]
    assert len(ok) + len(busy) == 100 and ok
    assert len({r.content for r in ok}) == 1  # byte-identical
    assert all(r.headers.get("retry-after") == "1" for r in busy)
    assert count(api) == 1
    again = await api.decide("returns", contract("returns.request"), **h)
    assert again.content == ok[0].content and again.headers["idempotent-replayed"] == "true"
    other = contract("returns.request")
    other["request"]["items"][0]["quantity"] = 1
    other["order"]["id"] = "ORD-OTHER"
    conflict = await api.decide("returns", other, **h)
    assert (
        conflict.status_code == 409 and "different request" in conflict.json()["error"]["message"]
    )
    assert count(api) == 1


async def test_idempotency_key_is_released_when_the_decision_fails(api: Any) -> None:
    from sqlalchemy import text

    h = {"Idempotency-Key": "k-fail"}
    with api.engine.log.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE decisions RENAME TO decisions_gone"))
    assert (await api.decide("returns", contract("returns.request"), **h)).status_code == 503
    with api.engine.log.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE decisions_gone RENAME TO decisions"))
    retry = await api.decide("returns", contract("returns.request"), **h)
    assert retry.status_code == 200 and count(api) == 1


async def test_body_size_depth_and_rate_limits(api_factory: Any) -> None:
    api, cm = await api_factory(max_body_bytes=4096, rate_limit_per_minute=5)
    try:
        big = contract("returns.request")
        big["request"]["items"][0]["customer_comment"] = "x" * 5000
        r = await api.decide("returns", big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        deep: Any = 1
        for _ in range(40):
            deep = [deep]
        r = await api.client.post(
            "/v1/decisions/returns",
            content=json.dumps({"x": deep}),
            headers={**api.auth(), "content-type": "application/json"},
        )
        assert r.status_code == 400 and "nested deeper" in r.json()["error"]["message"]
        codes = [
            (await api.decide("returns", contract("returns.request"))).status_code for _ in range(7)
        ]
        assert codes.count(429) >= 2 and codes[:4] == [200] * 4
        limited = await api.decide("returns", contract("returns.request"))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_long_free_text_is_refused_by_field(api: Any) -> None:
    case = contract("returns.request")
    case["request"]["items"][0]["customer_comment"] = "y" * 4001
    r = await api.decide("returns", case)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "request.items.0.customer_comment"


async def test_secrets_never_logged_or_exposed(
    llm_api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api, mock = llm_api
    caplog.set_level(logging.DEBUG)
    mock.post("/chat/completions").mock(return_value=httpx.Response(500, json={}))
    body = (await api.decide("returns", contract("returns.request"))).json()
    metrics = (await api.client.get("/metrics")).text
    ready = (await api.client.get("/readyz")).text
    detail = (
        await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("admin"))
    ).text
    for secret in ("sk-test-not-a-real-key", *api.keys.values()):
        assert secret not in caplog.text and secret not in metrics and secret not in ready
        assert secret not in detail
    assert body["decision_id"] not in metrics and "CUS-7781" not in metrics
