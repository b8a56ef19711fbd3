"""Structured LLM calls: AsyncOpenAI + instructor, tenacity retries, deadline, model chain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import instructor
import openai
from instructor.core.exceptions import IncompleteOutputException, InstructorRetryException
from instructor.core.hooks import Hooks
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from service.llm.breaker import Breakers
from service.llm.prompts import Prompt
from service.llm.usage import Attempt, Usage, total_usage
from service.settings import Settings

T = TypeVar("T", bound=BaseModel)

TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)


class InvalidOutput(Exception):
    """The model's output did not validate, even after the one re-ask."""


@dataclass
class LLMResult:
    """What the LLM step produced: a verdict, or why there is none."""

    verdict: BaseModel | None
    model: str | None
    attempts: list[Attempt]
    usage: Usage
    failure: str | None = None  # llm_timeout | llm_error | invalid_output
    latency_ms: int = 0
    errors: list[str] = field(default_factory=list)


def _status(exc: BaseException) -> str:
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.InternalServerError):
        return "server_error"
    return "error"


def _raw_output(response: Any) -> str | None:
    try:
        msg = response.choices[0].message
        if msg.tool_calls:
            return str(msg.tool_calls[0].function.arguments)
        return None if msg.content is None else str(msg.content)
    except (AttributeError, IndexError, TypeError):
        return None


def _unwrap(exc: BaseException) -> BaseException:
    """instructor wraps API errors in InstructorRetryException; get the API error back."""
    if isinstance(exc, InstructorRetryException) and isinstance(exc.__cause__, openai.APIError):
        return exc.__cause__
    return exc


class LLMClient:
    """One per process: a pooled HTTP client, an instructor client, a concurrency bound."""

    def __init__(self, *, settings: Settings, http_client: httpx.AsyncClient | None = None):
        self.settings = settings
        self._http = http_client or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=settings.llm_pool_connections,
                max_keepalive_connections=settings.llm_pool_connections,
            ),
            timeout=httpx.Timeout(settings.deadline_s, connect=settings.llm_connect_timeout_s),
        )
        self._openai = openai.AsyncOpenAI(
            api_key=settings.llm_key() or "not-needed",
            base_url=settings.llm_base_url,
            max_retries=0,  # tenacity owns transport retries
            http_client=self._http,
        )
        self._instructor = instructor.from_openai(self._openai, mode=instructor.Mode.TOOLS)
        self._slots = asyncio.Semaphore(settings.llm_max_concurrency)
        self.breakers = Breakers(
            threshold=settings.breaker_threshold,
            window_s=settings.breaker_window_s,
            cooldown_s=settings.breaker_cooldown_s,
        )
        self.in_flight = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def structured(
        self, *, prompt: Prompt, response_model: type[T], models: list[str], deadline_s: float
    ) -> LLMResult:
        """Ask the model chain for a `response_model`, within `deadline_s` seconds."""
        attempts: list[Attempt] = []
        errors: list[str] = []
        started = time.monotonic()
        failure = "llm_error"
        if self._slots.locked():  # every slot busy: shed now rather than queue without bound
            return self._result(
                None,
                None,
                attempts,
                started,
                "overloaded",
                [f"{self.settings.llm_max_concurrency} LLM calls in flight"],
            )
        open_models = [m for m in models if not self.breakers.allow(m)]
        chain = [m for m in models if m not in open_models]
        if not chain:
            return self._result(
                None,
                None,
                attempts,
                started,
                "circuit_open",
                [f"circuit open for {', '.join(open_models)}"],
            )
        try:
            async with asyncio.timeout(deadline_s), self._slots:
                self.in_flight += 1
                try:
                    for model in chain:
                        try:
                            verdict = await self._with_retries(
                                model, prompt, response_model, attempts, started + deadline_s
                            )
                        except InvalidOutput as exc:
                            self.breakers.success(model)  # it answered: the model is up
                            failure = "invalid_output"
                            errors.append(f"{model}: {exc}")
                            continue
                        except Exception as exc:  # any API failure moves down the chain
                            self.breakers.failure(model)
                            failure = "llm_timeout" if _status(exc) == "timeout" else "llm_error"
                            errors.append(f"{model}: {type(exc).__name__}: {exc}")
                            continue
                        self.breakers.success(model)
                        return self._result(verdict, model, attempts, started, None, errors)
                finally:
                    self.in_flight -= 1
        except TimeoutError:
            failure = "llm_timeout"
            errors.append(f"deadline of {deadline_s:.1f}s reached")
            for a in attempts:
                if a.status == "pending":
                    a.status, a.error = "timeout", "deadline reached"
                    self.breakers.failure(a.model)
        return self._result(None, None, attempts, started, failure, errors)

    def _result(
        self,
        verdict: BaseModel | None,
        model: str | None,
        attempts: list[Attempt],
        started: float,
        failure: str | None,
        errors: list[str],
    ) -> LLMResult:
        attempts[:] = [a for a in attempts if a.status != "pending"] + [
            a for a in attempts if a.status == "pending"
        ]
        for a in attempts:
            if a.status == "ok":
                a.raw_output = None  # raw text is kept only for failed attempts
        return LLMResult(
            verdict=verdict,
            model=model,
            attempts=attempts,
            usage=total_usage(attempts, self.settings.llm_prices),
            failure=failure,
            latency_ms=int((time.monotonic() - started) * 1000),
            errors=errors,
        )

    async def _with_retries(
        self,
        model: str,
        prompt: Prompt,
        response_model: type[T],
        attempts: list[Attempt],
        deadline: float,
    ) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts)
            | stop_after_delay(max(0.0, deadline - time.monotonic())),
            wait=self._wait(deadline),
            retry=retry_if_exception(lambda e: isinstance(e, TRANSIENT)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(model, prompt, response_model, attempts, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, deadline: float) -> Callable[[RetryCallState], float]:
        """Jittered backoff; a 429's Retry-After is honoured when it fits the deadline."""
        backoff = wait_random_exponential(
            multiplier=min(0.1, self.settings.llm_backoff_max_s),
            max=self.settings.llm_backoff_max_s,
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, openai.RateLimitError):
                try:
                    after = float(exc.response.headers.get("retry-after", ""))
                except ValueError:
                    after = 0.0
                if after > 0:
                    return min(after, max(0.0, deadline - time.monotonic()))
            return float(backoff(state))

        return wait

    async def _once(
        self,
        model: str,
        prompt: Prompt,
        response_model: type[T],
        attempts: list[Attempt],
        deadline: float,
    ) -> T:
        """One instructor call: one HTTP request, plus at most one re-ask on invalid output."""
        hooks = Hooks()
        clock: dict[str, float] = {}

        def on_kwargs(*_a: Any, **_k: Any) -> None:
            clock["t0"] = time.monotonic()
            attempts.append(Attempt(model=model, status="pending"))

        def elapsed() -> int:
            return int((time.monotonic() - clock.get("t0", time.monotonic())) * 1000)

        def on_response(response: Any) -> None:
            a = attempts[-1]
            usage = getattr(response, "usage", None)
            a.status, a.latency_ms = "ok", elapsed()
            a.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            a.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            a.raw_output = _raw_output(response)

        def on_parse_error(error: Exception, **_k: Any) -> None:
            attempts[-1].status = "invalid_output"
            attempts[-1].error = str(error)[:2000]

        def on_error(error: Exception, **_k: Any) -> None:
            a = attempts[-1]
            a.status, a.latency_ms, a.error = _status(error), elapsed(), str(error)[:500]

        hooks.on("completion:kwargs", on_kwargs)
        hooks.on("completion:response", on_response)
        hooks.on("parse:error", on_parse_error)
        hooks.on("completion:error", on_error)
        try:
            result: T = await self._instructor.create(
                model=model,
                messages=prompt.messages(),  # type: ignore[arg-type]
                response_model=response_model,
                max_retries=1,
                strict=False,  # Money fields are decimal strings; our validators stay strict
                hooks=hooks,
                temperature=0,
                timeout=max(0.05, deadline - time.monotonic()),
            )
            return result
        except IncompleteOutputException as exc:  # truncated (max tokens): invalid output
            if attempts and attempts[-1].status == "ok":
                attempts[-1].status, attempts[-1].error = "invalid_output", "output truncated"
            raise InvalidOutput("the output was truncated") from exc
        except InstructorRetryException as exc:
            cause = _unwrap(exc)
            if cause is not exc:
                raise cause from None
            raise InvalidOutput(str(exc)[:500]) from exc
