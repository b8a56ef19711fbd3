"""Shared fixtures: network guard, fresh databases, app clients, LLM reply builders."""

from __future__ import annotations

import copy
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from service.app import create_app
from service.settings import PROJECT_ROOT, Settings
from tests.fake_openai import FakeOpenAI, rules_answer

FIXTURES = Path(__file__).parent / "fixtures"
LLM_BASE = "http://llm.test/v1"
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


def contract(name: str) -> dict[str, Any]:
    """A copy of a contract example request."""
    data: dict[str, Any] = json.loads((FIXTURES / "contract" / f"{name}.json").read_text())
    return copy.deepcopy(data)


# --- nothing leaves the machine -------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if anything resolves or connects beyond loopback, even if caught."""
    escaped: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOCAL_HOSTS:
            escaped.append(address)
            raise OSError(f"network blocked in tests: {address}")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL_HOSTS and host is not None:
            escaped.append(host)
            raise OSError(f"name resolution blocked in tests: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    if escaped:
        pytest.fail(f"a test tried to reach the network: {escaped}")


# --- databases ------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get(
    "ARBITER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=2):
            return None
    except Exception as exc:  # any failure means: no server here
        return f"no PostgreSQL at {PG_ADMIN_URL}: {exc}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; skips (or fails in CI) without a server."""
    why = _pg_available()
    if why:
        if os.environ.get("ARBITER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"ARBITER_REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)
    import psycopg

    name = f"arbiter_t_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'arbiter.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


REDIS_URL = os.environ.get("ARBITER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """A Redis server for shared limits; skips (or fails with ARBITER_REQUIRE_REDIS=1)."""
    why = None
    try:
        import redis
    except ImportError:
        why = "redis is not installed (pip install -e '.[dev]')"
    else:
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except Exception as exc:  # any failure means: no server here
            why = f"no Redis at {REDIS_URL}: {exc}"
    if why:
        if os.environ.get("ARBITER_REQUIRE_REDIS") == "1":
            pytest.fail(f"ARBITER_REQUIRE_REDIS=1 but {why}")
        pytest.skip(why)
    return REDIS_URL


# --- settings and apps ----------------------------------------------------------------


def make_settings(db: str, *, llm: bool = False, **overrides: Any) -> Settings:
    """Test settings. Against LLM_BASE (a respx mock) the LLM transport is httpx's own pool,
    the one respx intercepts; against the loopback fake server (`llm_base_url=...`) it is
    the production default, aiohttp."""
    values: dict[str, Any] = {
        "database_url": db,
        "specs_dir": PROJECT_ROOT / "specs",
        "prompts_dir": PROJECT_ROOT / "prompts",
        "llm_base_url": LLM_BASE if llm else None,
        "llm_api_key": "sk-test-not-a-real-key" if llm else None,
        "deadline_s": 2.0,
        "llm_max_attempts": 3,
        "llm_backoff_max_s": 0.01,
    }
    values.update(overrides)
    if values["llm_base_url"] == LLM_BASE:
        values.setdefault("llm_transport", "httpx")
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Api:
    """An app under test with keys for each scope."""

    def __init__(self, client: httpx.AsyncClient, app: Any, keys: dict[str, str]):
        self.client = client
        self.app = app
        self.keys = keys

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def auth(self, scope: str = "decide") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    async def decide(self, kind: str, case: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/decisions/{kind}", json=case, headers={**self.auth("decide"), **headers}
        )


@pytest.fixture
def api_factory(tmp_path: Path) -> Callable[..., Any]:
    """Build an app on a fresh SQLite database (or `db`), run its lifespan, make keys."""

    async def build(*, llm: bool = False, db: str | None = None, **overrides: Any) -> Any:
        settings = make_settings(db or f"sqlite:///{tmp_path / 'api.db'}", llm=llm, **overrides)
        app = create_app(settings)
        cm = app.router.lifespan_context(app)
        await cm.__aenter__()
        keys_store = app.state.services.stores.keys
        keys = {}
        for scope in ("decide", "audit", "audit:pii", "review", "admin"):
            _, secret = keys_store.create(name=f"test {scope}", scopes=[scope])
            keys[scope] = secret
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://arbiter.test")
        return Api(client, app, keys), cm

    return build


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    """The app in its embedded default: SQLite, LLM disabled."""
    a, cm = await api_factory()
    yield a
    await a.client.aclose()
    await cm.__aexit__(None, None, None)


@pytest.fixture
async def llm_api(api_factory: Callable[..., Any]) -> AsyncIterator[tuple[Api, respx.MockRouter]]:
    """The app with the LLM enabled against a respx-mocked OpenAI endpoint."""
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True, assert_all_called=False) as mock:
        a, cm = await api_factory(llm=True)
        yield a, mock
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    """A scripted OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py); unscripted
    requests are answered like the rules would, schema-valid, for every kind."""
    with FakeOpenAI(answer=rules_answer) as server:
        yield server


@pytest.fixture
async def fake_api(
    api_factory: Callable[..., Any], fake_llm: FakeOpenAI
) -> AsyncIterator[tuple[Api, FakeOpenAI]]:
    """The app with the LLM enabled against the loopback fake server."""
    a, cm = await api_factory(llm=True, llm_base_url=fake_llm.base_url)
    yield a, fake_llm
    await a.client.aclose()
    await cm.__aexit__(None, None, None)


# --- OpenAI replies -------------------------------------------------------------------


def completion(
    arguments: str,
    *,
    name: str = "ReturnVerdict",
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 1200,
    completion_tokens: int = 150,
) -> dict[str, Any]:
    """A chat completion whose one tool call carries `arguments` (a JSON string)."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:10]}",
        "object": "chat.completion",
        "created": 1_763_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def reply(verdict: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.Response(200, json=completion(json.dumps(verdict), **kw))
