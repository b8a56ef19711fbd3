"""Response models of the public API and the errors each operation documents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.engine import DecisionResponse, LatencyOut, SpecRef, UsageOut
from service.kinds.base import Check
from service.vocabulary import FallbackReason, Source

__all__ = ["DecisionResponse", "LatencyOut", "SpecRef", "UsageOut"]


class Open(BaseModel):
    """A response object that may gain fields: clients must ignore the ones they don't know."""

    model_config = ConfigDict(extra="allow")


# --- errors ---------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_error.")
    message: str = Field(description="What went wrong, naming the field and the reason.")
    details: Any = Field(
        default=None,
        description="Context: a list of {field, reason} for validation errors, else an "
        "object or null.",
    )


class ErrorResponse(BaseModel):
    """The one error shape every 4xx and 5xx answer has."""

    error: ErrorInfo


ERRORS: dict[int, str] = {
    400: "The body is not valid JSON (`bad_request`).",
    401: "No valid API key: send `Authorization: Bearer <key>` (`unauthenticated`).",
    403: "The key lacks the scope this operation needs (`forbidden`).",
    404: "No such decision, kind or spec version, or no checkpoint directory (`not_found`).",
    409: "A conflict: an Idempotency-Key reused or still in progress, or an already "
    "reviewed decision (`conflict`).",
    413: "The body is too large or too deeply nested (`payload_too_large`).",
    415: "The body is not sent as JSON (`unsupported_media_type`).",
    422: "A field or parameter does not validate; `details` lists each (`validation_error`).",
    429: "Rate limit of this key reached; see Retry-After (`rate_limited`).",
    500: "An internal error; quote the X-Request-Id (`internal_error`).",
    503: "The decision log, the policies or the LLM cannot take the request now "
    "(`store_unavailable`, `spec_unavailable`, `overloaded`); see Retry-After.",
}


def errors(*statuses: int, media: str | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the real error body; `media`
    when the operation's own responses are not JSON (the errors still are)."""
    if media is None:
        return {s: {"model": ErrorResponse, "description": ERRORS[s]} for s in statuses}
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    return {s: {"description": ERRORS[s], "content": {media: {"schema": ref}}} for s in statuses}


AUTHED = (401, 403, 429, 500, 503)
"""What every operation behind an API key can answer."""


# --- decisions ------------------------------------------------------------------------


class DecisionSummary(Open):
    """One line of the decision list (the rationale masked without `audit:pii`)."""

    decision_id: str
    kind: str
    created_at: str
    order_id: str | None
    customer_id: str | None
    outcome: str
    source: Source
    needs_review: bool
    fallback_reason: FallbackReason | None
    confidence: float
    spec: SpecRef
    model: str | None
    rationale: str
    supersedes: str | None
    shadow_of: str | None
    seq: int | None


class DecisionPage(BaseModel):
    decisions: list[DecisionSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ClauseText(BaseModel):
    id: str
    title: str
    text: str


class ShadowLink(BaseModel):
    decision_id: str
    outcome: str
    source: Source
    spec_version: str


class SupersededBy(BaseModel):
    decision_id: str
    by: str | None
    at: str
    outcome: str
    note: str
    awaiting_second_reviewer: bool


class ChainPosition(BaseModel):
    seq: int | None
    prev_hash: str
    hash: str


class DecisionDetail(DecisionResponse):
    """The full record as auditors read it: the envelope (its `verdict` of the record's
    kind) and more; personal fields are `[masked]` without `audit:pii`, `masked` says where."""

    model_config = ConfigDict(extra="allow")

    case: dict[str, Any] = Field(description="The case as received (the kind's request body).")
    llm_verdict: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    prompt: dict[str, Any] | None
    prompt_sha256: str | None
    prompt_template_sha256: str | None
    guardrails_version: str
    caller: str | None
    idempotency_key: str | None
    request_id: str | None
    shadow_of: str | None
    supersedes: str | None
    order_id: str | None
    customer_id: str | None
    chain: ChainPosition
    clauses: list[ClauseText]
    shadows: list[ShadowLink]
    superseded_by: list[SupersededBy]
    masked: list[str] = Field(description="Paths shown as [masked] (empty with audit:pii).")


# --- reviews --------------------------------------------------------------------------


class ReviewSummary(DecisionSummary):
    review_reasons: list[str]


class ReviewPage(BaseModel):
    status: Literal["open", "resolved"]
    reviews: list[ReviewSummary]
    next_cursor: str | None


class ReviewOut(DecisionSummary):
    """The review record: settled (201), or awaiting a second reviewer (202)."""

    settled: bool
    verdict: dict[str, Any]
    checks: list[Check]
    review_reasons: list[str]


# --- audit ----------------------------------------------------------------------------


class VerifyReport(Open):
    """The chain walk: `ok`, records checked, the first bad record and the head."""

    ok: bool
    checked: int
    first_bad: dict[str, Any] | None
    head: dict[str, Any] | None


class Checkpoints(Open):
    """The published checkpoints (C2SP signed notes), oldest first; leaves on request."""

    configured: bool
    verifier_key: str | None
    checkpoints: list[Any]
    leaves: dict[str, Any] | None = None


class InclusionProof(BaseModel):
    """RFC 6962 audit path of a decision in its chain."""

    decision_id: str
    chain: str
    seq: int | None
    index: int
    tree_size: int
    record_hash: str
    leaf_hash: str
    proof: list[str]
    root: str
    checkpoint: str | None = Field(description="The signed note the proof is against, if any.")


class ConsistencyProof(BaseModel):
    """RFC 6962 consistency proof of one chain between two tree sizes."""

    chain: str
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class DayStats(Open):
    decisions: int
    by_kind: dict[str, int]
    by_source: dict[str, int]
    by_outcome: dict[str, int]
    llm_cost_usd: str


class Stats(Open):
    since: str
    until: str | None
    kind: str | None
    decisions: int
    review_rate: float | None
    fallback_reasons: dict[str, int]
    reviews: int
    reviews_pending: int
    reviews_compared: int
    reviewer_agreement: float | None
    per_day: dict[str, DayStats]


# --- specs ----------------------------------------------------------------------------


class FindingOut(BaseModel):
    line: int | None
    field: str | None
    message: str


class LiveVersion(BaseModel):
    sha256: str
    version: str
    rollout: str
    effective_from: date | None
    title: str
    clauses: int


class SpecFile(Open):
    file: str
    kind: str | None
    version: LiveVersion | None
    on_disk_differs: bool
    errors: list[FindingOut]
    warnings: list[FindingOut]


class SpecList(Open):
    serving: list[dict[str, Any]] = Field(description="The versions serving now, per role.")
    specs: list[SpecFile]


class VersionRow(BaseModel):
    sha256: str
    name: str
    version: str
    rollout: str
    effective_from: date | None
    first_seen: datetime | None
    last_seen: datetime | None
    live: bool
    roles: list[str] = Field(default_factory=list)


class VersionList(BaseModel):
    kind: str
    versions: list[VersionRow]


class ClauseOut(BaseModel):
    id: str
    title: str
    text: str


class VersionDetail(BaseModel):
    sha256: str
    name: str
    kind: str
    version: str
    rollout: str
    effective_from: date | None
    first_seen: datetime | None
    last_seen: datetime | None
    parameters: dict[str, Any]
    clauses: list[ClauseOut]
    text: str


class ParameterChange(BaseModel):
    key: str
    change: Literal["added", "removed", "changed"]
    from_: Any = Field(default=None, alias="from", serialization_alias="from")
    to: Any = None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class SpecDiff(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    parameters: list[ParameterChange]
    text: str = Field(description="A unified diff of the two files.")
    from_sha256: str
    to_sha256: str


class RolloutFile(BaseModel):
    file: str
    sha256: str
    version: str


class Candidate(RolloutFile):
    rollout: str


class Disagreement(BaseModel):
    live_decision: str
    shadow_decision: str
    order_id: str | None
    live_outcome: str
    candidate_outcome: str
    live_source: Source
    candidate_source: Source


class ShadowQueue(BaseModel):
    queued: int
    done: int
    dropped: int
    failed: int


class RolloutReport(Open):
    """Shadow: agreement on pairs; canary: the candidate's share of live traffic."""

    kind: str
    candidate: Candidate
    live: list[RolloutFile]
    compared: int | None = None
    agreement_rate: float | None = None
    disagreements: list[Disagreement] | None = None
    canary_percent: int | None = None
    recent_decisions: int | None = None
    served_by_candidate: int | None = None
    candidate_share: float | None = None
    shadow_queue: ShadowQueue | None = None


# --- health ---------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(Open):
    status: Literal["ready", "not_ready"]
    database: Literal["ok", "unavailable"]
    specs: dict[str, str]
    llm: str | dict[str, Any] = Field(description="'disabled (rules only)' or a probe per model.")
    reasons: list[str]
    rate_limit: str


# --- policy editing (drafts, evals, rollout changes) -------------------------------------


class LintFinding(BaseModel):
    line: int | None
    field: str | None
    rule: str
    reason: str


class LintReport(Open):
    """A lint result: whether the text may be stored, and every finding at its line."""

    ok: bool
    sha256: str | None
    version: str | None
    clauses: list[str]
    errors: list[LintFinding]
    warnings: list[LintFinding]


class DraftOut(LintReport):
    name: str
    created: bool = Field(description="false when the same text was already stored")
    diff_with_live: str


class EvalOut(Open):
    """The kind's eval suite run against a version beside the live one (gates promotion)."""

    kind: str
    sha256: str
    version: str
    mode: Literal["rules", "recorded"]
    passed: bool
    passed_except_moved: bool
    moved: list[str] = Field(description="cases whose outcome differs from the live version")
    summary: dict[str, Any]


class CandidateOut(BaseModel):
    kind: str
    sha256: str
    rollout: str


class CandidateStopped(BaseModel):
    kind: str
    candidate: None


class PromoteOut(BaseModel):
    kind: str
    sha256: str
    version: str
    live_as: str | None


class RollbackOut(BaseModel):
    kind: str
    sha256: str
    version: str


class PolicyEvent(BaseModel):
    at: datetime
    actor: str | None
    action: str
    sha256: str | None
    details: Any


class PolicyEvents(BaseModel):
    kind: str
    events: list[PolicyEvent]
