"""The LLM seam against a loopback OpenAI-compatible server: structured-output modes, robust
parsing across providers, tool-call hygiene, Retry-After, typed errors, personal data."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import openai
import pytest

from service.errors import (
    ArbiterError,
    InvalidOutput,
    LLMError,
    ModelHTTPError,
    ModelTimeout,
    ModelUnreachable,
)
from service.llm.client import typed_error
from service.llm.parse import InvalidReply, extract_json
from service.llm.retry import parse_retry_after
from tests.conftest import Api, contract
from tests.fake_openai import FakeOpenAI, Step, delay, malformed_body, status, verdict
from tests.test_returns_api import GOOD

COMMENT = "The zip broke the second time I wore it."


async def decide(api: Api) -> dict[str, Any]:
    r = await api.decide("returns", contract("returns.request"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def record(api: Api, decision_id: str) -> dict[str, Any]:
    r = await api.client.get(f"/v1/decisions/{decision_id}", headers=api.auth("admin"))
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture
async def mode_api(api_factory: Any, fake_llm: FakeOpenAI, request: pytest.FixtureRequest) -> Any:
    """The app with the default alias in the structured-output mode given by the test."""
    api, cm = await api_factory(
        llm=True, llm_base_url=fake_llm.base_url, llm_mode=request.param, llm_max_attempts=2
    )
    yield api, fake_llm
    await api.client.aclose()
    await cm.__aexit__(None, None, None)


# --- what each mode asks for -----------------------------------------------------------


@pytest.mark.parametrize("mode_api", ["tools", "json_schema", "json"], indirect=True)
async def test_each_mode_asks_its_way_and_a_valid_answer_is_accepted(mode_api: Any) -> None:
    api, llm = mode_api
    llm.script(verdict(GOOD))  # sent as a tool call for tools, as content otherwise
    body = await decide(api)
    assert body["source"] == "llm" and body["outcome"] == "approve", body
    sent = llm.chat_requests[-1]
    mode = api.app.state.settings.llm_mode
    if mode == "tools":
        assert sent["tools"][0]["function"]["name"] == "ReturnVerdict"
        assert sent["tool_choice"]["function"]["name"] == "ReturnVerdict"
        assert "response_format" not in sent
    elif mode == "json_schema":
        fmt = sent["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "ReturnVerdict"
        assert "refund_timing" in json.dumps(fmt["json_schema"]["schema"]) and "tools" not in sent
    else:
        assert sent["response_format"] == {"type": "json_object"} and "tools" not in sent
        assert "refund_timing" in sent["messages"][-1]["content"]  # the schema is in the prompt


# --- robust parsing across providers (issue 18.4) ----------------------------------------


@pytest.mark.parametrize("mode_api", ["tools"], indirect=True)
async def test_tools_mode_accepts_a_valid_answer_in_content(mode_api: Any) -> None:
    api, llm = mode_api  # e.g. a server that ignores the forced tool_choice
    llm.script(verdict(GOOD, style="content", prose="Here is my decision:"))
    body = await decide(api)
    assert body["source"] == "llm" and body["usage"]["llm_calls"] == 1


@pytest.mark.parametrize("mode_api", ["json_schema", "json"], indirect=True)
@pytest.mark.parametrize(
    "step",
    [
        verdict(GOOD, fence=True),
        verdict(GOOD, prose="Sure! Based on the policy, the verdict is:"),
        verdict(GOOD, fence=True, prose="Decision below."),
    ],
    ids=["code-fence", "prose-before", "prose-and-fence"],
)
async def test_json_modes_accept_fenced_or_prefixed_json(mode_api: Any, step: Step) -> None:
    api, llm = mode_api
    llm.script(step)
    body = await decide(api)
    assert body["source"] == "llm" and body["usage"]["llm_calls"] == 1, body


@pytest.mark.parametrize("mode_api", ["tools", "json_schema"], indirect=True)
async def test_malformed_json_gets_one_reask_then_rules(mode_api: Any) -> None:
    api, llm = mode_api
    cut = '{"outcome": "approve", '
    tools = api.app.state.settings.llm_mode == "tools"
    bad = Step(arguments=cut) if tools else Step(content=cut)
    llm.script(bad, bad, bad, bad)
    body = await decide(api)
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"
    # each model of the chain: the question and exactly one re-ask, no more
    assert body["usage"]["llm_calls"] == 4
    rec = await record(api, body["decision_id"])
    assert [a["reask"] for a in rec["attempts"]] == [False, True, False, True]
    assert len(llm.chat_requests) == 4


@pytest.mark.parametrize("mode_api", ["tools"], indirect=True)
async def test_reask_carries_the_error_and_a_fixed_answer_is_accepted(mode_api: Any) -> None:
    api, llm = mode_api
    llm.script(verdict({**GOOD, "outcome": "maybe"}), verdict(GOOD))
    body = await decide(api)
    assert body["source"] == "llm" and body["usage"]["llm_calls"] == 2
    reask = llm.chat_requests[1]["messages"]
    assert reask[-2]["role"] == "assistant" and reask[-2]["tool_calls"]
    assert reask[-1]["role"] == "tool" and "outcome" in reask[-1]["content"]


def test_extract_json_rules() -> None:
    assert json.loads(extract_json('```json\n{"a": 1}\n```')) == {"a": 1}
    assert json.loads(extract_json('I think:\n{"a": {"b": [1, 2]}}\nThanks.')) == {
        "a": {"b": [1, 2]}
    }
    for text, why in [
        ('{"a": 1} and also {"a": 2}', "2 JSON objects"),
        ("```json\n{}\n```\n```json\n{}\n```", "2 code blocks"),
        ("no json at all", "no JSON object"),
        ("   ", "empty"),
    ]:
        with pytest.raises(InvalidReply, match=why):
            extract_json(text)


# --- tool-call hygiene (issue 14.4) --------------------------------------------------------


async def test_a_tool_that_was_never_offered_is_invalid_output(
    fake_api: tuple[Api, FakeOpenAI],
) -> None:
    api, llm = fake_api
    llm.script(verdict(GOOD, name="approve_everything"), verdict(GOOD))
    body = await decide(api)
    assert body["source"] == "llm" and body["usage"]["llm_calls"] == 2  # re-asked once
    rec = await record(api, body["decision_id"])
    first = rec["attempts"][0]
    assert first["status"] == "invalid_output" and "approve_everything" in first["error"]
    # and if the re-ask is wrong too, the model's answer is not used at all
    llm.script(*[verdict(GOOD, name="approve_everything")] * 4)
    body = await decide(api)
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"


async def test_several_tool_calls_are_invalid_output(fake_api: tuple[Api, FakeOpenAI]) -> None:
    api, llm = fake_api
    deny = {**GOOD, "outcome": "deny", "items": [], "customer_message": "No."}
    llm.script(verdict(GOOD, calls=2), verdict(deny, calls=3), verdict(GOOD))
    body = await decide(api)
    rec = await record(api, body["decision_id"])
    statuses = [a["status"] for a in rec["attempts"]]
    assert statuses == ["invalid_output", "invalid_output", "ok"], statuses
    assert "2 tool calls" in rec["attempts"][0]["error"]
    assert body["source"] == "llm" and rec["model"] == "gpt-4o"  # the next model answered once


@pytest.mark.parametrize("mode_api", ["json_schema"], indirect=True)
async def test_a_tool_call_in_json_schema_mode_is_invalid_output(mode_api: Any) -> None:
    api, llm = mode_api
    llm.script(verdict(GOOD, style="tool", name="ReturnVerdict"), verdict(GOOD))
    body = await decide(api)
    assert body["usage"]["llm_calls"] == 2 and body["source"] == "llm"


# --- Retry-After, deadlines, typed errors ------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_seconds_is_honoured(
    api_factory: Any, fake_llm: FakeOpenAI, code: int
) -> None:
    api, cm = await api_factory(
        llm=True, llm_base_url=fake_llm.base_url, llm_backoff_max_s=0.01, deadline_s=5
    )
    try:
        fake_llm.script(status(code, retry_after="0.4"), verdict(GOOD))
        body = await decide(api)
        first, second = fake_llm.chat_requests[:2]
        assert second["received_at"] - first["received_at"] >= 0.4  # a lower bound only
        assert body["source"] == "llm" and body["usage"]["llm_calls"] == 2
        rec = await record(api, body["decision_id"])
        a = rec["attempts"][0]
        assert a["http_status"] == code and a["retry_after_s"] == pytest.approx(0.4)
        assert a["error"].startswith("ModelHTTPError: HTTP")
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_retry_after_http_date_is_honoured(api_factory: Any, fake_llm: FakeOpenAI) -> None:
    api, cm = await api_factory(
        llm=True, llm_base_url=fake_llm.base_url, llm_backoff_max_s=0.01, deadline_s=6
    )
    try:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
        fake_llm.script(status(503, retry_after=when), verdict(GOOD))
        body = await decide(api)
        first, second = fake_llm.chat_requests[:2]
        assert second["received_at"] - first["received_at"] >= 0.9  # the date is whole seconds
        assert body["source"] == "llm"
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_retry_after_beyond_the_deadline_moves_on_at_once(
    api_factory: Any, fake_llm: FakeOpenAI
) -> None:
    api, cm = await api_factory(llm=True, llm_base_url=fake_llm.base_url, deadline_s=2)
    try:
        fake_llm.script(status(503, retry_after="60"), verdict(GOOD))
        body = await decide(api)
        rec = await record(api, body["decision_id"])
        # no waiting for 60 s on the primary: the next model answered inside the deadline
        assert [a["model"] for a in rec["attempts"]] == ["gpt-4o-mini", "gpt-4o"]
        assert body["source"] == "llm" and rec["model"] == "gpt-4o"
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after("0.5", now=now) == 0.5
    assert parse_retry_after("Fri, 20 Nov 2026 10:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("Fri, 20 Nov 2026 09:59:00 GMT", now=now) == 0.0  # past: now
    for junk in (None, "", "soon", "nan", "-1e999"):
        assert parse_retry_after(junk, now=now) in (None, 0.0)


def test_llm_failures_are_typed_at_the_seam() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(
        503,
        headers={"retry-after": "2"},
        json={"error": {"message": "overloaded"}},
        request=request,
    )
    err = typed_error(
        openai.InternalServerError("overloaded", response=response, body=None), "gpt-4o-mini"
    )
    assert isinstance(err, ModelHTTPError) and isinstance(err, LLMError)
    assert isinstance(err, ArbiterError)  # one exception root
    assert (err.status_code, err.model, err.retry_after_s) == (503, "gpt-4o-mini", 2.0)
    assert err.body_excerpt is not None and "overloaded" in err.body_excerpt and err.transient
    assert isinstance(typed_error(openai.APITimeoutError(request=request), "m"), ModelTimeout)
    gone = typed_error(openai.APIConnectionError(request=request), "m")
    assert isinstance(gone, ModelUnreachable)
    unauthorised = httpx.Response(401, json={}, request=request)
    e401 = typed_error(openai.AuthenticationError("no", response=unauthorised, body=None), "m")
    assert isinstance(e401, ModelHTTPError) and not e401.transient
    assert issubclass(InvalidOutput, LLMError)


async def test_a_stall_is_cut_at_the_deadline(fake_api: tuple[Api, FakeOpenAI]) -> None:
    api, llm = fake_api  # deadline 2 s: a 3 s stall is cut at the deadline
    llm.script(delay(3.0, verdict(GOOD)))
    body = await decide(api)
    assert body["source"] == "fallback" and body["fallback_reason"] == "llm_timeout"
    rec = await record(api, body["decision_id"])
    assert rec["attempts"][0]["status"] == "timeout"


async def test_a_body_that_is_not_json_is_an_error_not_a_crash(
    fake_api: tuple[Api, FakeOpenAI],
) -> None:
    api, llm = fake_api
    llm.script(*[malformed_body()] * 6)
    body = await decide(api)
    assert body["source"] == "fallback" and body["outcome"] == "approve"


# --- personal data never reaches logs or attempts.*.error -------------------------------


async def test_validation_errors_carry_no_customer_text(
    fake_api: tuple[Api, FakeOpenAI], caplog: pytest.LogCaptureFixture
) -> None:
    api, llm = fake_api
    caplog.set_level(logging.DEBUG)
    # the model echoes the customer's comment into fields that do not validate
    quoted = {**GOOD, "outcome": COMMENT, "refund_timing": COMMENT, "note": COMMENT}
    llm.script(*[verdict(quoted)] * 4)
    body = await decide(api)
    assert body["fallback_reason"] == "invalid_output"
    rec = await record(api, body["decision_id"])
    errors = [a["error"] for a in rec["attempts"]]
    assert all(e and "outcome: literal_error" in e for e in errors), errors
    assert not any(COMMENT in e or "input_value" in e for e in errors)
    assert COMMENT not in caplog.text and "input_value" not in caplog.text
