"""Token, call and cost accounting over every attempt of a decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

MILLION = Decimal(1_000_000)


def cost(prompt_tokens: int, completion_tokens: int, price: tuple[Decimal, Decimal]) -> Decimal:
    """USD for one call at `price` (per 1M prompt tokens, per 1M completion tokens)."""
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / MILLION


@dataclass
class Attempt:
    """One HTTP call to a model: what happened, how long, what it cost, and why it failed."""

    model: str  # the provider's model name
    status: str  # ok | invalid_output | timeout | rate_limited | server_error | error
    alias: str | None = None  # the name the policy used, when it differs
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = field(default_factory=lambda: Decimal(0))
    http_status: int | None = None
    retry_after_s: float | None = None
    reask: bool = False  # this call was the one re-ask after invalid output
    raw_output: str | None = None
    error: str | None = None  # error type, status and field, never input values
    error_body: str | None = None  # the provider's error text (may echo the prompt)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost_usd"] = f"{self.cost_usd:.6f}"
        return d


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


def total_usage(attempts: list[Attempt]) -> Usage:
    """Sum tokens and cost over all attempts, failed ones and re-asks included."""
    u = Usage()
    for a in attempts:
        u.llm_calls += 1
        u.prompt_tokens += a.prompt_tokens
        u.completion_tokens += a.completion_tokens
        u.cost_usd += a.cost_usd
    return u
