"""A quick smoke run of the benchmarks (no timing assertions: timing is bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import fake_llm, planner
from service.kinds.registry import KINDS
from service.llm.parse import request_options
from service.llm.prompts import PromptLibrary
from service.settings import PROJECT_ROOT
from service.specs.loader import load_spec
from tests.conftest import contract


def test_planner_bench_runs() -> None:
    result = planner.run(repeats=2)
    assert result["metric"] == "M5" and result["plans"] > 0 and result["median_ms"] > 0


def test_full_bench_quick_run_prints_every_metric() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-save"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for metric in ("| M1 |", "| M2 |", "| M3 |", "| M4 |", "| M5 |", "M6", "M7"):
        assert metric in out.stdout
    assert "records written" in out.stdout


@pytest.mark.parametrize("kind", ["returns", "exceptions", "routing"])
def test_the_bench_fake_answers_every_kinds_tool_call(kind: str) -> None:
    k = KINDS[kind]
    spec = load_spec(PROJECT_ROOT / "specs" / f"{kind}.md")
    case = k.Case.model_validate(contract(f"{kind}.request"))
    model = k.llm_model(case, spec.params)
    prompt = PromptLibrary(PROJECT_ROOT / "prompts").render(
        spec=spec, case=k.prompt_case(case, spec.params)
    )
    body = {
        "model": "gpt-4o-mini",
        "messages": prompt.messages(),
        **request_options("tools", model),
    }
    reply = json.loads(fake_llm.answer(json.dumps(body).encode()))
    (call,) = reply["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == model.__name__
    model.model_validate_json(call["function"]["arguments"])  # schema-valid for its kind
