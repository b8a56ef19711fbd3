"""Model aliases, several endpoints, readiness probes, the start-up line, lint of aliases,
and what auditors see of a fallback: all against loopback OpenAI-compatible servers."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from service.settings import PROJECT_ROOT, Settings
from service.specs.lint import lint_file
from tests.conftest import Api, contract, make_settings
from tests.fake_openai import FakeOpenAI, rules_answer, status, verdict
from tests.test_returns_api import GOOD
from tests.test_ui import login


@pytest.fixture
def local() -> Iterator[FakeOpenAI]:
    """A local server (vLLM/Ollama-like): no key, its own model name."""
    with FakeOpenAI(models=("qwen2.5:7b-instruct",), answer=rules_answer) as server:
        yield server


@pytest.fixture
def hosted() -> Iterator[FakeOpenAI]:
    """A hosted server that wants a key."""
    with FakeOpenAI(
        models=("gpt-4o-mini", "gpt-4o"), api_key="sk-hosted-secret", answer=rules_answer
    ) as server:
        yield server


@pytest.fixture
def role_specs(tmp_path: Path) -> Path:
    """The shipped specs, with the returns policy naming roles instead of models."""
    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", specs)
    path = specs / "returns.md"
    text = path.read_text()
    line = next(t for t in text.splitlines() if t.startswith("model:"))
    path.write_text(
        text.replace(line, "model: {primary: fast, fallbacks: [strong], escalate_above_value: 500}")
    )
    return specs


def aliases(local: FakeOpenAI, hosted: FakeOpenAI) -> dict[str, Any]:
    return {
        "fast": {"model": "qwen2.5:7b-instruct", "base_url": local.base_url, "mode": "json_schema"},
        "strong": {
            "model": "gpt-4o",
            "base_url": hosted.base_url,
            "api_key": "sk-hosted-secret",
            "mode": "tools",
            "price": ["2.50", "10.00"],
        },
    }


async def close(api: Api, cm: Any) -> None:
    await api.client.aclose()
    await cm.__aexit__(None, None, None)


async def decide(api: Api, case: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await api.decide("returns", case or contract("returns.request"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --- aliases and several endpoints -------------------------------------------------------


async def test_roles_map_to_models_on_several_endpoints(
    api_factory: Any, local: FakeOpenAI, hosted: FakeOpenAI, role_specs: Path
) -> None:
    api, cm = await api_factory(specs_dir=role_specs, llm_models=aliases(local, hosted))
    try:
        local.script(verdict(GOOD))
        body = await decide(api)
        assert body["source"] == "llm" and body["model"] == "qwen2.5:7b-instruct"
        sent = local.chat_requests[-1]
        assert sent["model"] == "qwen2.5:7b-instruct" and "response_format" in sent
        assert not hosted.chat_requests

        local.script(status(500), status(500), status(500))  # the local server is down
        hosted.script(verdict(GOOD))
        body = await decide(api)
        assert body["source"] == "llm" and body["model"] == "gpt-4o"
        assert "tools" in hosted.chat_requests[-1]  # each alias in its own mode
        rec = (
            await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("admin"))
        ).json()
        assert [a["alias"] for a in rec["attempts"]] == ["fast"] * 3 + ["strong"]
        assert rec["attempts"][-1]["cost_usd"] == "0.004500"  # 1200 x 2.50 + 150 x 10.00 / 1M
    finally:
        await close(api, cm)


async def test_escalation_above_value_uses_the_stronger_role_first(
    api_factory: Any, local: FakeOpenAI, hosted: FakeOpenAI, role_specs: Path
) -> None:
    api, cm = await api_factory(specs_dir=role_specs, llm_models=aliases(local, hosted))
    try:
        case = contract("returns.request")
        case["order"]["lines"][0]["unit_price"] = "900.00"  # worth more than 500
        big = {**GOOD, "items": [{**GOOD["items"][0], "refund_amount": "900.00"}]}
        hosted.script(verdict(big))
        body = await decide(api, case)
        assert body["model"] == "gpt-4o" and not local.chat_requests
    finally:
        await close(api, cm)


async def test_hosted_to_local_is_a_settings_change_only(
    api_factory: Any, local: FakeOpenAI, hosted: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped specs name gpt-4o-mini / gpt-4o; only the environment changes."""

    async def run(server: FakeOpenAI) -> None:
        env = Settings(_env_file=None)  # type: ignore[call-arg]
        api, cm = await api_factory(
            llm_base_url=env.llm_base_url, llm_api_key=env.llm_api_key, llm_models=env.llm_models
        )
        try:
            body = await decide(api)  # unscripted: the server answers like the rules
            assert body["source"] == "llm" and server.chat_requests, body
            assert (await api.client.get("/readyz")).status_code == 200
        finally:
            await close(api, cm)

    monkeypatch.setenv("ARBITER_LLM_BASE_URL", hosted.base_url)
    monkeypatch.setenv("ARBITER_LLM_API_KEY", "sk-hosted-secret")
    await run(hosted)
    assert not local.chat_requests

    monkeypatch.delenv("ARBITER_LLM_BASE_URL")
    monkeypatch.delenv("ARBITER_LLM_API_KEY")
    model = {"model": "qwen2.5:7b-instruct", "base_url": local.base_url, "mode": "json_schema"}
    monkeypatch.setenv("ARBITER_LLM_MODELS", json.dumps({"gpt-4o-mini": model, "gpt-4o": model}))
    hosted.requests.clear()
    await run(local)
    assert "response_format" in local.chat_requests[-1] and not hosted.chat_requests


async def test_azure_style_deployment_key_header_and_api_version(api_factory: Any) -> None:
    with FakeOpenAI(
        models=("my-4o-mini", "my-4o"), api_key="azure-key", answer=rules_answer
    ) as azure:
        deployment = {
            "base_url": azure.base_url,
            "api_key": "azure-key",
            "api_key_header": "api-key",
            "api_version": "2024-10-21",
        }
        api, cm = await api_factory(
            llm_models={
                "gpt-4o-mini": {"model": "my-4o-mini", **deployment},
                "gpt-4o": {"model": "my-4o", **deployment},
            }
        )
        try:
            body = await decide(api)
            assert body["source"] == "llm" and body["model"] == "my-4o-mini"
            sent = azure.chat_requests[-1]
            assert sent["query"] == {"api-version": "2024-10-21"}
            assert sent["headers"].get("api-key") == "azure-key" and not sent["bearer"]
            assert (await api.client.get("/readyz")).status_code == 200
        finally:
            await close(api, cm)


def test_lint_checks_every_alias_is_configured(role_specs: Path, tmp_path: Path) -> None:
    path = role_specs / "returns.md"
    prompts = PROJECT_ROOT / "prompts"
    rules_only = make_settings(f"sqlite:///{tmp_path / 'x.db'}")
    assert lint_file(path, prompts_dir=prompts, settings=rules_only).ok  # never called
    partial = make_settings(
        f"sqlite:///{tmp_path / 'x.db'}",
        llm_models={"fast": {"model": "m", "base_url": "http://h"}},
    )
    analysis = lint_file(path, prompts_dir=prompts, settings=partial)
    assert not analysis.ok
    assert [f.rule for f in analysis.errors] == ["model_alias"]
    assert "'strong' is not configured" in str(analysis.errors[0]) and analysis.errors[0].line
    # a default endpoint serves any real model name, so nothing is unconfigured
    default = make_settings(f"sqlite:///{tmp_path / 'x.db'}", llm=True)
    assert lint_file(
        PROJECT_ROOT / "specs" / "returns.md", prompts_dir=prompts, settings=default
    ).ok


# --- readiness and the start-up line ------------------------------------------------------


async def test_wrong_base_url_fails_readyz_with_the_reason(api_factory: Any) -> None:
    api, cm = await api_factory(llm=True, llm_base_url="http://127.0.0.1:9/v1")  # nothing there
    try:
        r = await api.client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["llm"]["gpt-4o-mini"]["status"] == "unreachable"
        assert any("unreachable" in why and "127.0.0.1:9" in why for why in body["reasons"])
        decided = await decide(api)  # decisions still answer, by rules
        assert decided["source"] == "fallback" and decided["fallback_reason"] == "llm_error"
    finally:
        await close(api, cm)


@pytest.mark.parametrize(
    ("key", "models", "expect"),
    [
        ("sk-hosted-secret", ("gpt-4o-mini", "gpt-4o"), "ok"),
        ("sk-wrong", ("gpt-4o-mini", "gpt-4o"), "unauthorised"),
        ("sk-hosted-secret", ("gpt-4o",), "model missing"),
    ],
)
async def test_readyz_reports_each_endpoint(
    api_factory: Any, key: str, models: tuple[str, ...], expect: str
) -> None:
    with FakeOpenAI(models=models, api_key="sk-hosted-secret") as server:
        api, cm = await api_factory(llm_base_url=server.base_url, llm_api_key=key)
        try:
            r = await api.client.get("/readyz")
            body = r.json()
            assert body["llm"]["gpt-4o-mini"]["status"] == expect, body
            assert r.status_code == (200 if expect == "ok" else 503)
            assert key not in r.text
        finally:
            await close(api, cm)


async def test_probe_is_bounded_and_falls_back_to_a_one_token_call(api_factory: Any) -> None:
    with FakeOpenAI() as slow, FakeOpenAI() as bare:
        slow.models_delay_s = 1.5
        bare.list_models = False  # like a server without /v1/models
        api, cm = await api_factory(
            llm_probe_timeout_s=0.3,
            llm_models={
                "gpt-4o-mini": {"model": "gpt-4o-mini", "base_url": slow.base_url},
                "gpt-4o": {"model": "gpt-4o", "base_url": bare.base_url},
                "spare": {"model": "gpt-4o", "base_url": bare.base_url},  # used by no policy
            },
        )
        try:
            body = (await api.client.get("/readyz")).json()
            assert body["llm"]["spare"]["status"] == "ok"  # every configured alias is probed
            assert body["llm"]["gpt-4o-mini"]["status"] == "unreachable"
            assert body["llm"]["gpt-4o"]["status"] == "ok"
            ping = bare.chat_requests[-1]
            assert ping["max_tokens"] == 1 and ping["model"] == "gpt-4o"
        finally:
            await close(api, cm)


async def test_startup_line_names_endpoints_and_aliases_never_keys(
    api_factory: Any,
    local: FakeOpenAI,
    hosted: FakeOpenAI,
    role_specs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="arbiter")
    api, cm = await api_factory(specs_dir=role_specs, llm_models=aliases(local, hosted))
    try:
        ready = next(r.getMessage() for r in caplog.records if "arbiter ready" in r.getMessage())
        assert "fast → qwen2.5:7b-instruct at " + local.base_url + " (json_schema): ok" in ready
        assert "strong → gpt-4o at " + hosted.base_url + " (tools): ok" in ready
        assert "sk-hosted-secret" not in caplog.text
    finally:
        await close(api, cm)


# --- what a fallback shows ----------------------------------------------------------------


async def test_a_fallback_shows_the_failed_attempts_their_cost_and_why(
    fake_api: tuple[Api, FakeOpenAI],
) -> None:
    api, llm = fake_api
    wrong = verdict({**GOOD, "outcome": "maybe"}, tokens=(1000, 100))
    llm.script(wrong, wrong, wrong, wrong)  # two models, each asked and re-asked: 4 paid calls
    body = await decide(api)
    assert body["source"] == "fallback" and body["fallback_reason"] == "invalid_output"
    assert body["model"] is None and body["usage"]["llm_calls"] == 4
    assert body["confidence"] == 0.5  # rules decided a case that needed judgement
    rec = (
        await api.client.get(f"/v1/decisions/{body['decision_id']}", headers=api.auth("audit"))
    ).json()
    costs = [Decimal(a["cost_usd"]) for a in rec["attempts"]]
    assert all(c > 0 for c in costs) and sum(costs) == Decimal(body["usage"]["cost_usd"])
    assert all(
        a["error"].startswith("InvalidOutput: outcome: literal_error") for a in rec["attempts"]
    )
    metrics = (await api.client.get("/metrics")).text
    assert 'arbiter_fallbacks_total{kind="returns",reason="invalid_output"} 1' in metrics

    await login(api, "audit")
    page = (await api.client.get(f"/ui/decisions/{body['decision_id']}")).text
    assert (
        "after 4 failed model attempt(s) (invalid_output) costing $" + body["usage"]["cost_usd"]
        in page
    )
    assert "at most 0.50" in page and "re-ask" in page


async def test_rules_only_needs_no_llm_settings(api: Api) -> None:
    body = await decide(api)
    assert body["fallback_reason"] == "llm_disabled" and body["confidence"] <= 0.5
    ready = (await api.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["llm"] == "disabled (rules only)"
