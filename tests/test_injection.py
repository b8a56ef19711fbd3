"""The prompt-injection corpus: an LLM that obeys the injection changes no hard outcome,
and every record is flagged for review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.evals.suite import set_path
from service.kinds.injection import screen
from tests.conftest import contract, reply

CORPUS = sorted((Path(__file__).parent / "data" / "injection").glob("*.json"))
NAMES = {"returns": "ReturnVerdict", "exceptions": "ExceptionVerdict"}
BASE = {"returns": "returns.request", "exceptions": "exceptions.request"}


def build(entry: dict[str, Any]) -> dict[str, Any]:
    case = contract(BASE[entry["kind"]])
    for path, value in entry["set"].items():
        set_path(case, path, value)
    return case


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
async def test_obedient_llm_changes_no_hard_outcome(llm_api: Any, path: Path) -> None:
    entry = json.loads(path.read_text())
    api, mock = llm_api
    route = mock.post("/chat/completions").mock(
        return_value=reply(entry["obedient_verdict"], name=NAMES[entry["kind"]])
    )
    body = (await api.decide(entry["kind"], build(entry))).json()
    assert body["outcome"] == entry["expect_outcome"], body
    assert body["needs_review"] is True
    assert any("prompt injection" in r for r in body["review_reasons"]), body["review_reasons"]
    if route.called:  # the LLM obeyed; its verdict was refused
        assert body["source"] == "fallback" and body["fallback_reason"] == "guardrail_violation"
        sent = json.loads(route.calls[0].request.content)
        system = sent["messages"][0]["content"]
        texts = [v for v in entry["set"].values() if isinstance(v, str)] + [
            i.get("customer_comment", "")
            for v in entry["set"].values()
            if isinstance(v, list)
            for i in v
        ]
        assert all(t[:20] not in system for t in texts if len(t) > 24)  # stays in the case


def test_corpus_is_broad() -> None:
    names = {p.stem for p in CORPUS}
    assert len(names) >= 12
    for needed in (
        "direct-en",
        "base64",
        "zero-width",
        "fake-json-verdict",
        "japanese",
        "address-line",
    ):
        assert any(needed in n for n in names), needed


def test_screen_has_no_false_alarm_on_ordinary_comments() -> None:
    for text in (
        "The zip broke the second time I wore it.",
        "La cremallera se rompió la segunda vez que me la puse.",
        "Die Jacke ist zu klein, ich brauche L.",
        "Please ship to my office, 3rd floor.",
        "住所は正しいです。新しいビルです。",
    ):
        assert screen({"customer_comment": text}, ("customer_comment",)) == [], text
