"""Run eval suites against a spec version and a model, in live, recorded or rules mode."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from service.engine import DecisionResponse
from service.errors import ArbiterError
from service.evals.cassettes import CassetteTransport, tape
from service.evals.suite import EvalCase, Suite, build_case, judge
from service.kinds.registry import Kinds
from service.llm.client import LLMClient, describe_probe, model_names
from service.services import build_services
from service.settings import Settings
from service.specs.loader import ModelChain, Spec, load_spec

MODES = ("rules", "recorded", "live")


@dataclass
class CaseResult:
    kind: str
    suite: str
    id: str
    description: str
    tags: list[str]
    status: str  # passed | failed | error | needs_rerecording
    misses: list[str] = field(default_factory=list)
    hard: list[str] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)
    got: dict[str, Any] = field(default_factory=dict)
    envelope: dict[str, Any] | None = None
    model_verdict: str | None = None  # accepted | repaired | replaced | not_asked
    cassettes_recorded: int = 0


MODEL_VERDICTS = ("accepted", "repaired", "replaced", "not_asked")


def model_verdict(env: dict[str, Any]) -> tuple[str, str | None]:
    """What became of the model's verdict: accepted as is, repaired by a guardrail, replaced
    by rules (with the fallback reason), or the model was not asked (rules decided alone)."""
    if env["source"] == "llm":
        repaired = any(c["status"] == "repaired" for c in env["checks"])
        return ("repaired" if repaired else "accepted"), None
    if env["source"] == "fallback" and env["fallback_reason"] != "llm_disabled":
        return "replaced", env["fallback_reason"]
    return "not_asked", None


@dataclass
class RunConfig:
    mode: str = "rules"
    spec: str | None = None  # a spec file path or a sha256 of a stored version
    model: str | None = None
    concurrency: int = 4
    record: bool = False
    label: str = ""
    override: Spec | None = None  # a version given whole (a draft), instead of `spec`


@dataclass
class RunResult:
    config: RunConfig
    cases: list[CaseResult]
    summary: dict[str, Any]
    cassettes_recorded: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(cases: list[CaseResult]) -> dict[str, Any]:
    """Agreement, violations, rates, latency, tokens and cost, per tag and per clause."""
    judged = [c for c in cases if c.status in ("passed", "failed")]
    envs = [c.envelope for c in judged if c.envelope]
    n = len(envs) or 1
    lat = [float(e["latency_ms"]["total"]) for e in envs]
    tokens = [e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"] for e in envs]
    cost = sum((Decimal(e["usage"]["cost_usd"]) for e in envs), Decimal(0))

    def breakdown(keys: Callable[[CaseResult], list[str]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c in judged:
            for key in keys(c):
                row = out.setdefault(key, {"cases": 0, "passed": 0})
                row["cases"] += 1
                row["passed"] += c.status == "passed"
        for row in out.values():
            row["agreement"] = round(row["passed"] / row["cases"], 4)
        return dict(sorted(out.items()))

    def clauses(c: CaseResult) -> list[str]:
        cited = c.expected.get("includes", {}).get("cited_clauses", [])
        tagged = [t for t in c.tags if t[:1].isupper() and t[1:].isdigit()]
        return sorted(set(cited) | set(tagged))

    return {
        "cases": len(cases),
        "judged": len(judged),
        "passed": sum(c.status == "passed" for c in judged),
        "agreement": round(sum(c.status == "passed" for c in judged) / len(judged), 4)
        if judged
        else None,
        "hard_violations": sum(len(c.hard) for c in cases),
        "errors": sum(c.status == "error" for c in cases),
        "needs_rerecording": sum(c.status == "needs_rerecording" for c in cases),
        "fallback_rate": round(sum(e["source"] == "fallback" for e in envs) / n, 4),
        "review_rate": round(sum(bool(e["needs_review"]) for e in envs) / n, 4),
        "llm_call_rate": round(sum(e["usage"]["llm_calls"] > 0 for e in envs) / n, 4),
        "decided_by_rules_alone": round(sum(e["source"] == "rules" for e in envs) / n, 4),
        "latency_ms": {"p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95)},
        "tokens_per_decision": round(statistics.fmean(tokens), 1) if tokens else 0,
        "cost_per_decision_usd": f"{cost / n:.6f}",
        "model_verdicts": {v: sum(c.model_verdict == v for c in judged) for v in MODEL_VERDICTS},
        "by_tag": breakdown(lambda c: c.tags),
        "by_clause": breakdown(clauses),
    }


def _override_model(spec: Spec, model: str | None) -> Spec:
    if model is None:
        return spec
    meta = spec.meta.model_copy(update={"model": ModelChain(primary=model)})
    return dataclasses.replace(spec, meta=meta)


class Runner:
    """Builds an engine for one configuration and runs suites through it (no log writes)."""

    def __init__(
        self,
        *,
        settings: Settings,
        config: RunConfig,
        workdir: Path,
        kinds: Kinds | None = None,
    ):
        self.settings = settings
        self.config = config
        self.transport: CassetteTransport | None = None  # holds no per-case state
        workdir.mkdir(parents=True, exist_ok=True)
        self.llm = self._llm()
        self.services = build_services(
            settings,
            url=f"sqlite:///{workdir / 'eval.db'}",
            llm=self.llm,
            use_llm=False,
            kinds=kinds,
        )
        self.engine = self.services.require_engine()
        self.registry = self.engine.registry
        self.override: Spec | None = config.override
        if config.spec and self.override is None:
            path = Path(config.spec)
            self.override = load_spec(path, kinds=self.engine.kinds) if path.exists() else None

    def _llm(self) -> LLMClient | None:
        mode, s = self.config.mode, self.settings
        if mode == "rules":
            return None
        if mode == "live" and not s.llm_enabled:
            raise ArbiterError(
                "live mode needs ARBITER_LLM_BASE_URL, ARBITER_LLM_API_KEY or ARBITER_LLM_MODELS"
            )
        return LLMClient(
            settings=s,
            http_client=httpx.AsyncClient(transport=self._transport(), timeout=s.deadline_s),
        )

    def _transport(self) -> httpx.AsyncBaseTransport:
        if self.config.mode == "live" and not self.config.record:
            return httpx.AsyncHTTPTransport()
        # cassettes live beside each suite; each case's task carries its folder (a `tape`)
        self.transport = CassetteTransport(
            record=self.config.record,
            inner=httpx.AsyncHTTPTransport() if self.config.mode == "live" else None,
        )
        return self.transport

    def spec_for(self, kind: str, case: Any) -> Spec:
        if self.override is not None and self.override.kind == kind:
            return _override_model(self.override, self.config.model)
        if self.config.spec and self.override is None:
            spec = self.registry.by_sha(kind, self.config.spec, field="spec")
        else:
            spec = self.registry.active(kind, self.engine.kind(kind).reference_date(case))
        return _override_model(spec, self.config.model)

    async def preflight(self, suites: list[Suite]) -> None:
        """Live mode: reach every model the suites' specs name first, and say which fails."""
        assert self.llm is not None
        specs = [
            self.spec_for(s.kind, self.engine.parse_case(s.kind, build_case(s, c)))
            for s in suites
            for c in s.cases[:1]
        ]
        probes = await self.llm.probe(model_names(specs), fresh=True)
        bad = [f"{n}: {describe_probe(p)}" for n, p in probes.items() if p["status"] != "ok"]
        if bad:
            raise ArbiterError("live mode cannot reach its models: " + "; ".join(bad))

    async def run_case(self, suite: Suite, ec: EvalCase, cassettes: Path) -> CaseResult:
        res = CaseResult(
            kind=suite.kind,
            suite=suite.suite,
            id=ec.id,
            description=ec.description,
            tags=ec.tags,
            status="error",
            expected=ec.expected(self.config.mode).model_dump(exclude_defaults=True),
        )
        with tape(cassettes, f"{suite.suite}/{ec.id}") as t:
            try:
                data = build_case(suite, ec)
                case = self.engine.parse_case(suite.kind, data)
                k = self.engine.kind(suite.kind)
                row = await self.engine.evaluate(
                    k, case, self.spec_for(suite.kind, case), caller="eval"
                )
                env = DecisionResponse.from_row(row).model_dump(mode="json")
                res.envelope = env
                verdict_fate, why = model_verdict(env)
                res.model_verdict = verdict_fate
                res.got = {
                    "outcome": env["outcome"],
                    "source": env["source"],
                    "fallback_reason": env["fallback_reason"],
                    "needs_review": env["needs_review"],
                    "cited_clauses": env["cited_clauses"],
                    "model_verdict": verdict_fate + (f" ({why})" if why else ""),
                }
                if t.missing:
                    res.status = "needs_rerecording"
                    res.misses = ["the prompt changed since recording (no cassette for it)"]
                else:
                    res.misses, res.hard = judge(ec.expected(self.config.mode), env)
                    res.status = "failed" if res.misses or res.hard else "passed"
            except ArbiterError as exc:
                res.misses = [f"error: {exc.message}"]
            res.cassettes_recorded = t.recorded
        return res

    async def run(
        self, suites: list[Suite], progress: Callable[[CaseResult], None] | None = None
    ) -> RunResult:
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(suite: Suite, ec: EvalCase) -> CaseResult:
            async with sem:
                cassettes = (suite.path.parent if suite.path else Path(".")) / "cassettes"
                r = await self.run_case(suite, ec, cassettes)
            if progress:
                progress(r)
            return r

        try:
            if self.config.mode == "live" and self.llm is not None:
                await self.preflight(suites)
            results = await asyncio.gather(*(one(s, c) for s in suites for c in s.cases))
        finally:
            await self.services.aclose()
        return RunResult(
            self.config,
            list(results),
            summarise(list(results)),
            sum(r.cassettes_recorded for r in results),
        )


def run_suites(
    *,
    settings: Settings,
    config: RunConfig,
    suites: list[Suite],
    kinds: Kinds | None = None,
    progress: Callable[[CaseResult], None] | None = None,
) -> RunResult:
    """Run suites in a scratch workspace; the decision log is never written."""
    if config.mode == "recorded" and not settings.llm_enabled:
        settings = settings.model_copy(update={"llm_base_url": "http://cassettes.invalid/v1"})
    settings = settings.model_copy(
        update={"llm_backoff_max_s": 0.0} if config.mode == "recorded" else {}
    )
    with tempfile.TemporaryDirectory(prefix="arbiter-eval-") as tmp:
        runner = Runner(settings=settings, config=config, workdir=Path(tmp), kinds=kinds)
        return asyncio.run(runner.run(suites, progress))


def load_thresholds(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    return data or {}


def gate(result: RunResult, thresholds: dict[str, Any]) -> list[str]:
    """Why the run is below its thresholds (empty when it passes)."""
    failures = []
    mode = thresholds.get(result.config.mode, {})
    by_kind: dict[str, list[CaseResult]] = {}
    for c in result.cases:
        by_kind.setdefault(c.kind, []).append(c)
    for kind, cases in by_kind.items():
        limits = {**mode.get("default", {}), **mode.get(kind, {})}
        s = summarise(cases)
        if s["hard_violations"] > limits.get("max_hard_violations", 0):
            failures.append(f"{kind}: {s['hard_violations']} hard-policy violation(s)")
        if s["agreement"] is not None and s["agreement"] < limits.get("min_agreement", 0):
            failures.append(
                f"{kind}: agreement {s['agreement']:.1%} is below {limits['min_agreement']:.0%}"
            )
        if s["errors"] > limits.get("max_errors", 0):
            failures.append(f"{kind}: {s['errors']} case(s) could not run")
        if "max_fallback_rate" in limits and s["fallback_rate"] > limits["max_fallback_rate"]:
            failures.append(
                f"{kind}: fallback rate {s['fallback_rate']:.1%} is above "
                f"{limits['max_fallback_rate']:.0%}"
            )
    return failures
