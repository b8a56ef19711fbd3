"""API keys with scopes: Authorization: Bearer <key>."""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = frozenset(
    {
        "decide",
        "audit",
        "audit:pii",
        "review",
        "policy:read",
        "policy:edit",
        "policy:publish",
        "metrics",
        "admin",
    }
)
POLICY_READERS = ("policy:read", "policy:edit", "policy:publish", "audit", "review")
"""Scopes that may read policy text (policies name fraud thresholds): not `decide` alone."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: the API key's id, scopes and name (shown on pages)."""

    key_id: str
    scopes: frozenset[str]
    name: str | None = None

    def has_any(self, scopes: tuple[str, ...]) -> bool:
        return any(self.has(s) for s in scopes)

    def has(self, scope: str) -> bool:
        """admin holds every scope; audit:pii includes audit."""
        implied = scope == "audit" and "audit:pii" in self.scopes
        return scope in self.scopes or implied or "admin" in self.scopes
