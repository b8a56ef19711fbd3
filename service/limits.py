"""Request limits: body size, JSON depth, NUL, value ranges; a rate limit per key."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings, redact_url

log = logging.getLogger("arbiter")

MAX_SEQ = 2**31 - 1
"""The largest seq a query may name: decisions.seq is an INTEGER, and PostgreSQL refuses a
larger parameter for it ("integer out of range", a 500), found by fuzzing on PostgreSQL."""
MIN_YEAR, MAX_YEAR = 1970, 2999
"""Times and dates outside these years are refused: date arithmetic near year 9999 overflows."""


def year_in_range(value: date | datetime) -> date | datetime:
    """Refuse a date or a time (read in UTC) outside MIN_YEAR..MAX_YEAR."""
    year = value.year
    if isinstance(value, datetime) and value.tzinfo is not None and MIN_YEAR < year < MAX_YEAR:
        year = value.astimezone(UTC).year  # no overflow: far from the ends of the calendar
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


# A JSON string (skipped whole) or one bracket; anything else is not a token here.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(body: bytes, limit: int) -> int:
    """The bracket nesting depth of a body, stopping early past `limit`.

    A scan, not a parse: no recursion, whatever the content type, and brackets inside JSON
    strings do not count (a body that is not JSON is measured the same way).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0  # cannot be deeper than the limit: the common case, at C speed
    depth = deepest = 0
    for match in _TOKEN.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif token in (b"]", b"}") and depth:
            depth -= 1
    return deepest


def nul_field(scope: Scope) -> str | None:
    """The query parameter (or "path") of a request that carries a NUL character."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in value or "\x00" in name:
                return name.replace("\x00", "") or "(query)"
    return None


class BodyLimits:
    """413 for bodies over `max_bytes` (read no further), 400 for JSON nested too deep,
    422 for a NUL character in the path or a query parameter."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int):
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def _reply(
        self, send: Send, status: int, code: str, message: str, details: Any = None
    ) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "details": details}})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = nul_field(scope)
        if field is not None:
            # PostgreSQL text cannot hold NUL; no identifier or filter ever needs one.
            await self._reply(
                send,
                422,
                "validation_error",
                f"{field}: contains a NUL character",
                [{"field": field, "reason": "contains a NUL character (%00)"}],
            )
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reply(
                send, 413, "payload_too_large", f"the body is over {self.max_bytes} bytes"
            )
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reply(
                    send, 413, "payload_too_large", f"the body is over {self.max_bytes} bytes"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if json_depth(body, self.max_depth) > self.max_depth:  # every body, any content type
            await self._reply(
                send, 400, "bad_request", f"the JSON is nested deeper than {self.max_depth} levels"
            )
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RateLimiter:
    """A token bucket per API key, in this process (N processes allow N times the rate)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    async def take(self, key: str) -> float:
        """0 when the request may go; else the seconds until a token is free."""
        return self.take_here(key)

    def take_here(self, key: str) -> float:
        """take(), counted in this process."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate

    async def describe(self) -> str:
        """How the limit is kept, for /readyz and the start-up log."""
        if self.per_minute <= 0:
            return "off"
        return (
            f"per process: {self.per_minute}/min per key in each process "
            "(set ARBITER_REDIS_URL to share it across workers and hosts)"
        )

    async def aclose(self) -> None:
        """Release connections, if any."""


# GCRA (the token bucket as one timestamp per key), atomic in Redis, on the server's clock so
# every host agrees. KEYS[1]: the key's slot; ARGV: microseconds per request, burst in us.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1)
return 0
"""


class SharedRateLimiter(RateLimiter):
    """The same limit, kept in Redis: one budget per key across every worker and host.

    If Redis cannot be reached the request is not refused: this process counts alone
    (logged, and shown in /readyz) until Redis answers again.
    """

    def __init__(self, per_minute: int, *, url: str, prefix: str):
        super().__init__(per_minute)
        from redis.asyncio import Redis

        self.url, self.prefix = url, prefix
        self.redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.script = self.redis.register_script(_GCRA)
        self.failing: str | None = None

    async def take(self, key: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        from redis.exceptions import RedisError

        interval = 60_000_000 // self.per_minute
        try:
            wait = await self.script(
                keys=[self.prefix + key], args=[interval, interval * self.per_minute]
            )
        except (RedisError, OSError) as exc:
            if self.failing is None:
                log.warning("rate limit: Redis unavailable (%s); counting per process", exc)
            self.failing = type(exc).__name__
            return self.take_here(key)
        if self.failing is not None:
            log.info("rate limit: Redis answers again; the limit is shared")
            self.failing = None
        return int(wait) / 1_000_000

    async def describe(self) -> str:
        if self.per_minute <= 0:
            return "off"
        from redis.exceptions import RedisError

        where = redact_url(self.url)
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            return f"per process: Redis at {where} unavailable ({type(exc).__name__})"
        return f"shared: {self.per_minute}/min per key across processes, in Redis at {where}"

    async def aclose(self) -> None:
        await self.redis.aclose()


def build_limiter(settings: Settings) -> RateLimiter:
    """The shared limiter when ARBITER_REDIS_URL is set, else the per-process one."""
    if settings.redis_url:
        return SharedRateLimiter(
            settings.rate_limit_per_minute,
            url=settings.redis_url,
            prefix=settings.redis_prefix + "ratelimit:",
        )
    return RateLimiter(settings.rate_limit_per_minute)
