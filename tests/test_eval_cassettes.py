"""Recorded evals end to end: `--mode live --record` against a loopback OpenAI-compatible
server for all three suites, then `--mode recorded` offline, per-case model verdicts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.evals.runner import MODEL_VERDICTS, RunConfig, run_suites
from service.evals.suite import load_suites
from service.kinds.registry import KINDS
from service.settings import PROJECT_ROOT, get_settings
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI, status, verdict

KINDS_ALL = list(KINDS)


@pytest.fixture
def evals(tmp_path: Path) -> Path:
    """The shipped suites, without their committed cassettes."""
    root = tmp_path / "evals"
    shutil.copytree(PROJECT_ROOT / "evals", root, ignore=shutil.ignore_patterns("cassettes"))
    return root


def settings(tmp: Path, **kw: Any) -> Any:
    # a generous deadline: on a loaded machine a 2 s one turned a recording into a timeout
    kw.setdefault("deadline_s", 30.0)
    return make_settings(f"sqlite:///{tmp / 'unused.db'}", **kw)


def test_record_then_replay_all_three_suites(
    evals: Path, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    suites = load_suites(evals, KINDS_ALL)
    live = run_suites(
        settings=settings(tmp_path, llm=True, llm_base_url=fake_llm.base_url),
        config=RunConfig(mode="live", record=True),
        suites=suites,
    )
    assert live.summary["errors"] == 0
    assert live.cassettes_recorded == len(fake_llm.chat_requests) > 0
    for kind in KINDS_ALL:
        tapes = list((evals / kind / "cassettes").glob("*.json"))
        asked = [c for c in live.cases if c.kind == kind and c.model_verdict != "not_asked"]
        assert tapes and asked, kind

    # offline: no endpoint configured, the network guard fails any escape
    replay = run_suites(
        settings=settings(tmp_path), config=RunConfig(mode="recorded"), suites=suites
    )
    assert replay.summary["needs_rerecording"] == 0 and replay.summary["errors"] == 0
    assert [(c.id, c.got) for c in replay.cases] == [(c.id, c.got) for c in live.cases]
    assert all(c.model_verdict in MODEL_VERDICTS for c in replay.cases)
    fates = replay.summary["model_verdicts"]
    assert fates["accepted"] > 0 and sum(fates.values()) == replay.summary["judged"]
    assert replay.summary["llm_call_rate"] > 0 and replay.summary["hard_violations"] == 0


@pytest.mark.parametrize("mode", ["json_schema", "json"])
def test_content_style_recordings_replay(
    evals: Path, tmp_path: Path, fake_llm: FakeOpenAI, mode: str
) -> None:
    suites = load_suites(evals, ["returns"])
    live = run_suites(
        settings=settings(tmp_path, llm=True, llm_base_url=fake_llm.base_url, llm_mode=mode),
        config=RunConfig(mode="live", record=True),
        suites=suites,
    )
    assert all("response_format" in r for r in fake_llm.chat_requests)
    replay = run_suites(
        settings=settings(tmp_path, llm_mode=mode),
        config=RunConfig(mode="recorded"),
        suites=suites,
    )
    assert replay.summary["needs_rerecording"] == 0
    assert [c.got for c in replay.cases] == [c.got for c in live.cases]


def test_recording_keeps_only_answers_and_replays_the_reask(
    evals: Path, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    suites = load_suites(evals, ["returns"])
    suites[0].cases = [c for c in suites[0].cases if c.id == "nad-real-fault"]  # asks the model
    assert len(suites[0].cases) == 1
    fake_llm.script(status(503, retry_after="0"), verdict({"outcome": "maybe"}))
    live = run_suites(
        settings=settings(tmp_path, llm=True, llm_base_url=fake_llm.base_url),
        config=RunConfig(mode="live", record=True, concurrency=1),
        suites=suites,
    )
    case = live.cases[0]
    assert case.model_verdict == "accepted"
    # 503 (not recorded), an invalid answer, and the re-ask's answer: two recordings
    assert live.cassettes_recorded == 2 and len(fake_llm.chat_requests) == 3
    replay = run_suites(
        settings=settings(tmp_path), config=RunConfig(mode="recorded"), suites=suites
    )
    assert replay.cases[0].got == case.got and replay.summary["needs_rerecording"] == 0


def test_committed_cassettes_replay_offline(tmp_path: Path) -> None:
    """The cassettes in evals/<kind>/cassettes (from the scripted server, see README) replay
    with no endpoint; a recording made stale by a later prompt or spec edit is reported as
    needs re-recording, never as a failure or an error."""
    for kind in KINDS_ALL:
        assert list((PROJECT_ROOT / "evals" / kind / "cassettes").glob("*.json")), kind
    result = run_suites(
        settings=settings(tmp_path),
        config=RunConfig(mode="recorded"),
        suites=load_suites(PROJECT_ROOT / "evals", KINDS_ALL),
    )
    assert result.summary["errors"] == 0 and result.summary["hard_violations"] == 0
    fresh = [c for c in result.cases if c.status != "needs_rerecording"]
    replayed = [c for c in fresh if c.model_verdict in ("accepted", "repaired", "replaced")]
    if len(fresh) == len(result.cases):  # nothing stale: every recording was used
        assert len(replayed) == sum(1 for _ in (PROJECT_ROOT / "evals").glob("*/cassettes/*"))
    # (the thresholds of evals/thresholds.yaml are for real models; the scripted server only
    # echoes the rules, so its agreement is the rules' own and is not gated here)


def test_live_mode_names_the_model_it_cannot_reach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARBITER_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(
            cli, ["eval", "--mode", "live", "--record", "--kind", "returns", "--out", str(tmp_path)]
        )
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 2, r.output
    assert "cannot reach" in r.output and "gpt-4o-mini" in r.output and "unreachable" in r.output
