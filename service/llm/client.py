"""Structured LLM calls: the openai SDK per endpoint, tenacity retries, one re-ask, a deadline,
the model chain, and readiness probes.

Retries never stack: the SDK has `max_retries=0`; tenacity retries one HTTP request on
transport failures (timeouts, unreachable, 408/409/429/5xx) with jittered backoff or the
server's Retry-After, and never past the deadline; an invalid answer gets at most one
re-ask (service/llm/parse.py); the whole step runs under one `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import openai
import openai.resources.chat  # the SDK imports these lazily, on first use, which takes a
import openai.resources.models  # second or more: at import, never inside a request deadline
from openai._types import RequestOptions
from openai.types.chat import ChatCompletion
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from service.errors import (
    InvalidOutput,
    LLMError,
    ModelAPIError,
    ModelHTTPError,
    ModelNotConfigured,
    ModelTimeout,
    ModelUnreachable,
)
from service.llm.breaker import Breakers
from service.llm.parse import InvalidReply, messages_for, parse_reply, reask_messages
from service.llm.parse import request_options as structured_options
from service.llm.prompts import Prompt
from service.llm.retry import is_transient, parse_retry_after, stop_at, wait_policy
from service.llm.usage import Attempt, Usage, cost, total_usage
from service.settings import ResolvedModel, Settings
from service.vocabulary import FallbackReason

if TYPE_CHECKING:
    from service.specs.loader import Spec

log = logging.getLogger("arbiter.llm")

BODY_EXCERPT = 300

current_alias: contextvars.ContextVar[str | None] = contextvars.ContextVar("alias", default=None)
"""The policy's name for the model being called, while a request is sent (cassettes key on it)."""


@dataclass
class LLMResult:
    """What the LLM step produced: a verdict, or why there is none."""

    verdict: BaseModel | None
    model: str | None
    attempts: list[Attempt]
    usage: Usage
    failure: FallbackReason | None = None
    latency_ms: int = 0
    errors: list[str] = field(default_factory=list)
    verdicts: list[BaseModel] = field(default_factory=list)  # several, when `many` was allowed


class _NoRequestBodies(logging.Filter):
    """The SDK logs each request's options, the whole prompt with the customer's text in it,
    at DEBUG; keep the line, drop the body."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Request options"):
            record.msg, record.args = "Request options: (not logged: may hold customer text)", ()
        return True


def quiet_sdk_logs() -> None:
    """Install the filter once (idempotent); keep instructor's logger above DEBUG, where it
    prints whole raw replies (a model may quote the customer)."""
    sdk_log = logging.getLogger("openai._base_client")
    if not any(isinstance(f, _NoRequestBodies) for f in sdk_log.filters):
        sdk_log.addFilter(_NoRequestBodies())
    instructor_log = logging.getLogger("instructor")
    if instructor_log.level < logging.INFO:  # NOTSET or DEBUG, set here or inherited
        instructor_log.setLevel(logging.INFO)


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled HTTP client every endpoint shares (the transport is chosen here).

    `aiohttp` (default): the SDK's own `DefaultAioHttpClient`, an `httpx.AsyncClient` whose
    transport is aiohttp, so the SDK, the typed errors and retries see httpx types while the
    pool and the HTTP/1.1 parser are aiohttp's (httpcore's pool costs O(connections) per
    request: bench/results). `httpx`: httpx's own pool (respx intercepts it)."""
    limits = httpx.Limits(
        max_connections=settings.llm_pool_connections,
        max_keepalive_connections=settings.llm_pool_connections,
    )
    timeout = httpx.Timeout(settings.deadline_s, connect=settings.llm_connect_timeout_s)
    if settings.llm_transport == "aiohttp":
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


def build_sdk_client(model: ResolvedModel, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    """An SDK client for one endpoint; the SDK never retries (tenacity does)."""
    return openai.AsyncOpenAI(
        api_key=model.api_key or "not-needed",
        base_url=model.base_url,
        max_retries=0,
        http_client=http,
        default_query={"api-version": model.api_version} if model.api_version else None,
    )


def key_headers(model: ResolvedModel) -> dict[str, Any]:
    """Per-request headers that send the key in a header of its own (Azure deployments:
    `api-key`) instead of a Bearer token; none for the usual Bearer key."""
    if not model.api_key_header:
        return {}
    return {model.api_key_header: model.api_key or "", "Authorization": openai.Omit()}


async def chat_completion(
    sdk: openai.AsyncOpenAI, *, body: dict[str, Any], timeout: float, headers: dict[str, Any]
) -> ChatCompletion:
    """POST /chat/completions through the SDK's client (auth, errors, response parsing),
    without `chat.completions.create`'s walk of the body against the SDK's TypedDicts: the
    body here is plain JSON already, and that walk was 1/8 of the LLM path's CPU
    (bench/results)."""
    options: RequestOptions = {
        "timeout": timeout,
        "headers": headers,
        "security": {"bearer_auth": True},
    }
    return await sdk.post("/chat/completions", body=body, options=options, cast_to=ChatCompletion)


def _excerpt(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text[:BODY_EXCERPT] + ("…" if len(text) > BODY_EXCERPT else "")


def _refused_by_aiohttp(exc: BaseException) -> bool:
    """The aiohttp transport maps every connection failure (refused, reset, closed) to
    httpx.ConnectTimeout; its cause says whether it was a timeout."""
    seen: BaseException | None = exc
    for _ in range(5):  # SDK error <- httpx error <- aiohttp error
        if seen is None:
            return False
        if isinstance(seen, aiohttp.ClientConnectionError):
            return not isinstance(seen, TimeoutError)
        seen = seen.__cause__
    return False


def typed_error(exc: Exception, model: str) -> LLMError:
    """An SDK or transport exception as one of the seam's typed errors."""
    if isinstance(exc, LLMError):
        return exc
    if _refused_by_aiohttp(exc):
        return ModelUnreachable(
            f"{model}: endpoint unreachable ({type(exc).__name__})", model=model
        )
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        return ModelTimeout(f"{model} did not answer in time", model=model)
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
        return ModelHTTPError(
            status_code=exc.status_code,
            model=model,
            body=_excerpt(exc.response.text),
            retry_after_s=parse_retry_after(headers.get("retry-after")),
        )
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return ModelUnreachable(
            f"{model}: endpoint unreachable ({type(exc).__name__})", model=model
        )
    return ModelAPIError(f"{model}: {type(exc).__name__}", model=model)


def _status(exc: LLMError) -> str:
    if isinstance(exc, ModelTimeout):
        return "timeout"
    if isinstance(exc, ModelHTTPError):
        if exc.status_code == 429:
            return "rate_limited"
        return "server_error" if exc.status_code >= 500 else "http_error"
    if isinstance(exc, ModelUnreachable):
        return "unreachable"
    return "error"


def model_names(specs: Iterable[Spec]) -> list[str]:
    """Every model name (alias) the given specs may call."""
    return sorted({n for spec in specs for n in spec.meta.model.names()})


def describe_probe(p: dict[str, str]) -> str:
    """e.g. "qwen2.5:7b at http://127.0.0.1:11434/v1 (json_schema): ok" — never a key."""
    if "model" not in p:
        return f"{p['status']} ({p.get('detail', '')})"
    return f"{p['model']} at {p['endpoint']} ({p['mode']}): {p['status']}"


def _raw_output(response: Any) -> str | None:
    try:
        msg = response.choices[0].message
        if msg.tool_calls:
            return "\n".join(str(c.function.arguments) for c in msg.tool_calls)
        return None if msg.content is None else str(msg.content)
    except (AttributeError, IndexError, TypeError):
        return None


class LLMClient:
    """One per process: a pooled HTTP client, an SDK client per endpoint, a concurrency bound."""

    def __init__(self, *, settings: Settings, http_client: httpx.AsyncClient | None = None):
        self.settings = settings
        quiet_sdk_logs()
        self._http = http_client or build_http_client(settings)
        self._sdk: dict[tuple[str | None, ...], openai.AsyncOpenAI] = {}
        self._slots = asyncio.Semaphore(settings.llm_max_concurrency)
        self.breakers = Breakers(
            threshold=settings.breaker_threshold,
            window_s=settings.breaker_window_s,
            cooldown_s=settings.breaker_cooldown_s,
        )
        self.in_flight = 0
        self._probe_cache: tuple[float, dict[str, dict[str, str]]] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def sdk(self, model: ResolvedModel) -> openai.AsyncOpenAI:
        """The SDK client of `model`'s endpoint (built once, shared by its aliases)."""
        client = self._sdk.get(model.endpoint)
        if client is None:
            client = self._sdk[model.endpoint] = build_sdk_client(model, self._http)
        return client

    async def structured(
        self,
        *,
        prompt: Prompt,
        response_model: type[BaseModel],
        models: list[str],
        deadline_s: float,
        many: bool = False,
    ) -> LLMResult:
        """Ask the model chain for a `response_model`, within `deadline_s` seconds."""
        attempts: list[Attempt] = []
        errors: list[str] = []
        started = time.monotonic()
        failure: FallbackReason = "llm_error"
        if self._slots.locked():  # every slot busy: shed now rather than queue without bound
            n = self.settings.llm_max_concurrency
            return self._result([], None, attempts, started, "overloaded", [f"{n} LLM calls"])
        resolved: list[ResolvedModel] = []
        for name in models:
            rm = self.settings.resolve_model(name)
            if rm is None:
                errors.append(str(ModelNotConfigured(f"{name}: no such alias", model=name)))
            else:
                resolved.append(rm)
        probe_owner = object()  # this call's probes of half-open models, given back at the end
        open_models = [
            m.alias for m in resolved if not self.breakers.allow(m.alias, owner=probe_owner)
        ]
        chain = [m for m in resolved if m.alias not in open_models]
        if not chain:
            why: FallbackReason = "circuit_open" if open_models else "llm_error"
            if open_models:
                errors.append(f"circuit open for {', '.join(open_models)}")
            return self._result([], None, attempts, started, why, errors)
        deadline = started + deadline_s
        try:
            async with asyncio.timeout(deadline_s), self._slots:
                self.in_flight += 1
                try:
                    for rm in chain:
                        try:
                            verdicts = await self._ask(
                                rm, prompt, response_model, attempts, deadline, many
                            )
                        except InvalidOutput as exc:
                            self.breakers.success(rm.alias)  # it answered: the model is up
                            failure = "invalid_output"
                            errors.append(exc.message)
                            continue
                        except LLMError as exc:  # any API failure moves down the chain
                            self.breakers.failure(rm.alias)
                            failure = (
                                "llm_timeout" if isinstance(exc, ModelTimeout) else "llm_error"
                            )
                            errors.append(exc.message)
                            continue
                        self.breakers.success(rm.alias)
                        return self._result(verdicts, rm.model, attempts, started, None, errors)
                finally:
                    self.in_flight -= 1
        except TimeoutError:
            failure = "llm_timeout"
            errors.append(f"deadline of {deadline_s:.1f}s reached")
            for a in attempts:
                if a.status == "pending":
                    a.status, a.error = "timeout", "ModelTimeout: the request deadline was reached"
                    self.breakers.failure(a.alias or a.model)
        finally:  # a probe not settled (model not reached, or the call cancelled) is freed
            for m in chain:
                self.breakers.release(m.alias, owner=probe_owner)
        return self._result([], None, attempts, started, failure, errors)

    def _result(
        self,
        verdicts: list[BaseModel],
        model: str | None,
        attempts: list[Attempt],
        started: float,
        failure: FallbackReason | None,
        errors: list[str],
    ) -> LLMResult:
        for a in attempts:
            if a.status == "ok":
                a.raw_output = None  # raw text is kept only for failed attempts
        return LLMResult(
            verdict=verdicts[0] if verdicts else None,
            verdicts=verdicts,
            model=model,
            attempts=attempts,
            usage=total_usage(attempts),
            failure=failure,
            latency_ms=int((time.monotonic() - started) * 1000),
            errors=errors,
        )

    async def _ask(
        self,
        rm: ResolvedModel,
        prompt: Prompt,
        response_model: type[BaseModel],
        attempts: list[Attempt],
        deadline: float,
        many: bool,
    ) -> list[BaseModel]:
        """One question to one model: the request, and at most one re-ask on invalid output."""
        messages = messages_for(rm.mode, response_model, prompt.messages())
        options = structured_options(rm.mode, response_model)
        problems: list[str] = []
        for reask in (False, True):
            response = await self._send(rm, messages, options, attempts, deadline, reask)
            try:
                return parse_reply(response, mode=rm.mode, response_model=response_model, many=many)
            except InvalidReply as exc:
                a = attempts[-1]
                a.status, a.error = "invalid_output", "InvalidOutput: " + "; ".join(exc.problems)
                a.raw_output = _raw_output(response)
                problems = exc.problems
                if exc.truncated:  # the same question would be cut again
                    break
                messages = [
                    *messages,
                    *reask_messages(
                        response, mode=rm.mode, response_model=response_model, hints=exc.hints
                    ),
                ]
        raise InvalidOutput(model=rm.model, problems=problems)

    async def _send(
        self,
        rm: ResolvedModel,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        attempts: list[Attempt],
        deadline: float,
        reask: bool,
    ) -> Any:
        """One chat completion, retried on transport failures inside the deadline."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts) | stop_at(deadline),
            wait=wait_policy(backoff_max_s=self.settings.llm_backoff_max_s),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post(rm, messages, options, attempts, deadline, reask)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(
        self,
        rm: ResolvedModel,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        attempts: list[Attempt],
        deadline: float,
        reask: bool,
    ) -> Any:
        a = Attempt(
            model=rm.model,
            alias=rm.alias if rm.alias != rm.model else None,
            status="pending",
            reask=reask,
        )
        attempts.append(a)
        t0 = time.monotonic()
        token = current_alias.set(rm.alias)
        try:
            response = await chat_completion(
                self.sdk(rm),
                body={"model": rm.model, "messages": messages, "temperature": 0, **options},
                timeout=max(0.05, deadline - time.monotonic()),
                headers=key_headers(rm),
            )
        except Exception as exc:
            err = typed_error(exc, rm.model)
            a.status, a.latency_ms = _status(err), int((time.monotonic() - t0) * 1000)
            a.error = f"{type(err).__name__}: {err.brief}"
            if isinstance(err, ModelHTTPError):
                a.http_status, a.retry_after_s = err.status_code, err.retry_after_s
                a.error_body = err.body_excerpt  # may echo the prompt: masked on read
            raise err from None
        finally:
            current_alias.reset(token)
        usage = getattr(response, "usage", None)
        a.status, a.latency_ms, a.http_status = "ok", int((time.monotonic() - t0) * 1000), 200
        a.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        a.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        a.cost_usd = cost(a.prompt_tokens, a.completion_tokens, rm.price)
        return response

    # --- readiness ------------------------------------------------------------------

    async def probe(
        self, names: Iterable[str], *, fresh: bool = False
    ) -> dict[str, dict[str, str]]:
        """Reach the endpoint of each name and of every configured alias (its model list, else
        a one-token call), bounded by `llm_probe_timeout_s`; status is ok | unreachable |
        unauthorised | model missing | not configured | error (HTTP n). Results are reused for
        `llm_probe_ttl_s`."""
        names = sorted({*names, *self.settings.llm_models})  # every configured alias too
        cached = self._probe_cache
        ttl = self.settings.llm_probe_ttl_s
        if (
            not fresh
            and cached
            and time.monotonic() - cached[0] < ttl
            and set(cached[1]) >= set(names)
        ):
            return {n: cached[1][n] for n in names}
        resolved = {n: self.settings.resolve_model(n) for n in names}
        listings: dict[tuple[str | None, ...], asyncio.Task[tuple[str, set[str] | None]]] = {}
        for rm in resolved.values():
            if rm is not None and rm.endpoint not in listings:
                listings[rm.endpoint] = asyncio.create_task(self._list_models(rm))
        out: dict[str, dict[str, str]] = {}
        for name, rm in resolved.items():
            if rm is None:
                out[name] = {
                    "status": "not configured",
                    "detail": "not in ARBITER_LLM_MODELS and no default endpoint",
                }
                continue
            status, ids = await listings[rm.endpoint]
            if status == "ok" and ids is not None and rm.model not in ids:
                status = "model missing"
            elif status == "ok" and ids is None:  # no model list here: ask for one token
                status = await self._one_token(rm)
            out[name] = {
                "status": status,
                "model": rm.model,
                "endpoint": rm.where,
                "mode": rm.mode,
            }
        self._probe_cache = (time.monotonic(), out)
        return out

    def _probe_status(self, exc: Exception, model: str) -> str:
        err = typed_error(exc, model)
        if isinstance(err, ModelHTTPError):
            if err.status_code in (401, 403):
                return "unauthorised"
            if err.status_code == 404:
                return "model missing"
            return f"error (HTTP {err.status_code})"
        if isinstance(err, ModelTimeout | ModelUnreachable):
            return "unreachable"
        return "error"

    async def _list_models(self, rm: ResolvedModel) -> tuple[str, set[str] | None]:
        try:
            page = await self.sdk(rm).models.list(
                timeout=self.settings.llm_probe_timeout_s, extra_headers=key_headers(rm)
            )
            ids = {str(m.id) for m in page.data}
        except (openai.NotFoundError, TypeError, AttributeError, ValueError):
            return "ok", None  # no usable /models here: a one-token call decides
        except Exception as exc:
            return self._probe_status(exc, rm.model), None
        return "ok", ids or None

    async def _one_token(self, rm: ResolvedModel) -> str:
        try:
            await self.sdk(rm).chat.completions.create(
                model=rm.model,
                messages=[{"role": "user", "content": "ping"}],
                max_tokens=1,
                timeout=self.settings.llm_probe_timeout_s,
                extra_headers=key_headers(rm),
            )
        except Exception as exc:
            return self._probe_status(exc, rm.model)
        return "ok"
