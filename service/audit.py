"""Reading the log for auditors: full records, masking, export, stats, reviews."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from service.engine import DecisionResponse, new_decision_id
from service.errors import Conflict, InvalidInput, NotFound, validation_details
from service.kinds.registry import AnyKind
from service.log.chain import utc_iso
from service.log.decisions import DecisionFilter, DecisionLog
from service.log.masking import mask_record
from service.log.models import DecisionRow, utcnow
from service.specs.registry import SpecRegistry


def record_dict(row: DecisionRow) -> dict[str, Any]:
    """Every column of a record, JSON-ready."""
    data = row.model_dump()
    data["created_at"] = utc_iso(row.created_at)
    return data


def _clauses(registry: SpecRegistry, row: DecisionRow) -> list[dict[str, str]]:
    try:
        spec = registry.by_sha(row.kind, row.spec_sha256)
    except Exception:  # a version that can no longer be read is shown without its text
        return [
            {"id": c, "title": "", "text": "(spec text unavailable)"} for c in row.cited_clauses
        ]
    return [
        {
            "id": c,
            "title": spec.clauses[c].title if c in spec.clauses else "",
            "text": spec.clauses[c].text if c in spec.clauses else "(not in this version)",
        }
        for c in row.cited_clauses
    ]


def decision_detail(
    log: DecisionLog, registry: SpecRegistry, row: DecisionRow, *, pii: bool
) -> dict[str, Any]:
    """The full record as auditors read it: why, with the policy text used, and links."""
    shadows, sups = log.related(decision_id=row.id)
    data: dict[str, Any] = {
        **DecisionResponse.from_row(row).model_dump(mode="json"),
        "case": row.case,
        "llm_verdict": row.llm_verdict,
        "attempts": row.attempts,
        "prompt": row.prompt,
        "prompt_sha256": row.prompt_sha256,
        "prompt_template_sha256": row.prompt_template_sha256,
        "guardrails_version": row.guardrails_version,
        "caller": row.caller,
        "idempotency_key": row.idempotency_key,
        "request_id": row.request_id,
        "shadow_of": row.shadow_of,
        "supersedes": row.supersedes,
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "chain": {"seq": row.seq, "prev_hash": row.prev_hash, "hash": row.hash},
        "clauses": _clauses(registry, row),
        "shadows": [
            {
                "decision_id": s.id,
                "outcome": s.outcome,
                "source": s.source,
                "spec_version": s.spec_version,
            }
            for s in shadows
        ],
        "superseded_by": [
            {
                "decision_id": s.id,
                "by": s.caller,
                "at": utc_iso(s.created_at),
                "outcome": s.outcome,
                "note": s.rationale,
            }
            for s in sups
        ],
    }
    if pii:
        data["masked"] = []
        return data
    masked, paths = mask_record(data)
    masked["masked"] = paths
    return masked


def export_lines(
    log: DecisionLog, filters: DecisionFilter, fmt: str, *, pii: bool
) -> Iterator[str]:
    """JSON lines or CSV rows, one record at a time."""
    if fmt == "jsonl":
        for row in log.stream(filters=filters):
            rec = record_dict(row)
            if not pii:
                rec, paths = mask_record(rec)
                rec["masked"] = paths
            yield json.dumps(rec, default=str, ensure_ascii=False) + "\n"
        return
    cols = [
        "seq",
        "id",
        "kind",
        "created_at",
        "order_id",
        "customer_id",
        "outcome",
        "source",
        "needs_review",
        "fallback_reason",
        "confidence",
        "spec_name",
        "spec_version",
        "spec_sha256",
        "model",
        "cited_clauses",
        "rationale",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "supersedes",
        "shadow_of",
        "hash",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for row in log.stream(filters=filters):
        writer.writerow(
            [
                row.seq,
                row.id,
                row.kind,
                utc_iso(row.created_at),
                row.order_id,
                row.customer_id,
                row.outcome,
                row.source,
                row.needs_review,
                row.fallback_reason,
                row.confidence,
                row.spec_name,
                row.spec_version,
                row.spec_sha256,
                row.model,
                " ".join(row.cited_clauses),
                row.rationale,
                row.usage.get("prompt_tokens"),
                row.usage.get("completion_tokens"),
                row.usage.get("cost_usd"),
                row.latency_ms.get("total"),
                row.supersedes,
                row.shadow_of,
                row.hash,
            ]
        )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()


def stats(
    log: DecisionLog, *, since: datetime | None, until: datetime | None, kind: str | None
) -> dict[str, Any]:
    """Decisions per day by kind, source and outcome; fallback reasons; review and cost."""
    since = since or (utcnow() - timedelta(days=30))
    per_day: dict[str, dict[str, Any]] = {}
    fallback: dict[str, int] = {}
    total = review = 0
    reviews = agree = 0
    for row in log.stream(filters=DecisionFilter(kind=kind, since=since, until=until)):
        day = utc_iso(row.created_at)[:10]
        d = per_day.setdefault(
            day,
            {
                "decisions": 0,
                "by_kind": {},
                "by_source": {},
                "by_outcome": {},
                "llm_cost_usd": Decimal(0),
            },
        )
        if row.source == "review":
            original = log.get(decision_id=row.supersedes or "")
            reviews += 1
            agree += bool(original and original.outcome == row.outcome)
            continue
        total += 1
        review += row.needs_review
        d["decisions"] += 1
        for key, value in (
            ("by_kind", row.kind),
            ("by_source", row.source),
            ("by_outcome", f"{row.kind}:{row.outcome}"),
        ):
            d[key][value] = d[key].get(value, 0) + 1
        d["llm_cost_usd"] += Decimal(row.usage.get("cost_usd", "0"))
        if row.fallback_reason:
            fallback[row.fallback_reason] = fallback.get(row.fallback_reason, 0) + 1
    for d in per_day.values():
        d["llm_cost_usd"] = f"{d['llm_cost_usd']:.6f}"
    return {
        "since": utc_iso(since),
        "until": utc_iso(until) if until else None,
        "kind": kind,
        "decisions": total,
        "review_rate": round(review / total, 4) if total else None,
        "fallback_reasons": fallback,
        "reviews": reviews,
        "reviewer_agreement": round(agree / reviews, 4) if reviews else None,
        "per_day": dict(sorted(per_day.items())),
    }


async def submit_review(
    log: DecisionLog,
    kinds: Mapping[str, AnyKind],
    *,
    decision_id: str,
    verdict: dict[str, Any] | None,
    note: str,
    reviewer: str,
) -> DecisionRow:
    """A new record that supersedes the original; never an edit. 409 if already reviewed."""
    import anyio

    original = await anyio.to_thread.run_sync(lambda: log.get(decision_id=decision_id))
    if original is None:
        raise NotFound(f"no decision {decision_id}")
    if original.shadow_of is not None or original.source == "review":
        raise Conflict(
            f"{decision_id} is a {'shadow' if original.shadow_of else 'review'} "
            "record; review the live decision instead"
        )
    k = kinds.get(original.kind)
    if k is None:
        raise NotFound(f"unknown decision kind {original.kind!r}")
    data = dict(verdict if verdict is not None else original.verdict)
    for computed in k.Verdict.model_computed_fields:  # e.g. total_refund: derived, not input
        data.pop(computed, None)
    try:
        v = k.Verdict.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": "verdict." + d["field"], "reason": d["reason"]}
            for d in validation_details(list(exc.errors()))
        ]
        raise InvalidInput("the reviewer's verdict is not valid", details=details) from exc
    row = DecisionRow(
        id=new_decision_id(),
        kind=original.kind,
        created_at=datetime.now(UTC),
        caller=reviewer,
        idempotency_key=None,
        order_id=original.order_id,
        customer_id=original.customer_id,
        outcome=k.outcome(v),
        source="review",
        needs_review=False,
        fallback_reason=None,
        case=original.case,
        verdict=v.model_dump(mode="json"),
        llm_verdict=None,
        checks=[],
        review_reasons=[],
        cited_clauses=list(v.cited_clauses),
        rationale=note,
        confidence=1.0,
        spec_name=original.spec_name,
        spec_version=original.spec_version,
        spec_sha256=original.spec_sha256,
        prompt_sha256=None,
        prompt_template_sha256=None,
        prompt=None,
        guardrails_version=original.guardrails_version,
        model=None,
        attempts=[],
        usage={"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": "0.000000"},
        latency_ms={"total": 0, "llm": 0},
        shadow_of=None,
        supersedes=original.id,
        prev_hash="",
        hash="",
    )
    return await anyio.to_thread.run_sync(lambda: log.append(row=row))
