"""Recorded LLM replies, keyed by prompt sha256 + model; no header is ever written."""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx

from service.llm.client import current_alias

current_case: contextvars.ContextVar[str | None] = contextvars.ContextVar("case", default=None)


class CassetteMissing(Exception):
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
    """Replays recorded replies, or records them from `inner` (a real endpoint)."""

    def __init__(
        self, directory: Path, *, record: bool, inner: httpx.AsyncBaseTransport | None = None
    ):
        self.directory = directory
        self.record = record
        self.inner = inner
        self.missing: dict[str, list[str]] = {}  # case id -> keys with no recording
        self.recorded = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):  # e.g. a readiness probe
            if self.inner is None:
                return httpx.Response(404, json={"error": "not recorded"}, request=request)
            return await self.inner.handle_async_request(request)
        body = json.loads(request.content or b"{}")
        alias = current_alias.get()
        key = cassette_key(body, alias)
        path = self.directory / f"{key}.json"
        if self.record:
            assert self.inner is not None
            response = await self.inner.handle_async_request(request)
            content = await response.aread()
            if response.status_code == 200:
                self.directory.mkdir(parents=True, exist_ok=True)
                path.write_text(
                    json.dumps(
                        {
                            "key": key,
                            "alias": alias,
                            "model": body.get("model"),
                            "style": "tools" if body.get("tools") else "response_format",
                            "case": current_case.get(),
                            "response": json.loads(content),
                        },
                        indent=1,
                        sort_keys=True,
                    )
                )
                self.recorded += 1
            return httpx.Response(
                response.status_code, content=content, headers={"content-type": "application/json"}
            )
        if not path.exists():
            self.missing.setdefault(current_case.get() or "?", []).append(key)
            raise CassetteMissing(f"no recording {key}: re-record this case")
        data = json.loads(path.read_text())
        return httpx.Response(200, json=data["response"], request=request)
