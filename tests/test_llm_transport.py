"""The LLM transport and the prompt cache on the decision path (issue 15): the loopback fake
server is reached through the production transport (aiohttp), httpx stays selectable, a
refused connection is 'unreachable' on either, and the static system prompt is rendered
once per spec version without ever seeing the case."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jinja2
import openai
import pytest
from httpx_aiohttp import AiohttpTransport

from service.errors import ModelTimeout, ModelUnreachable
from service.llm.client import build_http_client, typed_error
from service.llm.prompts import PromptLibrary
from service.settings import PROJECT_ROOT, Settings
from service.specs.loader import load_spec
from tests.conftest import Api, contract, make_settings
from tests.fake_openai import FakeOpenAI, verdict
from tests.test_returns_api import GOOD


def test_aiohttp_is_the_default_and_httpx_is_selectable() -> None:
    assert Settings(_env_file=None).llm_transport == "aiohttp"  # type: ignore[call-arg]
    default = build_http_client(make_settings("sqlite://", llm_base_url="http://127.0.0.1:1/v1"))
    assert isinstance(default._transport, AiohttpTransport)
    plain = build_http_client(make_settings("sqlite://", llm_transport="httpx"))
    assert isinstance(plain._transport, httpx.AsyncHTTPTransport)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_decision_over_each_transport_sends_the_body_we_built(
    api_factory: Any, fake_llm: FakeOpenAI, transport: str
) -> None:
    api: Api
    api, cm = await api_factory(llm=True, llm_base_url=fake_llm.base_url, llm_transport=transport)
    try:
        fake_llm.script(verdict(GOOD))
        r = await api.decide("returns", contract("returns.request"))
        assert r.status_code == 200 and r.json()["source"] == "llm", r.text
        sent = fake_llm.chat_requests[-1]
        wire = {k for k in sent if k not in ("path", "received_at", "headers", "bearer", "query")}
        assert wire == {"model", "messages", "temperature", "tools", "tool_choice"}
        assert sent["bearer"] and sent["temperature"] == 0
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
        http = api.engine.llm._http
        assert isinstance(http._transport, AiohttpTransport) == (transport == "aiohttp")
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


def test_aiohttp_failures_are_typed_by_their_cause() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")

    def through_the_sdk(aiohttp_error: Exception, httpx_error: type[Exception]) -> Exception:
        # what httpx_aiohttp and the SDK raise: SDK error <- httpx error <- aiohttp error
        mapped = httpx_error("mapped")
        mapped.__cause__ = aiohttp_error
        sdk_error: Exception = (
            openai.APITimeoutError(request=request)
            if issubclass(httpx_error, httpx.TimeoutException)
            else openai.APIConnectionError(request=request)
        )
        sdk_error.__cause__ = mapped
        return sdk_error

    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    # httpx_aiohttp maps a refused connection to ConnectTimeout: it is not a timeout
    assert isinstance(
        typed_error(through_the_sdk(refused, httpx.ConnectTimeout), "m"), ModelUnreachable
    )
    closed = aiohttp.ServerDisconnectedError()
    assert isinstance(
        typed_error(through_the_sdk(closed, httpx.ConnectTimeout), "m"), ModelUnreachable
    )
    slow = aiohttp.SocketTimeoutError("read timed out")
    assert isinstance(typed_error(through_the_sdk(slow, httpx.ReadTimeout), "m"), ModelTimeout)


# --- the prompt: static part once per spec version ---------------------------------------


@pytest.fixture
def prompts(tmp_path: Path) -> PromptLibrary:
    shutil.copy(PROJECT_ROOT / "prompts" / "returns.md.j2", tmp_path / "returns.md.j2")
    return PromptLibrary(tmp_path)


def test_the_system_part_is_rendered_once_per_spec_version(prompts: PromptLibrary) -> None:
    spec = load_spec(PROJECT_ROOT / "specs" / "returns.md")
    a = prompts.render(spec=spec, case={"order": "A-1", "comment": "zq-one"})
    b = prompts.render(spec=spec, case={"order": "B-2", "comment": "zq-two"})
    assert a.system is b.system  # reused, not re-rendered
    assert "zq-one" in a.user and "zq-two" in b.user and "zq-" not in a.system
    assert spec.version in a.system and a.sha256 != b.sha256
    meta = spec.meta.model_copy(update={"version": "9.9.9"})
    other = dataclasses.replace(spec, sha256="f" * 64, meta=meta)  # another version
    assert "9.9.9" in prompts.render(spec=other, case={}).system


def test_an_edited_template_is_picked_up(prompts: PromptLibrary) -> None:
    spec = load_spec(PROJECT_ROOT / "specs" / "returns.md")
    before = prompts.render(spec=spec, case={})
    path = prompts.directory / "returns.md.j2"
    path.write_text(path.read_text().replace("You are Arbiter", "You are Arbiter (edited)"))
    after = prompts.render(spec=spec, case={})
    assert "(edited)" in after.system and "(edited)" not in before.system
    assert after.template_sha256 != before.template_sha256


def test_the_system_part_cannot_see_the_case(prompts: PromptLibrary) -> None:
    path = prompts.directory / "returns.md.j2"
    path.write_text(
        "{% block system %}{{ case_json }}{% endblock %}{% block user %}x{% endblock %}"
    )
    spec = load_spec(PROJECT_ROOT / "specs" / "returns.md")
    with pytest.raises(jinja2.UndefinedError):
        prompts.render(spec=spec, case={"comment": "customer text"})
