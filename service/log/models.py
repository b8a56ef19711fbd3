"""Tables of the decision log, the spec versions, the chain head and the API keys."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = JSON().with_variant(JSONB(), "postgresql")

OUTCOME_MAX = 600
"""Longest outcome: a routing plan id is up to 3 legs of 'location:carrier.service'
(64 + 1 + 64 + 1 + 64 characters each) joined by '+'; tests/test_column_limits.py
derives it from the request models."""
KEY_NAME_MAX = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(t: datetime) -> datetime:
    """A stored time as UTC (SQLite hands them back naive)."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _json(nullable: bool = False) -> Any:
    return Field(sa_column=Column(JSONType, nullable=nullable))


def _ts(index: bool = False) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=index))


def _ts_or_none() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class DecisionRow(SQLModel, table=True):
    """One decision in one shard's chain; every column but `hash` is covered by the hash
    (hash version 2; see service/log/chain.py for version 1)."""

    __tablename__ = "decisions"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(index=True, unique=True, max_length=40)
    kind: str = Field(index=True, max_length=32)
    created_at: datetime = _ts(index=True)
    caller: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, index=True, max_length=255)
    order_id: str | None = Field(default=None, index=True, max_length=64)
    customer_id: str | None = Field(default=None, index=True, max_length=64)
    outcome: str = Field(index=True, max_length=OUTCOME_MAX)
    source: str = Field(index=True, max_length=16)
    needs_review: bool = Field(index=True)
    fallback_reason: str | None = Field(default=None, index=True, max_length=32)
    case: dict[str, Any] = _json()
    verdict: dict[str, Any] = _json()
    llm_verdict: dict[str, Any] | None = _json(nullable=True)
    checks: list[dict[str, Any]] = _json()
    review_reasons: list[str] = _json()
    cited_clauses: list[str] = _json()
    rationale: str = Field(sa_column=Column(Text, nullable=False))
    confidence: float
    spec_name: str = Field(max_length=64)
    spec_version: str = Field(max_length=32)
    spec_sha256: str = Field(index=True, max_length=64)
    prompt_sha256: str | None = Field(default=None, max_length=64)
    prompt_template_sha256: str | None = Field(default=None, max_length=64)
    prompt: dict[str, Any] | None = _json(nullable=True)
    guardrails_version: str = Field(max_length=64)
    model: str | None = Field(default=None, index=True, max_length=128)
    attempts: list[dict[str, Any]] = _json()
    usage: dict[str, Any] = _json()
    latency_ms: dict[str, Any] = _json()
    shadow_of: str | None = Field(default=None, index=True, max_length=40)
    supersedes: str | None = Field(default=None, index=True, max_length=40)
    request_id: str | None = Field(default=None, index=True, max_length=128)
    response_sha256: str | None = Field(default=None, max_length=64)
    """sha256 of the response stored for an Idempotency-Key: a replay must match it."""
    shard: int = Field(default=1, index=True)
    hash_version: int = Field(default=2)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AdminEventRow(SQLModel, table=True):
    """An administrative action (key created, revoked or re-scoped, session opened, spec
    promoted or rolled back) in the admin chain; every column but `hash` is hashed."""

    __tablename__ = "admin_events"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(index=True, unique=True, max_length=40)
    created_at: datetime = _ts()
    actor: str = Field(max_length=64)
    action: str = Field(index=True, max_length=32)
    subject: str = Field(index=True, max_length=128)
    details: dict[str, Any] = _json()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


ADMIN_CHAIN = 0
"""`chain_head` row of the admin chain; decision shards are rows 1..ARBITER_LOG_SHARDS."""


class ChainHead(SQLModel, table=True):
    """The end of one chain (0: admin events, 1..n: decision shards). The service moves it
    with each append; the signed checkpoints, published outside the database, are what
    catch a head moved back."""

    __tablename__ = "chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    count: int = 0
    hash: str = Field(default="0" * 64, max_length=64)
    updated_at: datetime = _ts()


class SpecVersionRow(SQLModel, table=True):
    """Every spec version ever loaded, with its exact text."""

    __tablename__ = "spec_versions"

    sha256: str = Field(primary_key=True, max_length=64)
    kind: str = Field(index=True, max_length=32)
    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    effective_from: date | None = None
    rollout: str = Field(max_length=16)
    text: str = Field(sa_column=Column(Text, nullable=False))
    parameters: dict[str, Any] = _json()
    first_seen: datetime = _ts()
    last_seen: datetime = _ts()


class ApiKeyRow(SQLModel, table=True):
    """An API key, stored as its sha256; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=KEY_NAME_MAX)
    key_hash: str = Field(index=True, unique=True, max_length=64)
    scopes: list[str] = _json()
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts_or_none()
    expires_at: datetime | None = _ts_or_none()
    last_used_at: datetime | None = _ts_or_none()


class UiSession(SQLModel, table=True):
    """A browser session of the web pages, opened with an API key; stored as a hash."""

    __tablename__ = "ui_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(max_length=32)
    csrf: str = Field(max_length=64)
    created_at: datetime = _ts()
    expires_at: datetime = _ts()


class IdempotencyRow(SQLModel, table=True):
    """An Idempotency-Key: the request it was first used with, and the exact response."""

    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=400)  # caller:kind:key
    request_sha256: str = Field(max_length=64)
    state: str = Field(max_length=16)  # in_flight | done
    decision_id: str | None = Field(default=None, max_length=40)
    response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()
    expires_at: datetime = _ts(index=True)
    claim: str | None = Field(default=None, max_length=32)  # who holds an in-flight key
    lease_until: datetime | None = _ts_or_none()  # an in-flight claim ends then
