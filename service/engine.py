"""The one pipeline every decision kind goes through (DESIGN §1)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import anyio
from pydantic import BaseModel, Field, ValidationError
from ulid import ULID

from service.errors import (
    Conflict,
    InvalidInput,
    LogTampered,
    NotFound,
    Overloaded,
    validation_details,
)
from service.kinds.base import Check, VerdictBase, field_paths
from service.kinds.injection import screen
from service.kinds.registry import AnyKind, Kinds
from service.llm.client import LLMClient
from service.llm.prompts import PromptLibrary
from service.llm.usage import Attempt, Usage
from service.log.chain import canonical, utc_iso
from service.log.decisions import DecisionLog
from service.log.idempotency import IdempotencyStore
from service.log.models import DecisionRow, utcnow
from service.metrics import Metrics
from service.settings import Settings
from service.specs.loader import Spec
from service.specs.registry import SpecRegistry
from service.vocabulary import FallbackReason, Source

logger = logging.getLogger("arbiter")


class SpecRef(BaseModel):
    name: str
    version: str
    sha256: str


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    llm_calls: int
    cost_usd: str


class LatencyOut(BaseModel):
    total: int
    llm: int


class DecisionResponse(BaseModel):
    """The envelope every POST /v1/decisions/{kind} returns (typed per kind in the API:
    `verdict` is the kind's verdict, `outcome` its headline)."""

    decision_id: str
    kind: str
    created_at: str = Field(description="UTC, ISO 8601 with milliseconds and Z.")
    outcome: str
    verdict: dict[str, Any]
    source: Source
    needs_review: bool
    review_reasons: list[str]
    cited_clauses: list[str]
    rationale: str
    confidence: float = Field(ge=0, le=1)
    checks: list[Check]
    fallback_reason: FallbackReason | None
    spec: SpecRef
    model: str | None
    usage: UsageOut
    latency_ms: LatencyOut

    @classmethod
    def from_row(cls, row: DecisionRow) -> DecisionResponse:
        return cls(
            decision_id=row.id,
            kind=row.kind,
            created_at=utc_iso(row.created_at),
            outcome=row.outcome,
            verdict=row.verdict,
            source=row.source,
            needs_review=row.needs_review,
            review_reasons=row.review_reasons,
            cited_clauses=row.cited_clauses,
            rationale=row.rationale,
            confidence=row.confidence,
            checks=[Check(**c) for c in row.checks],
            fallback_reason=row.fallback_reason,
            spec=SpecRef(name=row.spec_name, version=row.spec_version, sha256=row.spec_sha256),
            model=row.model,
            usage=UsageOut(**row.usage),
            latency_ms=LatencyOut(**row.latency_ms),
        )


@dataclass(frozen=True)
class Decided:
    """What decide_raw answers: the stored JSON text, whether it is an idempotent replay,
    and the envelope model when it was made now (a replay has only its stored text)."""

    body: str
    replayed: bool
    response: DecisionResponse | None = None

    def envelope(self) -> DecisionResponse:
        if self.response is not None:
            return self.response
        return DecisionResponse.model_validate_json(self.body)  # the stored replay


class ShadowSink(Protocol):
    """Where live decisions are handed for shadow evaluation (service.shadow.ShadowRunner)."""

    def submit(self, *, kind: str, case: BaseModel, live_id: str, spec: Spec) -> bool: ...


FALLBACK_CONFIDENCE = 0.5
"""A fallback is a case the policy gives to the model's judgement, decided by rules instead
(the model failed, was out of policy, or is disabled): its confidence is the rules' own,
capped at 0.5. Rules are sure of the hard clauses they apply, not of the judgement."""


def new_decision_id() -> str:
    return "dec_" + str(ULID())


def cited_clauses_check(verdict: VerdictBase, spec: Spec) -> Check:
    """Every clause a verdict cites must exist in the spec version used."""
    unknown = [c for c in verdict.cited_clauses if c not in spec.clauses]
    if unknown:
        return Check(
            name="cited_clauses_exist",
            status="failed",
            detail=f"not in spec {spec.sha256[:12]}: {', '.join(unknown)}",
        )
    if not verdict.cited_clauses:
        return Check(name="cited_clauses_exist", status="failed", detail="no clause cited")
    return Check(name="cited_clauses_exist", status="passed")


class Engine:
    """validate → spec → precheck → LLM → guard → fallback/review → log → respond."""

    def __init__(
        self,
        *,
        settings: Settings,
        log: DecisionLog,
        idempotency: IdempotencyStore,
        registry: SpecRegistry,
        prompts: PromptLibrary,
        llm: LLMClient | None,
        kinds: Kinds,
    ):
        self.settings = settings
        self.log = log
        self.idempotency = idempotency
        self.registry = registry
        self.prompts = prompts
        self.llm = llm
        self.kinds = kinds
        self.shadow: ShadowSink | None = None
        self.metrics = Metrics()

    def kind(self, name: str) -> AnyKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise NotFound(
                f"unknown decision kind {name!r}", details={"known": sorted(self.kinds)}
            ) from None

    def parse_case(self, kind: str, data: Any) -> BaseModel:
        """Validate a raw case; InvalidInput names every bad field."""
        try:
            case: BaseModel = self.kind(kind).Case.model_validate(data)
            return case
        except ValidationError as exc:
            raise InvalidInput(
                "the case is not valid", details=validation_details(list(exc.errors()))
            ) from exc

    async def decide(self, **kwargs: Any) -> DecisionResponse:
        """Decide a validated case, log it, and return the envelope."""
        return (await self.decide_raw(**kwargs)).envelope()

    async def decide_raw(
        self,
        *,
        kind: str,
        case: BaseModel,
        caller: str | None,
        idempotency_key: str | None = None,
        pin_sha: str | None = None,
        pin_version: str | None = None,
        deadline_s: float | None = None,
        request_id: str | None = None,
    ) -> Decided:
        """The envelope (as a model, and as the JSON text stored for idempotent replays).

        Same Idempotency-Key and same request → the stored response, byte for byte, with
        no second decision; same key with another request → 409; a key whose first request
        is still being decided → 409 with Retry-After.
        """
        k = self.kind(kind)
        db = self.idempotency.db
        scope = claim = None
        if idempotency_key:
            scope = f"{caller}:{kind}:{idempotency_key}"
            request = hashlib.sha256(
                canonical(
                    {
                        "case": case.model_dump(mode="json"),
                        "spec_sha": pin_sha,
                        "spec_version": pin_version,
                    }
                )
            )
            # the claim lasts as long as this request can: its LLM deadline, then the write
            lease_s = (deadline_s or self.settings.deadline_s) + db.timeouts.wait_s
            held = await db.call(
                partial(
                    self.idempotency.begin,
                    scope=scope,
                    request_sha256=request.hexdigest(),
                    ttl_hours=self.settings.idempotency_ttl_hours,
                    lease_s=lease_s,
                )
            )
            if isinstance(held, str):
                claim = held
            elif held.request_sha256 != request.hexdigest():
                raise Conflict(
                    "this Idempotency-Key was used with a different request",
                    details={"decision_id": held.decision_id},
                )
            elif held.state != "done" or held.response is None:
                raise Conflict(
                    "a request with this Idempotency-Key is still being decided",
                    headers={"Retry-After": "1"},
                )
            else:
                bound = await db.call(
                    partial(
                        self.log.response_matches,
                        decision_id=held.decision_id,
                        response=held.response,
                    )
                )
                if not bound:
                    raise LogTampered(
                        "the response stored for this Idempotency-Key does not match its "
                        "decision record: it was altered in the database and is not replayed",
                        details={"decision_id": held.decision_id},
                    )
                return Decided(body=held.response, replayed=True)
        try:
            order_id, _ = k.subjects(case)
            snapshot = self.registry.snapshot  # one view of the specs for this request
            res = self.registry.resolve(
                kind,
                on=k.reference_date(case),
                key=order_id,
                pin_sha=pin_sha,
                pin_version=pin_version,
                snapshot=snapshot,
            )
            row = await self.evaluate(
                k,
                case,
                res.spec,
                caller=caller,
                idempotency_key=idempotency_key,
                deadline_s=deadline_s,
                request_id=request_id,
                reject_overload=self.settings.overload_mode == "reject",
            )
            response = DecisionResponse.from_row(row)
            body = response.model_dump_json()
            keyed = (scope, body, claim) if scope and claim else None
            row = await db.call(partial(self.log.append, row=row, idempotency=keyed))
        except BaseException:
            if scope is not None and claim is not None:
                await self._release(scope, claim)
            raise
        self.metrics.decided(row)
        if self.shadow is not None and res.role == "live":
            cand = snapshot.candidate(kind)
            if cand is not None and cand.meta.rollout == "shadow":
                self.shadow.submit(kind=kind, case=case, live_id=row.id, spec=cand)
        return Decided(body=body, replayed=False, response=response)

    async def _release(self, scope: str, claim: str) -> None:
        """Give a failed request's key back; if the database cannot, its lease ends it."""
        with anyio.CancelScope(shield=True):
            try:
                await self.idempotency.db.call(
                    partial(self.idempotency.release, scope=scope, claim=claim)
                )
            except Exception as exc:  # the database is away: keep the request's own error
                logger.warning("Idempotency-Key not released (its lease will end it): %r", exc)

    async def evaluate(
        self,
        k: AnyKind,
        case: BaseModel,
        spec: Spec,
        *,
        caller: str | None,
        idempotency_key: str | None = None,
        shadow_of: str | None = None,
        deadline_s: float | None = None,
        request_id: str | None = None,
        reject_overload: bool = False,
    ) -> DecisionRow:
        """Run the pipeline for a case under one spec version; the record is not yet written.

        With `reject_overload`, a case the LLM cannot take for overload raises Overloaded
        (503) before any fallback is computed."""
        started = time.monotonic()
        params = spec.params
        attempts: list[Attempt] = []
        usage = Usage()
        checks: list[Check] = []
        review: list[str] = []
        llm_verdict: VerdictBase | None = None
        fallback_reason: FallbackReason | None = None
        model: str | None = None
        prompt = None
        llm_ms = 0

        facts = k.analyse(case, params)  # once per decision, read by every step below
        case_json = case.model_dump(mode="json")
        injection = screen(case_json, field_paths(k.Case).untrusted)
        verdict: VerdictBase | None = k.precheck(case, params, facts)
        source: Source = "rules"
        if verdict is None and self.llm is None:
            verdict, source = k.fallback(case, params, facts), "fallback"
            fallback_reason = "llm_disabled"
        elif verdict is None:
            assert self.llm is not None
            prompt = self.prompts.render(
                spec=spec,
                case=k.prompt_case(case, params, facts),
                untrusted=field_paths(k.Case).untrusted,
            )
            result = await self.llm.structured(
                prompt=prompt,
                response_model=k.llm_model(case, params, facts),
                models=spec.meta.model.for_value(k.case_value(case)),
                deadline_s=deadline_s or self.settings.deadline_s,
                many=k.allows_many_tool_calls,
            )
            attempts, usage, llm_ms = result.attempts, result.usage, result.latency_ms
            if result.failure == "overloaded" and reject_overload:
                raise Overloaded(
                    "too many decisions need the LLM right now; retry shortly",
                    headers={"Retry-After": "1"},
                )
            if result.verdict is None:
                verdict, source = k.fallback(case, params, facts), "fallback"
                fallback_reason = result.failure
            else:
                llm_verdict = k.from_llm(case, params, result.verdict, facts)
                # a prompt-injection signal: the model may not take a looser reading than the
                # rules' own (review is forced below either way)
                guarded = k.guard(case, llm_verdict, params, facts, strict=bool(injection))
                checks = [*guarded.checks, cited_clauses_check(guarded.verdict, spec)]
                if any(c.status == "failed" for c in checks):
                    verdict, source = k.fallback(case, params, facts), "fallback"
                    fallback_reason = "guardrail_violation"
                else:
                    verdict, source, model = guarded.verdict, "llm", result.model
                    review = list(guarded.review_reasons)
                    if verdict.confidence < params.review_confidence_below:
                        review.append(
                            f"confidence {verdict.confidence:.2f} is below "
                            f"{params.review_confidence_below}"
                        )
        assert verdict is not None
        if source == "fallback" and verdict.confidence > FALLBACK_CONFIDENCE:
            verdict = verdict.model_copy(update={"confidence": FALLBACK_CONFIDENCE})
        review = list(dict.fromkeys([*review, *k.review_reasons(case, verdict, params, facts)]))
        if injection:
            review.append("possible prompt injection in customer text: " + "; ".join(injection))
        order_id, customer_id = k.subjects(case)
        return DecisionRow(
            id=new_decision_id(),
            kind=k.name,
            created_at=utcnow(),
            caller=caller,
            idempotency_key=idempotency_key,
            order_id=order_id,
            customer_id=customer_id,
            outcome=k.outcome(verdict),
            source=source,
            needs_review=bool(review),
            fallback_reason=fallback_reason,
            case=case_json,
            verdict=verdict.model_dump(mode="json"),
            llm_verdict=llm_verdict.model_dump(mode="json") if llm_verdict else None,
            checks=[c.model_dump() for c in checks],
            review_reasons=review,
            cited_clauses=list(verdict.cited_clauses),
            rationale=verdict.rationale,
            confidence=verdict.confidence,
            spec_name=spec.name,
            spec_version=spec.version,
            spec_sha256=spec.sha256,
            prompt_sha256=prompt.sha256 if prompt else None,
            prompt_template_sha256=prompt.template_sha256 if prompt else None,
            prompt={"system": prompt.system, "user": prompt.user} if prompt else None,
            guardrails_version=k.guardrails_version,
            model=model,
            attempts=[a.as_dict() for a in attempts],
            usage=usage.as_dict(),
            latency_ms={"total": int((time.monotonic() - started) * 1000), "llm": llm_ms},
            shadow_of=shadow_of,
            request_id=request_id,
            prev_hash="",
            hash="",
        )
