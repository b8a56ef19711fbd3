"""Policy changes through the API, the editor and the CLI: draft, lint, eval, shadow or
canary, promote, roll back. Each step that changes something is one policy event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.settings import Settings
from service.specs.deployments import ACTIVE
from service.specs.lint import lint_text
from service.specs.loader import SPEC_NAME_MAX, Analysis, Finding, Spec
from service.specs.registry import SpecRegistry
from service.specs.versions import spec_by_ref

NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
CANDIDATE_ROLE = re.compile(r"^(shadow|canary:(\d{1,2}|100))$")


def finding_json(f: Finding) -> dict[str, Any]:
    return {"line": f.line, "field": f.key, "rule": f.rule, "reason": f.message}


def lint_report(analysis: Analysis) -> dict[str, Any]:
    """A lint result as JSON: ok, the version it would be, errors and warnings with lines."""
    s = analysis.spec
    return {
        "ok": analysis.ok,
        "sha256": s.sha256 if s else None,
        "version": s.version if s else None,
        "clauses": [c.id for c in s.clauses.values()] if s else [],
        "errors": [finding_json(f) for f in analysis.errors],
        "warnings": [finding_json(f) for f in analysis.warnings],
    }


def check_name(kind: str, name: str | None) -> str:
    """The policy name a draft is for: the kind itself, or `<kind>.<label>`."""
    name = name or kind
    if (
        len(name) > SPEC_NAME_MAX
        or not NAME.match(name)
        or not (name == kind or name.startswith(f"{kind}."))
    ):
        raise InvalidInput(
            f"name: {name!r} is not a policy name of {kind} ({kind} or {kind}.<label>, "
            f"lower case, at most {SPEC_NAME_MAX} characters)",
            details=[{"field": "name", "reason": "invalid"}],
        )
    return name


def lint_draft(
    registry: SpecRegistry, settings: Settings, *, kind: str, text: str, name: str | None
) -> Analysis:
    """Lint a text as a version of `kind` called `name` (nothing is stored)."""
    name = check_name(kind, name)
    analysis = lint_text(
        text,
        path=registry.directory / f"{name}.md",
        prompts_dir=registry.prompts_dir,
        token_budget=settings.prompt_token_budget,
        settings=settings,
    )
    if analysis.spec is not None and analysis.spec.kind != kind:
        analysis.errors.append(
            Finding(f"this is a {analysis.spec.kind} policy, not {kind}", key="kind", rule="kind")
        )
        analysis.spec = None
    return analysis


@dataclass
class Draft:
    spec: Spec
    analysis: Analysis
    created: bool


def save_draft(
    registry: SpecRegistry,
    settings: Settings,
    *,
    kind: str,
    text: str,
    name: str | None,
    actor: str,
) -> Draft:
    """Lint and store a version; a text with errors is refused (422) with every finding."""
    analysis = lint_draft(registry, settings, kind=kind, text=text, name=name)
    spec = analysis.spec
    if spec is None:
        first = analysis.errors[0] if analysis.errors else Finding("invalid")
        raise InvalidInput(
            f"the draft has {len(analysis.errors)} problem(s); first: {first}",
            details=[finding_json(f) for f in analysis.errors],
        )
    created = registry.specs.get(sha256=spec.sha256) is None
    registry.specs.record(
        sha256=spec.sha256,
        kind=kind,
        name=spec.name,
        version=spec.version,
        rollout=spec.meta.rollout,
        text=spec.text,
        parameters=spec.params.model_dump(mode="json"),
        effective_from=spec.meta.effective_from,
    )
    if created:
        registry.deployments.record(
            actor=actor,
            kind=kind,
            action="draft",
            sha256=spec.sha256,
            details={"name": spec.name, "version": spec.version},
        )
    return Draft(spec=spec, analysis=analysis, created=created)


def author_of(registry: SpecRegistry, kind: str, sha256: str) -> str | None:
    """Who drafted a version through the API (None for a file or an unknown version)."""
    drafts = [
        e for e in registry.deployments.events(kind=kind, sha256=sha256) if e.action == "draft"
    ]
    return drafts[-1].actor if drafts else None


def last_eval(registry: SpecRegistry, kind: str, sha256: str) -> dict[str, Any] | None:
    """The latest rules-mode eval recorded for a version."""
    for e in registry.deployments.events(kind=kind, sha256=sha256):
        if e.action == "eval" and e.details.get("mode") == "rules":
            return dict(e.details)
    return None


def publish_check(
    registry: SpecRegistry,
    settings: Settings,
    *,
    kind: str,
    spec: Spec,
    actor: str,
    accept_moved: bool = False,
) -> list[str]:
    """Why `actor` may not publish `spec` now (empty when they may). The last rules-mode
    eval must pass the thresholds; or pass them on every case the change did not move, with
    the moved cases accepted by the publisher (`accept_moved`)."""
    why = []
    if settings.policy_publish_requires_eval:
        ev = last_eval(registry, kind, spec.sha256)
        if ev is None:
            why.append("run the eval suite against this version first (rules mode)")
        elif not ev.get("passed"):
            moved = ev.get("moved", [])
            if not ev.get("passed_except_moved"):
                why.append(
                    "its last eval is below the thresholds on cases the change did not move: "
                    + "; ".join(ev.get("gate", []))
                )
            elif not accept_moved:
                why.append(
                    f"the change moves {len(moved)} eval case(s) ({', '.join(moved[:5])}"
                    f"{', …' if len(moved) > 5 else ''}): accept them to publish"
                )
    if settings.policy_second_person and author_of(registry, kind, spec.sha256) == actor:
        why.append("a second person must publish it: you drafted this version")
    return why


def _version_of(registry: SpecRegistry, kind: str, ref: str) -> Spec:
    spec = spec_by_ref(registry, kind, ref, field="sha")
    if spec.kind != kind:
        raise InvalidInput(f"{ref} is not a {kind} version")
    return spec


def start_candidate(
    registry: SpecRegistry, *, kind: str, ref: str, role: str, actor: str, source: str = "api"
) -> Spec:
    """Run a stored version beside the live one: `shadow`, or `canary:N` (N % of cases)."""
    if not CANDIDATE_ROLE.match(role):
        raise InvalidInput(
            "rollout: give shadow or canary:N (N from 0 to 100)",
            details=[{"field": "rollout", "reason": "invalid"}],
        )
    spec = _version_of(registry, kind, ref)
    if spec.sha256 in {s.sha256 for s in registry.active_specs(kind)}:
        raise Conflict(f"{spec.sha256[:12]} is live already")
    row = registry.specs.get(sha256=spec.sha256)
    registry.deployments.deploy(
        kind=kind,
        slot=row.name if row else spec.name,
        sha256=spec.sha256,
        role=role,
        actor=actor,
        source=source,
        action="shadow" if role == "shadow" else "canary",
        details={"version": spec.version},
    )
    registry.load()
    return spec


def stop_candidate(registry: SpecRegistry, *, kind: str, actor: str) -> None:
    registry.deployments.stop_candidate(kind=kind, actor=actor)
    registry.load()


def slot_for(name: str) -> str:
    """The schedule entry a version replaces: its name (`returns.next` serves as `returns`)."""
    return name.removesuffix(".next")


def promote(
    registry: SpecRegistry,
    settings: Settings,
    *,
    kind: str,
    ref: str,
    actor: str,
    source: str = "api",
    slot: str | None = None,
    checked: bool = True,
    accept_moved: bool = False,
) -> tuple[Spec, str]:
    """Make a stored version live in its slot (default: from its name); it stops being the
    candidate. With `checked`, the publish checks must pass (403/409 otherwise)."""
    spec = _version_of(registry, kind, ref)
    if checked:
        why = publish_check(
            registry, settings, kind=kind, spec=spec, actor=actor, accept_moved=accept_moved
        )
        if why:
            second = any("second person" in w for w in why)
            raise (Forbidden if second else Conflict)("not published: " + "; ".join(why))
    row = registry.specs.get(sha256=spec.sha256)
    target = check_name(kind, slot or slot_for(row.name if row else spec.name))
    current = {s.name: s.sha256 for s in registry.active_specs(kind)}
    if current.get(target) == spec.sha256:
        raise Conflict(f"{spec.sha256[:12]} is live already as {target}")
    registry.deployments.deploy(
        kind=kind,
        slot=target,
        sha256=spec.sha256,
        role=ACTIVE,
        actor=actor,
        source=source,
        action="promote",
        details={
            "version": spec.version,
            "replaces": current.get(target),
            "accepted_moved": (last_eval(registry, kind, spec.sha256) or {}).get("moved", [])
            if accept_moved
            else [],
        },
    )
    registry.load()
    return spec, target


def rollback(
    registry: SpecRegistry,
    *,
    kind: str,
    actor: str,
    to: str | None = None,
    slot: str | None = None,
    source: str = "api",
) -> Spec:
    """Serve an earlier version in a slot (default: the one it served before)."""
    target = check_name(kind, slot or kind)
    if to is None:
        sha = registry.deployments.previous_active(kind=kind, slot=target)
        if sha is None:
            raise NotFound(f"{target} has no earlier version to roll back to")
        to = sha
    spec = _version_of(registry, kind, to)
    current = {s.name: s.sha256 for s in registry.active_specs(kind)}
    if current.get(target) == spec.sha256:
        raise Conflict(f"{spec.sha256[:12]} is live already as {target}")
    registry.deployments.deploy(
        kind=kind,
        slot=target,
        sha256=spec.sha256,
        role=ACTIVE,
        actor=actor,
        source=source,
        action="rollback",
        details={"version": spec.version, "replaces": current.get(target)},
    )
    registry.load()
    return spec


SUMMARY_KEYS = (
    "cases",
    "passed",
    "agreement",
    "hard_violations",
    "errors",
    "needs_rerecording",
    "fallback_rate",
    "review_rate",
)


def eval_version(
    registry: SpecRegistry,
    settings: Settings,
    *,
    kind: str,
    ref: str,
    mode: str,
    actor: str,
) -> dict[str, Any]:
    """Run the kind's eval suite against a stored version and against the live one; the
    gate result is recorded as a policy event (promote reads it)."""
    from service.evals.compare import compare_runs
    from service.evals.runner import (
        RunConfig,
        RunResult,
        gate,
        load_thresholds,
        run_suites,
        summarise,
    )
    from service.evals.suite import load_suites

    if mode not in ("rules", "recorded"):
        raise InvalidInput(
            "mode: rules or recorded", details=[{"field": "mode", "reason": "invalid"}]
        )
    spec = _version_of(registry, kind, ref)
    suites = load_suites(settings.evals_dir, [kind])
    if not suites:
        raise NotFound(f"no eval suite for {kind} in {settings.evals_dir}")
    live = registry.active(kind)

    def run(version: Spec, label: str) -> Any:
        config = RunConfig(mode=mode, override=version, label=label, concurrency=4)
        return run_suites(settings=settings, config=config, suites=suites)

    draft = run(spec, f"v{spec.version} {spec.sha256[:12]}")
    thresholds = load_thresholds(settings.evals_dir / "thresholds.yaml")
    failures = gate(draft, thresholds)
    compared = None
    moved: list[str] = []
    rest_failures = failures
    if live.sha256 != spec.sha256:
        compared = compare_runs(run(live, f"live v{live.version} {live.sha256[:12]}"), draft)
        moved = [d["case"] for d in compared["differences"]]
        rest = [c for c in draft.cases if f"{c.suite}/{c.id}" not in moved]
        rest_failures = gate(RunResult(draft.config, rest, summarise(rest)), thresholds)
    summary = {k: draft.summary[k] for k in SUMMARY_KEYS}
    registry.deployments.record(
        actor=actor,
        kind=kind,
        action="eval",
        sha256=spec.sha256,
        details={
            "mode": mode,
            "passed": not failures,
            "gate": failures,
            "passed_except_moved": not rest_failures,
            "moved": moved,
            "summary": summary,
            "compare": compared,
        },
    )
    return {
        "kind": kind,
        "sha256": spec.sha256,
        "version": spec.version,
        "mode": mode,
        "passed": not failures,
        "gate": failures,
        "moved": moved,
        "passed_except_moved": not rest_failures,
        "gate_except_moved": rest_failures,
        "summary": summary,
        "by_clause": draft.summary["by_clause"],
        "failed_cases": [
            {
                "case": f"{c.suite}/{c.id}",
                "status": c.status,
                "expected": c.expected.get("fields", {}),
                "got": c.got.get("outcome"),
                "why": c.hard + c.misses,
            }
            for c in draft.cases
            if c.status != "passed"
        ],
        "compare": compared,
    }


def llm_view(registry: SpecRegistry, kind: str, spec: Spec) -> str:
    """The system prompt the LLM gets with this version (for the kind's example case)."""
    from service.kinds.base import field_paths
    from service.llm.prompts import PromptLibrary

    k = registry.kinds[kind]
    case = k.prompt_case(k.Case.model_validate(k.example()), spec.params)
    untrusted = field_paths(k.Case).untrusted
    return (
        PromptLibrary(registry.prompts_dir).render(spec=spec, case=case, untrusted=untrusted).system
    )


def agreement_buckets(pairs: list[tuple[Any, Any]], *, buckets: int = 20) -> list[dict[str, Any]]:
    """Shadow pairs, oldest first, in up to `buckets` equal groups: agreement per group."""
    ordered = list(reversed(pairs))  # shadow_pairs is newest first
    if not ordered:
        return []
    size = max(1, -(-len(ordered) // buckets))
    out = []
    for i in range(0, len(ordered), size):
        group = ordered[i : i + size]
        agree = sum(live.outcome == shadow.outcome for live, shadow in group)
        out.append(
            {
                "from": group[0][0].created_at,
                "to": group[-1][0].created_at,
                "pairs": len(group),
                "agreement": round(agree / len(group), 4),
            }
        )
    return out
