"""Token, call and cost accounting over every attempt of a decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

MILLION = Decimal(1_000_000)


@dataclass
class Attempt:
    """One HTTP call to a model: what happened, how long, what it cost."""

    model: str
    status: str  # ok | invalid_output | timeout | rate_limited | server_error | error
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw_output: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    cost_usd: Decimal = field(default_factory=lambda: Decimal("0"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "llm_calls": self.llm_calls,
            "cost_usd": f"{self.cost_usd:.6f}",
        }


def total_usage(attempts: list[Attempt], prices: dict[str, tuple[Decimal, Decimal]]) -> Usage:
    """Sum tokens and cost over all attempts; unknown models cost 0 and say so in the log."""
    u = Usage()
    for a in attempts:
        u.llm_calls += 1
        u.prompt_tokens += a.prompt_tokens
        u.completion_tokens += a.completion_tokens
        p_in, p_out = prices.get(a.model, (Decimal(0), Decimal(0)))
        u.cost_usd += (a.prompt_tokens * p_in + a.completion_tokens * p_out) / MILLION
    return u
