"""`arbiter spec lint`: every rule a spec must pass, with warnings listed apart."""

from __future__ import annotations

from pathlib import Path

from service.kinds.base import field_paths
from service.kinds.registry import KINDS, Kinds
from service.llm.prompts import PromptLibrary
from service.settings import Settings
from service.specs.loader import Analysis, Finding, Spec, analyse, read_text

DEFAULT_TOKEN_BUDGET = 6000
CHARS_PER_TOKEN = 4  # a conservative estimate for English prose and JSON


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def unconfigured_models(spec: Spec, settings: Settings) -> list[Finding]:
    """With the LLM enabled, every model name the policy uses must resolve to an endpoint."""
    if not settings.llm_enabled:
        return []  # rules only: model names are never called
    line = next(
        (i for i, t in enumerate(spec.text.splitlines(), 1) if t.startswith("model:")), None
    )
    return [
        Finding(
            f"{name!r} is not configured: add it to ARBITER_LLM_MODELS, or set "
            "ARBITER_LLM_BASE_URL / ARBITER_LLM_API_KEY to serve real model names",
            line=line,
            key="model",
            rule="model_alias",
        )
        for name in spec.meta.model.names()
        if settings.resolve_model(name) is None
    ]


def lint_file(
    path: Path,
    *,
    prompts_dir: Path,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    settings: Settings | None = None,
    kinds: Kinds = KINDS,
) -> Analysis:
    """Analyse one spec file and render its prompt for the kind's example case; with
    `settings`, also check that every model alias it uses is configured."""
    try:
        text = read_text(path)
    except Exception as exc:  # an unreadable file is an error, not a crash
        return Analysis(path=path, errors=[Finding(str(exc), rule="file")])
    return lint_text(
        text,
        path=path,
        prompts_dir=prompts_dir,
        token_budget=token_budget,
        settings=settings,
        kinds=kinds,
    )


def lint_text(
    text: str,
    *,
    path: Path,
    prompts_dir: Path,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    settings: Settings | None = None,
    kinds: Kinds = KINDS,
) -> Analysis:
    """`lint_file` for a text that has no file yet (a draft); `path` names it."""
    try:
        analysis = analyse(text, path=path, kinds=kinds)
    except Exception as exc:  # any text is an error at worst, not a crash
        return Analysis(path=path, errors=[Finding(str(exc), rule="file")])
    spec = analysis.spec
    if spec is None:
        return analysis
    if settings is not None and (missing := unconfigured_models(spec, settings)):
        analysis.errors += missing
        analysis.spec = None
        return analysis
    kind = kinds[spec.kind]
    try:
        case = kind.Case.model_validate(kind.example())
        prompt = PromptLibrary(prompts_dir).render(
            spec=spec,
            case=kind.prompt_case(case, spec.params),
            untrusted=field_paths(kind.Case).untrusted,
        )
    except Exception as exc:
        analysis.errors.append(
            Finding(f"the prompt does not render with this spec: {exc}", rule="prompt")
        )
        analysis.spec = None
        return analysis
    tokens = estimate_tokens(prompt.system + prompt.user)
    if tokens > token_budget:
        analysis.errors.append(
            Finding(
                f"the prompt for a sample case is about {tokens} tokens, over the budget of "
                f"{token_budget}: shorten the policy text",
                rule="token_budget",
            )
        )
        analysis.spec = None
    elif tokens > token_budget * 0.8:
        analysis.warnings.append(
            Finding(
                f"the prompt for a sample case is about {tokens} tokens, close to the budget of "
                f"{token_budget}",
                rule="token_budget",
            )
        )
    return analysis


def report(analysis: Analysis) -> str:
    """A plain-language report of one file."""
    name = analysis.path.name
    if analysis.ok and analysis.spec is not None:
        s = analysis.spec
        head = (
            f"OK    {name}: {s.kind} policy version {s.version}, {len(s.clauses)} clauses, "
            f"rollout {s.meta.rollout}, sha256 {s.sha256[:12]}"
        )
    else:
        head = f"ERROR {name}: {len(analysis.errors)} problem(s) — this version will not be used"
    lines = [head]
    lines += [f"  error    {f}" for f in analysis.errors]
    lines += [f"  warning  {f}" for f in analysis.warnings]
    return "\n".join(lines)
