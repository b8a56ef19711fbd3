"""Query filters and cursors shared by the decision list, export and review queue."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, WithJsonSchema

from service.errors import Forbidden, InvalidInput
from service.kinds.registry import Kinds
from service.limits import MAX_SEQ, year_in_range
from service.log.chain import parse_utc, utc_iso
from service.log.decisions import DecisionFilter
from service.log.masking import for_reader
from service.log.models import OUTCOME_MAX, DecisionRow
from service.vocabulary import FallbackReason, Source


def _iso(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = parse_utc(value)
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 date or time, e.g. 2026-11-01T00:00:00Z"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError("expected an ISO 8601 date or time")
    return year_in_range(value)


IsoTime = Annotated[
    datetime, BeforeValidator(_iso), WithJsonSchema({"type": "string", "format": "date-time"})
]
"""A time given as ISO 8601 text (a bare number is refused); without a zone, UTC."""


class ListFilters(BaseModel):
    """Filters of GET /v1/decisions and the export (query parameters)."""

    kind: Annotated[str | None, Query(max_length=32)] = None
    source: Annotated[Source | None, Query()] = None
    outcome: Annotated[
        str | None,
        Query(
            max_length=OUTCOME_MAX,
            description="the headline of the verdict, as in `outcome` of the envelope",
        ),
    ] = None
    needs_review: bool | None = None
    fallback_reason: Annotated[FallbackReason | None, Query()] = None
    spec_sha: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-fA-F]+$")] = None
    model: Annotated[str | None, Query(max_length=128)] = None
    order_id: Annotated[str | None, Query(max_length=64)] = None
    customer_id: Annotated[str | None, Query(max_length=64)] = None
    since: IsoTime | None = None
    until: IsoTime | None = None
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="text in the rationale (needs `audit:pii`: the rationale may quote "
            "the customer)",
        ),
    ] = None
    include_shadow: bool = False

    def to_filter(self, *, pii: bool) -> DecisionFilter:
        """The store's filter; 403 for a rationale search without `audit:pii` (it would
        reveal masked text one guess at a time)."""
        if self.q and not pii:
            raise Forbidden(
                "q searches the rationale, which may quote the customer: it needs the "
                "'audit:pii' scope",
                details={"required": "audit:pii"},
            )
        return DecisionFilter(**self.model_dump())


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        seq = int(value)
        if kind != "seq" or not 0 < seq <= MAX_SEQ:
            raise ValueError
        return seq
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor: not a cursor returned by this API",
            details=[{"field": "cursor", "reason": "invalid"}],
        ) from None


def summary(row: DecisionRow, kinds: Kinds, *, pii: bool) -> dict[str, Any]:
    """One line of the decision list (its rationale masked without `audit:pii`)."""
    line = {
        "decision_id": row.id,
        "kind": row.kind,
        "created_at": utc_iso(row.created_at),
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "outcome": row.outcome,
        "source": row.source,
        "needs_review": row.needs_review,
        "fallback_reason": row.fallback_reason,
        "confidence": row.confidence,
        "spec": {"name": row.spec_name, "version": row.spec_version, "sha256": row.spec_sha256},
        "model": row.model,
        "rationale": row.rationale,
        "supersedes": row.supersedes,
        "shadow_of": row.shadow_of,
        "seq": row.seq,
    }
    return for_reader(line, kinds.get(row.kind), pii=pii)


def parse_time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        raise InvalidInput(
            f"{field}: not an ISO 8601 time", details=[{"field": field, "reason": "invalid"}]
        ) from None
