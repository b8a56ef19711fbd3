"""A scripted OpenAI-compatible server on 127.0.0.1, for tests, evals and benchmarks.

    with FakeOpenAI(answer=rules_answer) as llm:          # or the `fake_llm` fixture
        llm.script(status(503, retry_after="1"), verdict({...}, fence=True))
        settings = make_settings(db, llm=True, llm_base_url=llm.base_url)

Each POST /v1/chat/completions takes the next scripted step (then falls back to `answer`,
a function of the request body that returns a verdict dict). A verdict is sent the way the
request asked for it: a tool call of the offered function when the request has `tools`, the
JSON in `content` otherwise (`response_format` json_schema or json_object) — unless the step
says `style=`. Steps can also inject delays (timeouts), HTTP errors with Retry-After, bodies
that are not JSON, wrong tool names, several tool calls, code fences and prose.
GET /v1/models lists `models`; with `api_key` set, any other key gets 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Step:
    """One scripted reply."""

    verdict: dict[str, Any] | None = None
    style: str = "auto"  # auto | tool | content
    name: str | None = None  # tool name (default: the offered one)
    calls: int = 1  # tool calls in the reply
    fence: bool = False
    prose: str | None = None
    content: str | None = None  # raw content, sent as is
    arguments: str | None = None  # raw tool-call arguments, sent as is
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # raw body, sent as is
    delay_s: float = 0.0
    finish_reason: str | None = None
    tokens: tuple[int, int] = (1200, 150)


def verdict(obj: dict[str, Any], **kw: Any) -> Step:
    return Step(verdict=obj, **kw)


def status(code: int, *, retry_after: str | None = None, body: Any = None) -> Step:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    payload = json.dumps(body if body is not None else {"error": {"message": f"HTTP {code}"}})
    return Step(status=code, headers=headers, body=payload.encode())


def delay(seconds: float, then: Step | None = None) -> Step:
    step = then or Step()
    step.delay_s = seconds
    return step


def malformed_body() -> Step:
    return Step(body=b'{"id": "chatcmpl-x", "choices": [ {"message": ')


def completion_body(
    *,
    model: str,
    completion_id: str | None = None,
    content: str | None = None,
    tool_calls: list[tuple[str, str]] | None = None,
    finish_reason: str | None = None,
    tokens: tuple[int, int] = (1200, 150),
) -> dict[str, Any]:
    """A chat completion: `content`, or tool calls given as (name, arguments JSON)."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(tool_calls or [])
    ]
    return {
        "id": completion_id or f"chatcmpl-{uuid.uuid4().hex[:10]}",
        "object": "chat.completion",
        "created": 1_763_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
                "message": {"role": "assistant", "content": content, "tool_calls": calls or None},
            }
        ],
        "usage": {
            "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    }


def offered_tool(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    return str(tools[0]["function"]["name"]) if tools else None


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for (tool parameters or response_format), if any."""
    if body.get("tools"):
        schema: dict[str, Any] = body["tools"][0]["function"]["parameters"]
        return schema
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        found: dict[str, Any] = fmt["json_schema"]["schema"]
        return found
    return None


def render(step: Step, body: dict[str, Any], answer: Answer | None) -> dict[str, Any]:
    """The completion a step sends for a request."""
    model = str(body.get("model", "fake"))
    asked = json.dumps(body.get("messages"), sort_keys=True).encode()
    kw: dict[str, Any] = {"model": model, "finish_reason": step.finish_reason}
    kw["completion_id"] = "chatcmpl-" + hashlib.sha256(asked).hexdigest()[:12]  # reproducible
    kw["tokens"] = step.tokens
    if step.content is not None:
        return completion_body(content=step.content, **kw)
    if step.arguments is not None:
        name = step.name or offered_tool(body) or "Verdict"
        return completion_body(tool_calls=[(name, step.arguments)] * step.calls, **kw)
    if step.verdict is None and not requested_schema(body) and not body.get("response_format"):
        return completion_body(content="pong", **kw)  # a plain chat call, e.g. a probe
    obj = step.verdict if step.verdict is not None else (answer or _no_answer)(body)
    text = json.dumps(obj)
    style = step.style
    if style == "auto":
        style = "tool" if body.get("tools") else "content"
    if style == "tool":
        name = step.name or offered_tool(body) or "Verdict"
        return completion_body(tool_calls=[(name, text)] * step.calls, **kw)
    if step.fence:
        text = f"```json\n{json.dumps(obj, indent=2)}\n```"
    if step.prose:
        text = f"{step.prose}\n{text}"
    return completion_body(content=text, **kw)


def _no_answer(body: dict[str, Any]) -> dict[str, Any]:
    raise LookupError("nothing scripted for this request and no answer function")


class FakeOpenAI:
    """The server; a context manager that runs uvicorn in a thread on a free loopback port."""

    def __init__(
        self,
        *,
        answer: Answer | None = None,
        models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o"),
        api_key: str | None = None,
        latency_s: float = 0.0,
    ):
        self.answer = answer
        self.models = models
        self.api_key = api_key
        self.latency_s = latency_s
        self.models_delay_s = 0.0  # GET /v1/models waits this long (probe timeouts)
        self.list_models = True  # False: GET /v1/models is 404, as on some servers
        self.steps: deque[Step] = deque()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- scripting ------------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)

    def _next(self) -> Step:
        with self._lock:
            return self.steps.popleft() if self.steps else Step()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("path", "").endswith("/chat/completions")]

    # --- the app --------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return given == f"Bearer {self.api_key}" or request.headers.get("api-key") == self.api_key

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        body["path"] = request.url.path
        body["received_at"] = time.monotonic()
        body["headers"] = {k: v for k, v in request.headers.items() if k != "authorization"}
        body["bearer"] = "authorization" in request.headers  # never the key itself
        body["query"] = dict(request.query_params)
        self.requests.append(body)
        if not self._authorised(request):
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        step = self._next()
        await asyncio.sleep(step.delay_s or self.latency_s)
        if step.body is not None:
            return Response(
                step.body,
                status_code=step.status,
                headers=step.headers,
                media_type="application/json",
            )
        if body.get("model") not in self.models:
            return JSONResponse(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404
            )
        try:
            payload = render(step, body, self.answer)
        except LookupError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=500)
        return JSONResponse(payload, status_code=step.status, headers=step.headers)

    async def _models(self, request: Request) -> Response:
        self.requests.append({"path": request.url.path})
        await asyncio.sleep(self.models_delay_s)
        if not self.list_models:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        if not self._authorised(request):
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # --- running --------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=0.2,  # a scripted stall never holds up the test's end
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


# --- a model-shaped answer for every kind -------------------------------------------

CASE = re.compile(r"<case>\s*(.*)\s*</case>", re.S)  # to the last </case>: text may hold one


def _prompt_case(body: dict[str, Any]) -> Any:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    found = CASE.search(user)
    if not found:
        raise LookupError("no <case> in the prompt")
    return json.loads(found.group(1))


def rules_answer(body: dict[str, Any]) -> dict[str, Any]:
    """What a careful model would say: the deterministic policy's verdict for the case in the
    prompt (returns, exceptions), or the cheapest tied plan (routing), schema-valid."""
    from service.kinds.registry import KINDS
    from service.settings import PROJECT_ROOT
    from service.specs.loader import load_spec

    name = offered_tool(body) or _schema_name(body)
    case = _prompt_case(body)
    if name == "RoutingChoice":
        plans = sorted(case["tied_plans"], key=lambda p: (float(p["total_cost"]), p["plan_id"]))
        return {
            "plan_id": plans[0]["plan_id"],
            "cited_clauses": ["T8"],
            "rationale": "The cheapest of the tied plans (T8).",
            "confidence": 0.8,
        }
    kind = {"ReturnVerdict": "returns", "ExceptionVerdict": "exceptions"}[str(name)]
    k = KINDS[kind]
    spec = load_spec(PROJECT_ROOT / "specs" / f"{kind}.md")
    verdict = k.fallback(k.Case.model_validate(case), spec.params)
    data: dict[str, Any] = verdict.model_dump(
        mode="json", exclude=set(type(verdict).model_computed_fields)
    )
    data["confidence"] = 0.85
    return data


def _schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return str(fmt["json_schema"]["name"])
    for m in body.get("messages", []):
        found = re.search(r"JSON schema \((\w+)\)", str(m.get("content", "")))
        if found:
            return found.group(1)
    return None
