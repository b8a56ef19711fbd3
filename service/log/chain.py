"""The hash chain: canonical JSON of a record, linked to the previous record's hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from service.log.models import DecisionRow

GENESIS = "0" * 64
UNHASHED = frozenset({"seq", "hash"})
HASHED_WHEN_SET = frozenset({"request_id"})
"""Columns added after records existed: hashed only when set, so older records still verify."""


def utc_iso(ts: datetime) -> str:
    """A timestamp as UTC ISO 8601; naive values (SQLite) are read as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC. ValueError when unreadable."""
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def payload(row: DecisionRow) -> dict[str, Any]:
    """The hashed content of a record."""
    data = row.model_dump(exclude=set(UNHASHED))
    data["created_at"] = utc_iso(row.created_at)
    for name in HASHED_WHEN_SET:
        if data.get(name) is None:
            data.pop(name, None)
    return data


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def record_hash(row: DecisionRow) -> str:
    """sha256 over the canonical JSON of the record, which includes prev_hash."""
    return hashlib.sha256(canonical(payload(row))).hexdigest()
