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

from service.engine import DecisionResponse, cited_clauses_check, new_decision_id
from service.errors import (
    ArbiterError,
    Conflict,
    Forbidden,
    InvalidInput,
    LogTampered,
    NotFound,
    VerdictRefused,
    validation_details,
)
from service.kinds.base import WORDING_FIELDS, Check, VerdictBase, field_paths
from service.kinds.registry import AnyKind
from service.log.chain import utc_iso
from service.log.decisions import DecisionFilter, DecisionLog
from service.log.masking import MASK, mask_record, mask_tokens, masked_verdict_fields, record_paths
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
    except LogTampered as exc:  # never rendered as policy
        return [{"id": c, "title": "TAMPERED", "text": exc.message} for c in row.cited_clauses]
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
    log: DecisionLog,
    registry: SpecRegistry,
    kinds: Mapping[str, AnyKind],
    row: DecisionRow,
    *,
    pii: bool,
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
                "awaiting_second_reviewer": s.needs_review,
            }
            for s in sups
        ],
    }
    if pii:
        data["masked"] = []
        return data
    masked, paths = mask_record(data, kinds.get(row.kind))
    masked["masked"] = paths
    return masked


EXPORT_COLUMNS = [
    "seq",
    "shard",
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
    "amounts",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "supersedes",
    "shadow_of",
    "hash_version",
    "prev_hash",
    "hash",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting = + - @ (or tab, CR) gets a '."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def money_columns(kind: AnyKind | None, verdict: dict[str, Any]) -> str:
    """The verdict's top-level amounts (fields the kind tags as money), as "name=value"."""
    if kind is None:
        return ""
    names = [p for p in field_paths(kind.Verdict).money if "." not in p]
    return " ".join(f"{n}={verdict[n]}" for n in names if verdict.get(n) is not None)


def export_lines(
    log: DecisionLog,
    filters: DecisionFilter,
    fmt: str,
    *,
    pii: bool,
    counted: list[int] | None = None,
    kinds: Mapping[str, AnyKind],
) -> Iterator[str]:
    """JSON lines, or a CSV header and rows, one record at a time; `counted[0]` counts
    the records written. Every record carries its chain fields (seq, shard, prev_hash,
    hash), so `arbiter log verify --export` can check the file against the checkpoints."""
    n = counted if counted is not None else [0]
    if fmt == "jsonl":
        for row in log.stream(filters=filters):
            rec = record_dict(row)
            if not pii:
                rec, paths = mask_record(rec, kinds.get(row.kind))
                rec["masked"] = paths
            n[0] += 1
            yield json.dumps(rec, default=str, ensure_ascii=False) + "\n"
        return
    buf = io.StringIO()
    writer = csv.writer(buf)

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(EXPORT_COLUMNS)
    yield flush()
    for row in log.stream(filters=filters):
        rec = record_dict(row)
        k = kinds.get(row.kind)
        usage, latency = rec["usage"] or {}, rec["latency_ms"] or {}
        rationale = rec["rationale"]
        if not pii and rationale and "rationale" in record_paths(k):
            rationale = MASK  # may quote the customer
        extra = {
            "rationale": rationale,
            "amounts": money_columns(k, rec["verdict"]),
            "cited_clauses": " ".join(rec["cited_clauses"]),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "cost_usd": usage.get("cost_usd"),
            "latency_ms": latency.get("total"),
        }
        writer.writerow([csv_cell(extra.get(c, rec.get(c))) for c in EXPORT_COLUMNS])
        n[0] += 1
        yield flush()


def stats(
    log: DecisionLog,
    kinds: Mapping[str, AnyKind],
    *,
    since: datetime | None,
    until: datetime | None,
    kind: str | None,
) -> dict[str, Any]:
    """Decisions per day by kind, source and outcome; fallback reasons; review and cost."""
    since = since or (utcnow() - timedelta(days=30))
    per_day: dict[str, dict[str, Any]] = {}
    fallback: dict[str, int] = {}
    total = review = 0
    reviews = agree = compared = pending = 0
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
            if row.needs_review:  # awaiting a second reviewer
                pending += 1
                continue
            reviews += 1
            k = kinds.get(row.kind)
            original = review_root(log, row)
            if k and original.source != "review" and original.outcome != "needs_review":
                compared += 1
                agree += same_terms(k, original.verdict, row.verdict)
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
        "reviews_pending": pending,
        "reviews_compared": compared,
        "reviewer_agreement": round(agree / compared, 4) if compared else None,
        "per_day": dict(sorted(per_day.items())),
    }


def parse_verdict(k: AnyKind, data: dict[str, Any]) -> VerdictBase:
    """A verdict from JSON (derived fields such as total_refund dropped); 422 names fields."""
    data = {f: v for f, v in data.items() if f not in k.Verdict.model_computed_fields}
    try:
        verdict: VerdictBase = k.Verdict.model_validate(data)
        return verdict
    except ValidationError as exc:
        details = [
            {"field": "verdict." + d["field"], "reason": d["reason"]}
            for d in validation_details(list(exc.errors()))
        ]
        raise InvalidInput("the reviewer's verdict is not valid", details=details) from exc


def same_terms(k: AnyKind, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two verdicts decide the same: every field compared but the wording
    (cited clauses, rationale, confidence, customer message)."""

    def terms(data: dict[str, Any]) -> dict[str, Any]:
        dumped: dict[str, Any] = parse_verdict(k, data).model_dump(mode="json")
        return {f: v for f, v in dumped.items() if f not in WORDING_FIELDS}

    return terms(a) == terms(b)


def review_root(log: DecisionLog, row: DecisionRow) -> DecisionRow:
    """The live decision a review (or a chain of pending reviews) is about."""
    while row.source == "review" and row.supersedes:
        up = log.get(decision_id=row.supersedes)
        if up is None:
            break
        row = up
    return row


def _refused(checks: list[Check], repaired: VerdictBase | None) -> VerdictRefused:
    failed = [c for c in checks if c.status == "failed"]
    repairs = [c for c in checks if c.status == "repaired"]
    named = "; ".join(f"{c.name} ({c.detail})" for c in [*failed, *repairs])
    how = (
        "it breaks the policy"
        if failed
        else "the policy would change it; check the repaired verdict and submit it to confirm"
    )
    return VerdictRefused(
        f"the reviewer's verdict was not recorded: {how}: {named}",
        details={
            "failed": [c.model_dump() for c in failed],
            "repairs": [c.model_dump() for c in repairs],
            "repaired_verdict": None
            if failed or repaired is None
            else repaired.model_dump(mode="json"),
        },
    )


def _check_review(
    log: DecisionLog,
    k: AnyKind,
    registry: SpecRegistry,
    target: DecisionRow,
    data: dict[str, Any],
) -> tuple[DecisionRow, VerdictBase, list[Check], list[str]]:
    """The guard over a reviewer's verdict, under the case and spec version of the original:
    (original, verdict, checks, why a second reviewer must confirm it)."""
    root = review_root(log, target)
    v = parse_verdict(k, data)
    if k.outcome(v) == "needs_review":
        raise InvalidInput(
            "a review must decide the case: 'needs_review' is not a reviewer's verdict",
            details=[{"field": "verdict.outcome", "reason": "a review must decide the case"}],
        )
    try:
        spec = registry.by_sha(root.kind, root.spec_sha256)
    except ArbiterError as exc:
        raise Conflict(
            f"the spec version {root.spec_sha256[:12]} of {root.id} cannot be read, so no "
            f"review can be checked against it: {exc.message}"
        ) from exc
    try:
        case = k.Case.model_validate(root.case)
    except ValidationError as exc:
        raise Conflict(f"the case of {root.id} no longer validates; it cannot be reviewed") from exc
    facts = k.analyse(case, spec.params)
    guarded = k.guard(case, v, spec.params, facts, person=True)
    checks = [*guarded.checks, cited_clauses_check(v, spec)]
    if (
        not any(c.status == "repaired" for c in checks)
        and guarded.verdict.model_dump() != v.model_dump()
    ):
        filled = [f for f, x in guarded.verdict.model_dump().items() if v.model_dump().get(f) != x]
        checks.append(
            Check(
                name="verdict_complete",
                status="repaired",
                detail="set by the policy: " + ", ".join(filled),
            )
        )
    hard = [c for c in checks if c.status == "failed" and c.name not in k.automatic_only]
    if hard or any(c.status == "repaired" for c in checks):
        raise _refused(
            [c for c in checks if c.status != "passed"], guarded.verdict if not hard else None
        )
    person_only = [
        *(c.detail or c.name for c in checks if c.status == "failed"),
        *k.review_reasons(case, v, spec.params, facts),
    ]
    verdict = v.model_dump(mode="json")
    confirms = target.source == "review" and same_terms(k, verdict, target.verdict)
    four_eyes: list[str] = []
    if not confirms and not same_terms(k, verdict, root.verdict):
        if not root.needs_review:
            four_eyes.append(
                "overrides a decision that did not need review: a second reviewer must confirm"
            )
        four_eyes += [
            f"the reviewer's own verdict is one the policy reserves to a person ({why}): "
            "a second reviewer must confirm"
            for why in person_only
        ]
    return root, v, checks, four_eyes


async def submit_review(
    log: DecisionLog,
    kinds: Mapping[str, AnyKind],
    registry: SpecRegistry,
    *,
    decision_id: str,
    verdict: dict[str, Any] | None,
    note: str,
    reviewer: str,
    pii: bool,
) -> DecisionRow:
    """A new record that supersedes the decision (or a review awaiting a second reviewer);
    never an edit. The kind's guard checks it; 409 if already reviewed.

    Without `pii`, the verdict fields the reviewer sees masked (the kind's personal ones)
    may be left out: they keep the stored value.
    """
    import anyio

    target = await anyio.to_thread.run_sync(lambda: log.get(decision_id=decision_id))
    if target is None:
        raise NotFound(f"no decision {decision_id}")
    if target.shadow_of is not None or (target.source == "review" and not target.needs_review):
        raise Conflict(
            f"{decision_id} is a {'shadow' if target.shadow_of else 'settled review'} "
            "record; review the live decision instead"
        )
    done = await anyio.to_thread.run_sync(lambda: log.superseding(decision_id=target.id))
    if done is not None:  # checked again, atomically, when the review is appended
        raise Conflict(
            f"{decision_id} has already been reviewed (by {done.id})",
            details={"decision_id": decision_id},
        )
    if target.source == "review" and target.caller == reviewer:
        raise Forbidden(
            f"{decision_id} is your own verdict: a second reviewer must confirm or change it"
        )
    k = kinds.get(target.kind)
    if k is None:
        raise NotFound(f"unknown decision kind {target.kind!r}")
    data = dict(target.verdict)
    if verdict is not None:
        hidden = mask_tokens(verdict, "verdict")
        if hidden:
            raise InvalidInput(
                f"the verdict contains the mask token {MASK}: masked data is never a value; "
                "leave a field you cannot see out to keep it as it is",
                details=[{"field": p, "reason": f"contains {MASK}"} for p in hidden],
            )
        unseen = frozenset() if pii else masked_verdict_fields(k)
        data = {**{f: target.verdict[f] for f in unseen if f in target.verdict}, **verdict}
    root, v, checks, four_eyes = await anyio.to_thread.run_sync(
        lambda: _check_review(log, k, registry, target, data)
    )
    row = DecisionRow(
        id=new_decision_id(),
        kind=root.kind,
        created_at=datetime.now(UTC),
        caller=reviewer,
        idempotency_key=None,
        order_id=root.order_id,
        customer_id=root.customer_id,
        outcome=k.outcome(v),
        source="review",
        needs_review=bool(four_eyes),
        fallback_reason=None,
        case=root.case,
        verdict=v.model_dump(mode="json"),
        llm_verdict=None,
        checks=[c.model_dump() for c in checks],
        review_reasons=four_eyes,
        cited_clauses=list(v.cited_clauses),
        rationale=note,
        confidence=1.0,
        spec_name=root.spec_name,
        spec_version=root.spec_version,
        spec_sha256=root.spec_sha256,
        prompt_sha256=None,
        prompt_template_sha256=None,
        prompt=None,
        guardrails_version=k.guardrails_version,
        model=None,
        attempts=[],
        usage={"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0, "cost_usd": "0.000000"},
        latency_ms={"total": 0, "llm": 0},
        shadow_of=None,
        supersedes=target.id,
        prev_hash="",
        hash="",
    )
    return await anyio.to_thread.run_sync(lambda: log.append(row=row))
