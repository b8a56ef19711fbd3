"""Closed vocabularies the decision log and the API share."""

from __future__ import annotations

from typing import Literal

Source = Literal["rules", "llm", "fallback", "review"]
"""Who decided: hard rules alone, the LLM (guarded), the rules instead of the LLM, a person."""

FallbackReason = Literal[
    "llm_disabled",
    "llm_timeout",
    "llm_error",
    "invalid_output",
    "circuit_open",
    "overloaded",
    "guardrail_violation",
]
"""Why rules decided instead of the LLM (`fallback_reason` of a record)."""
