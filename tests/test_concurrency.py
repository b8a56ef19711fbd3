"""Shared state touched from several threads or tasks at once: the spec registry while it
reloads, the circuit breakers shared by concurrent requests. The registry tests make the
race likely (a tiny GIL switch interval, many iterations) and check what readers see, never
how long anything takes."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from service.llm.client import LLMClient
from service.llm.prompts import Prompt
from service.log.stores import Stores, open_stores
from service.settings import PROJECT_ROOT
from service.specs.registry import SpecRegistry
from service.specs.rollout import rollout_report
from tests.conftest import LLM_BASE, make_settings, reply
from tests.test_reliability import FakeClock


@pytest.fixture
def busy_gil() -> Iterator[None]:
    """Switch threads as often as the interpreter allows, so races show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


def run_against(writer: Callable[[], None], readers: list[Callable[[], None]]) -> list[str]:
    """Run `writer` to its end while each reader runs in a loop; the readers' failures."""
    done = threading.Event()
    failures: list[str] = []

    def loop(read: Callable[[], None]) -> None:
        while not done.is_set():
            try:
                read()
            except Exception as exc:  # collected: the test names every failure
                failures.append(f"{type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=loop, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    try:
        writer()
    finally:
        done.set()
        for t in threads:
            t.join()
    return failures


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s = open_stores(f"sqlite:///{tmp_path / 'specs.db'}")
    yield s
    s.close()


@pytest.fixture
def registry(tmp_path: Path, stores: Stores) -> SpecRegistry:
    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", specs)
    reg = SpecRegistry(
        directory=specs, specs=stores.spec_versions, prompts_dir=PROJECT_ROOT / "prompts"
    )
    reg.load()
    return reg


def test_readers_never_see_a_half_reloaded_registry(
    registry: SpecRegistry, stores: Stores, busy_gil: None
) -> None:
    """A promotion and its undo, reloaded over and over while requests read the registry:
    every read sees the folder wholly before or wholly after a reload, and nothing raises."""
    specs = registry.directory
    v1 = (specs / "returns.md").read_text()
    v2 = v1.replace("version: 1", "version: 2", 1).replace(
        "rollout: active", "rollout: canary:50\n# the next version", 1
    )
    promoted = v2.replace("rollout: canary:50", "rollout: active", 1)

    def canary_state() -> None:  # returns.md v1 live, returns.next.md v2 as a 50 % canary
        (specs / "returns.md").write_text(v1)
        (specs / "returns.next.md").write_text(v2)

    def promoted_state() -> None:  # returns.next.md promoted to returns.md
        (specs / "returns.md").write_text(promoted)
        (specs / "returns.next.md").unlink()

    canary_state()
    registry.load()
    sha = {
        "v1": registry.active("returns").sha256,
        "v2": registry.candidate("returns").sha256,  # type: ignore[union-attr]
    }
    promoted_state()
    registry.load()
    sha["promoted"] = registry.active("returns").sha256
    allowed = {
        (("returns.md", sha["v1"]), ("returns.next.md", sha["v2"])),
        (("returns.md", sha["promoted"]),),
    }
    seen: set[Any] = set()

    def writer() -> None:
        for _ in range(4):
            canary_state()
            registry.load()
            promoted_state()
            registry.load()

    def read_status() -> None:
        files = tuple(
            (f["file"], f["version"]["sha256"]) for f in registry.status() if f["kind"] == "returns"
        )
        assert files in allowed, f"half-reloaded registry: {files}"
        seen.add(files)

    def read_rollout_and_resolve() -> None:
        report = rollout_report(registry, "returns", log=stores.log, limit=1)
        if report is not None:
            live = [s["sha256"] for s in report["live"]]
            assert (report["candidate"]["sha256"], live) == (sha["v2"], [sha["v1"]]), report
        for n in range(20):
            res = registry.resolve("returns", on=date(2026, 11, 20), key=f"ORD-{n}")
            assert res.spec.sha256 in sha.values()
        assert registry.by_sha("returns", sha["v1"][:8]).sha256 == sha["v1"]

    failures = run_against(writer, [read_status, read_rollout_and_resolve])
    assert not failures, failures[:5]
    assert seen == allowed  # the readers really ran during both states


# --- circuit breakers: a half-open model's one probe ------------------------------------


class Answer(BaseModel):
    ok: bool


PROMPT = Prompt(system="Answer.\n", user="{}\n", template_sha256="0" * 64)


@pytest.fixture
def client() -> LLMClient:
    """Breakers that open on one failure and cool down in 30 s of a clock moved by hand."""
    settings = make_settings(
        "sqlite://", llm=True, breaker_threshold=1, breaker_cooldown_s=30, llm_max_attempts=1
    )
    client = LLMClient(settings=settings)
    client.breakers.clock = FakeClock()
    return client


def open_then_half_open(client: LLMClient, *models: str) -> None:
    for m in models:
        client.breakers.failure(m)
    client.breakers.clock.now += 31  # type: ignore[attr-defined]
    assert {client.breakers.state(m) for m in models} == {"half_open"}


def by_model(answers: dict[str, Any]) -> Callable[[httpx.Request], Any]:
    def respond(request: httpx.Request) -> Any:
        answer = answers[json.loads(request.content)["model"]]
        return answer(request) if callable(answer) else answer

    return respond


OK = reply({"ok": True}, name="Answer")
DOWN = httpx.Response(500, json={"error": {"message": "down"}})


async def test_a_probe_reserved_for_an_unused_fallback_is_given_back(client: LLMClient) -> None:
    """Primary and fallback both half-open; the primary's probe answers, so the fallback is
    never called: its probe must stay free for the next request that needs it."""
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        route = mock.post("/chat/completions")
        open_then_half_open(client, "primary", "fallback")
        route.side_effect = by_model({"primary": OK, "fallback": OK})
        first = await client.structured(
            prompt=PROMPT, response_model=Answer, models=["primary", "fallback"], deadline_s=5
        )
        assert first.model == "primary"
        route.side_effect = by_model({"primary": DOWN, "fallback": OK})
        second = await client.structured(
            prompt=PROMPT, response_model=Answer, models=["primary", "fallback"], deadline_s=5
        )
    assert second.model == "fallback", second.errors
    assert client.breakers.state("fallback") == "closed"
    await client.aclose()


async def test_a_cancelled_probe_is_given_back(client: LLMClient) -> None:
    """The caller goes away while the half-open model's probe is in flight: the model is
    not skipped for ever; the next request may probe it."""
    reached = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    # a cancelled call is never recorded as called
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post("/chat/completions").mock(side_effect=hang)
        open_then_half_open(client, "primary")
        probe = asyncio.create_task(
            client.structured(
                prompt=PROMPT, response_model=Answer, models=["primary"], deadline_s=30
            )
        )
        await reached.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
    assert client.breakers.allow("primary")  # half-open, and its probe is free again
    await client.aclose()
