"""The hash chain: canonical JSON of a record, linked to the previous record's hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from service.log.models import DecisionRow

GENESIS = "0" * 64
HASH_VERSION = 2
"""Version 2 (migration 0005) hashes every column but `hash`: `seq`, `shard` and
`hash_version` included. Version 1 records (written before) keep their hash and verify as
written: their `seq` is bound by the signed checkpoints' published leaves instead."""
V1_UNHASHED = frozenset({"seq", "hash", "shard", "hash_version", "response_sha256"})
HASHED_WHEN_SET = frozenset({"request_id"})
"""Version 1: columns added after records existed, hashed only when set."""


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
    """The hashed content of a record, by its hash version."""
    if row.hash_version == 1:
        data = row.model_dump(exclude=set(V1_UNHASHED))
        for name in HASHED_WHEN_SET:
            if data.get(name) is None:
                data.pop(name, None)
    else:
        data = row.model_dump(exclude={"hash"})
    data["created_at"] = utc_iso(row.created_at)
    return data


def shard_of(key: str, shards: int) -> int:
    """The shard (1..shards) of an order id: stable across processes and hosts."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % shards + 1


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def record_hash(row: DecisionRow) -> str:
    """sha256 over the canonical JSON of the record, which includes prev_hash."""
    return hashlib.sha256(canonical(payload(row))).hexdigest()


def export_hash(rec: dict[str, Any]) -> str:
    """The hash of a record as exported unmasked (`record_dict`), recomputed from the file."""
    data = {k: v for k, v in rec.items() if k not in ("hash", "masked")}
    if data.get("hash_version", 1) == 1:
        data = {k: v for k, v in data.items() if k not in V1_UNHASHED}
        for name in HASHED_WHEN_SET:
            if data.get(name) is None:
                data.pop(name, None)
    return hashlib.sha256(canonical(data)).hexdigest()
