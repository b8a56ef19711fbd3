"""API keys with scopes: Authorization: Bearer <key>."""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = frozenset({"decide", "audit", "audit:pii", "review", "admin"})


@dataclass(frozen=True)
class Caller:
    """Who is calling: the API key's id and scopes."""

    key_id: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        """admin holds every scope; audit:pii includes audit."""
        implied = scope == "audit" and "audit:pii" in self.scopes
        return scope in self.scopes or implied or "admin" in self.scopes
