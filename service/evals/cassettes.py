"""Recorded LLM replies, keyed by prompt sha256 + model; no header is ever written."""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service.errors import ArbiterError
from service.llm.client import current_alias


@dataclass
class Tape:
    """One eval case's cassettes: where they live, what it recorded, what it missed."""

    directory: Path
    case: str
    recorded: int = 0
    missing: list[str] = field(default_factory=list)


# Per task, never shared: cases of different kinds run concurrently on one transport.
_current: contextvars.ContextVar[Tape | None] = contextvars.ContextVar("tape", default=None)


@contextmanager
def tape(directory: Path, case: str) -> Iterator[Tape]:
    """The cassette state of the calling task (an eval case) for the `with` block."""
    t = Tape(directory, case)
    token = _current.set(t)
    try:
        yield t
    finally:
        _current.reset(token)


class CassetteMissing(ArbiterError):
    """No recording for this prompt and model: the prompt changed since recording."""


def cassette_key(body: dict[str, Any], alias: str | None = None) -> str:
    """sha256 of the messages sent (system, case, any re-ask), plus the model name as the
    policy names it (an alias), so a recording replays without the alias settings."""
    prompt = json.dumps(
        body.get("messages", []), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    name = alias or str(body.get("model", "unknown"))
    model = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"{hashlib.sha256(prompt.encode()).hexdigest()[:32]}-{model}"


class CassetteTransport(httpx.AsyncBaseTransport):
    """Replays recorded replies, or records them from `inner` (a real endpoint), in the
    folder of the calling task's `tape`; the transport itself holds no per-case state."""

    def __init__(self, *, record: bool, inner: httpx.AsyncBaseTransport | None = None):
        self.record = record
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):  # e.g. a readiness probe
            if self.inner is None:
                return httpx.Response(404, json={"error": "not recorded"}, request=request)
            return await self.inner.handle_async_request(request)
        t = _current.get()
        if t is None:
            raise CassetteMissing("a request outside an eval case has no cassette folder")
        body = json.loads(request.content or b"{}")
        alias = current_alias.get()
        key = cassette_key(body, alias)
        path = t.directory / f"{key}.json"
        if self.record:
            assert self.inner is not None
            response = await self.inner.handle_async_request(request)
            content = await response.aread()
            if response.status_code == 200:
                t.directory.mkdir(parents=True, exist_ok=True)
                path.write_text(
                    json.dumps(
                        {
                            "key": key,
                            "alias": alias,
                            "model": body.get("model"),
                            "style": "tools" if body.get("tools") else "response_format",
                            "case": t.case,
                            "response": json.loads(content),
                        },
                        indent=1,
                        sort_keys=True,
                    )
                )
                t.recorded += 1
            return httpx.Response(
                response.status_code, content=content, headers={"content-type": "application/json"}
            )
        if not path.exists():
            t.missing.append(key)
            raise CassetteMissing(f"no recording {key}: re-record this case")
        data = json.loads(path.read_text())
        return httpx.Response(200, json=data["response"], request=request)
