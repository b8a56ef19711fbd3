"""The eval runner in every mode, cassettes, thresholds, compare, replay, add-from-log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
import yaml
from typer.testing import CliRunner

from service.cli import app as cli
from service.evals.runner import RunConfig, gate, run_suites
from service.evals.suite import load_suite
from service.services import build_services
from service.settings import PROJECT_ROOT, get_settings
from tests.conftest import LLM_BASE, contract, make_settings, reply
from tests.test_returns_api import GOOD

SUITE = {
    "suite": "returns-mini",
    "kind": "returns",
    "base": "base.json",
    "cases": [
        {
            "id": "llm-case",
            "description": "Defect with a comment: the LLM is asked.",
            "tags": ["R2"],
            "expect": {
                "fields": {"outcome": "approve"},
                "approx": {"verdict.total_refund": ["129.00", "0.01"]},
                "includes": {"cited_clauses": ["R2"]},
                "forbidden": {"outcome": ["deny"]},
            },
        },
        {
            "id": "rules-case",
            "description": "Final sale, change of mind: rules alone.",
            "tags": ["R3"],
            "set": {
                "request.items": [
                    {
                        "sku": "SWIM-01-S",
                        "quantity": 2,
                        "reason": "changed_mind",
                        "condition": "new",
                    }
                ]
            },
            "expect": {"fields": {"outcome": "deny"}, "forbidden": {"outcome": ["approve"]}},
        },
    ],
}


@pytest.fixture
def evals_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "evals"
    (root / "returns").mkdir(parents=True)
    (root / "returns" / "base.json").write_text(json.dumps(contract("returns.request")))
    (root / "returns" / "mini.yaml").write_text(yaml.safe_dump(SUITE))
    shutil.copy(PROJECT_ROOT / "evals" / "thresholds.yaml", root / "thresholds.yaml")
    monkeypatch.setenv("ARBITER_EVALS_DIR", str(root))
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'prod.db'}")
    monkeypatch.delenv("ARBITER_LLM_BASE_URL", raising=False)
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def suites(root: Path) -> list[Any]:
    return [load_suite(root / "returns" / "mini.yaml")]


def settings(tmp: Path, llm: bool = False, **kw: Any) -> Any:
    return make_settings(f"sqlite:///{tmp / 'unused.db'}", llm=llm, **kw)


def test_rules_mode(evals_dir: Path, tmp_path: Path) -> None:
    result = run_suites(
        settings=settings(tmp_path), config=RunConfig(mode="rules"), suites=suites(evals_dir)
    )
    by_id = {c.id: c for c in result.cases}
    assert by_id["rules-case"].status == "passed"
    assert by_id["llm-case"].status == "passed"  # the fallback agrees on this one
    s = result.summary
    assert s["agreement"] == 1.0 and s["hard_violations"] == 0 and s["llm_call_rate"] == 0
    assert s["decided_by_rules_alone"] == 0.5 and s["by_clause"]["R3"]["passed"] == 1
    assert not gate(result, {"rules": {"default": {"min_agreement": 0.9}}})


def test_live_record_then_recorded_offline(evals_dir: Path, tmp_path: Path) -> None:
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        mock.get("/models").respond(200, json={"data": [{"id": "gpt-4o-mini"}, {"id": "gpt-4o"}]})
        route = mock.post("/chat/completions").mock(return_value=reply(GOOD))
        live = run_suites(
            settings=settings(tmp_path, llm=True),
            config=RunConfig(mode="live", record=True),
            suites=suites(evals_dir),
        )
    assert route.call_count == 1 and live.cassettes_recorded == 1
    assert live.summary["llm_call_rate"] == 0.5 and live.summary["agreement"] == 1.0
    tapes = list((evals_dir / "returns" / "cassettes").glob("*.json"))
    assert len(tapes) == 1 and tapes[0].name.endswith("-gpt-4o-mini.json")
    text = tapes[0].read_text()
    assert "sk-test-not-a-real-key" not in text and "authorization" not in text.lower()

    # replay with no endpoint configured at all; the network guard fails any escape
    replayed = run_suites(
        settings=settings(tmp_path), config=RunConfig(mode="recorded"), suites=suites(evals_dir)
    )
    case = {c.id: c for c in replayed.cases}["llm-case"]
    assert case.status == "passed" and case.got["source"] == "llm"
    assert replayed.summary["tokens_per_decision"] > 0

    # a prompt change makes the recording stale: reported, not silently failed
    spec = (
        (PROJECT_ROOT / "specs" / "returns.md")
        .read_text()
        .replace("## R14 Customer text", "## R14 Customer text (changed)")
    )
    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", specs)
    (specs / "returns.md").write_text(spec)
    stale = run_suites(
        settings=settings(tmp_path, specs_dir=specs),
        config=RunConfig(mode="recorded"),
        suites=suites(evals_dir),
    )
    case = {c.id: c for c in stale.cases}["llm-case"]
    assert case.status == "needs_rerecording" and stale.summary["needs_rerecording"] == 1


def test_hard_violation_and_threshold_gate_exit_code(evals_dir: Path) -> None:
    suite = yaml.safe_load((evals_dir / "returns" / "mini.yaml").read_text())
    suite["cases"][1]["expect"]["forbidden"] = {"outcome": ["deny"]}  # deny is now forbidden
    (evals_dir / "returns" / "mini.yaml").write_text(yaml.safe_dump(suite))
    r = CliRunner().invoke(cli, ["eval", "--kind", "returns", "--out", str(evals_dir / "out")])
    assert r.exit_code == 1, r.output
    assert "hard-policy violation" in r.output
    report = json.loads((evals_dir / "out" / "report.json").read_text())
    assert report["summary"]["hard_violations"] == 1
    html = (evals_dir / "out" / "report.html").read_text()
    assert "<svg" in html and "rules-case" in html


def test_cli_passes_and_rejects_bad_options(evals_dir: Path) -> None:
    ok = CliRunner().invoke(cli, ["eval", "--kind", "returns", "--out", str(evals_dir / "o")])
    assert ok.exit_code == 0, ok.output
    assert "thresholds met" in ok.output and "agreement" in ok.output
    assert CliRunner().invoke(cli, ["eval", "--mode", "psychic"]).exit_code == 2
    assert CliRunner().invoke(cli, ["eval", "--record"]).exit_code == 2
    assert CliRunner().invoke(cli, ["eval", "--kind", "nope"]).exit_code == 2


def test_compare_two_spec_versions(evals_dir: Path, tmp_path: Path) -> None:
    strict = tmp_path / "returns.strict.md"
    strict.write_text(
        (PROJECT_ROOT / "specs" / "returns.md")
        .read_text()
        .replace("defect_window_days: 90", "defect_window_days: 30")
        .replace("version: 1", "version: strict")
    )
    suite = yaml.safe_load((evals_dir / "returns" / "mini.yaml").read_text())
    suite["cases"][0]["set"] = {"request.requested_at": "2026-11-20T10:00:00Z"}  # day 45
    (evals_dir / "returns" / "mini.yaml").write_text(yaml.safe_dump(suite))
    live = PROJECT_ROOT / "specs" / "returns.md"
    r = CliRunner().invoke(cli, ["eval", "--kind", "returns", "--compare", str(live), str(strict)])
    assert r.exit_code == 0, r.output
    assert "llm-case" in r.output and "approve" in r.output and "deny" in r.output
    assert "agreement" in r.output and "better" in r.output


def test_replay_and_add_from_log(evals_dir: Path, tmp_path: Path) -> None:
    engine = build_services(get_settings()).require_engine()
    import asyncio

    async def seed() -> list[str]:
        ids = []
        for day in (10, 20, 35):
            data = contract("returns.request")
            data["order"]["id"] = f"ORD-D{day}"
            data["request"]["items"][0].update(
                reason="changed_mind", condition="new", customer_comment=None
            )
            data["request"]["requested_at"] = (
                f"2026-{10 + (6 + day) // 31:02d}-{(6 + day - 1) % 31 + 1:02d}T10:00:00Z"
            )
            case = engine.parse_case("returns", data)
            ids.append((await engine.decide(kind="returns", case=case, caller="t")).decision_id)
        return ids

    ids = asyncio.run(seed())
    engine.log.db.close()
    candidate = tmp_path / "returns.next.md"
    candidate.write_text(
        (PROJECT_ROOT / "specs" / "returns.md")
        .read_text()
        .replace("return_window_days: 30", "return_window_days: 15")
    )
    r = CliRunner().invoke(
        cli,
        [
            "replay",
            "--kind",
            "returns",
            "--since",
            "2020-01-01",
            "--spec",
            str(candidate),
            "--out",
            str(tmp_path / "rp"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "replayed 3 returns decision(s)" in r.output and "1 would change" in r.output
    assert ids[1] in r.output
    assert ids[1] in (tmp_path / "rp" / "replay.html").read_text()
    bad = CliRunner().invoke(
        cli, ["replay", "--kind", "returns", "--since", "yesterday-ish", "--spec", str(candidate)]
    )
    assert bad.exit_code == 2

    added = CliRunner().invoke(cli, ["eval", "add-from-log", ids[0]])
    assert added.exit_code == 0, added.output
    data = yaml.safe_load((evals_dir / "returns" / "from-log.yaml").read_text())
    assert data["cases"][0]["expect"] == {"fields": {"outcome": "approve"}}
    again = CliRunner().invoke(cli, ["eval", "add-from-log", ids[0]])
    assert again.exit_code == 2 and "already has" in again.output
    result = run_suites(
        settings=get_settings(),
        config=RunConfig(mode="rules"),
        suites=[load_suite(evals_dir / "returns" / "from-log.yaml")],
    )
    assert result.summary["agreement"] == 1.0


def test_shipped_suites_are_large_and_valid() -> None:
    for kind in ("returns", "exceptions", "routing"):
        cases = sum(
            len(load_suite(p).cases) for p in (PROJECT_ROOT / "evals" / kind).glob("*.yaml")
        )
        assert cases >= 40, (kind, cases)


def test_live_mode_needs_an_endpoint(evals_dir: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["eval", "--mode", "live"])
    assert r.exit_code == 2 and "live mode needs" in r.output


def test_add_from_log_masks_personal_data_unless_asked(evals_dir: Path) -> None:
    engine = build_services(get_settings()).require_engine()
    import asyncio

    data = contract("returns.request")
    data["customer"].update(email="ada.lovelace@example.com", phone="+44 20 7946 0958")
    data["request"]["items"][0]["customer_comment"] = "Ada here, call me on 020 7946 0958."

    async def seed() -> str:
        case = engine.parse_case("returns", data)
        return (await engine.decide(kind="returns", case=case, caller="t")).decision_id

    decision = asyncio.run(seed())
    engine.log.db.close()
    added = CliRunner().invoke(cli, ["eval", "add-from-log", decision])
    assert added.exit_code == 0, added.output
    assert "masked" in added.output and "--include-pii" in added.output
    suite = evals_dir / "returns" / "from-log.yaml"
    text = suite.read_text()
    for secret in ("ada.lovelace@example.com", "7946", "Ada here"):
        assert secret not in text
    case = yaml.safe_load(text)["cases"][0]
    assert case["case"]["customer"]["email"] == "[masked]"
    assert case["case"]["request"]["items"][0]["customer_comment"] == "[masked]"
    result = run_suites(
        settings=get_settings(), config=RunConfig(mode="rules"), suites=[load_suite(suite)]
    )
    assert result.summary["errors"] == 0  # a masked case is still a valid case

    suite.unlink()
    full = CliRunner().invoke(cli, ["eval", "add-from-log", decision, "--include-pii"])
    assert full.exit_code == 0, full.output
    assert "ada.lovelace@example.com" in suite.read_text()


def test_two_kinds_recorded_concurrently_land_in_their_own_folders(
    evals_dir: Path, tmp_path: Path
) -> None:
    """Cases of different kinds run at once; each recording goes beside its own suite."""
    from tests.test_exceptions_api import JUDGED, answer

    ex_case, ex_fields = JUDGED["inventory_shortfall"]
    (evals_dir / "exceptions").mkdir()
    (evals_dir / "exceptions" / "base.json").write_text(json.dumps(ex_case))
    ex_suite = {
        "suite": "exceptions-mini",
        "kind": "exceptions",
        "base": "base.json",
        "cases": [
            {
                "id": f"ex-{i}",
                "description": "Judged by the LLM.",
                "set": {"order.id": f"ORD-EX-{i}"},
                "expect": {"fields": {}},
            }
            for i in range(6)
        ],
    }
    (evals_dir / "exceptions" / "mini.yaml").write_text(yaml.safe_dump(ex_suite))
    ret_suite = {**SUITE, "cases": []}
    for i in range(6):  # distinct comments: distinct prompts, so distinct cassettes
        ret_suite["cases"].append(
            {
                **SUITE["cases"][0],
                "id": f"ret-{i}",
                "set": {"request.items.0.customer_comment": f"The zip broke on day {i + 2}."},
            }
        )
    (evals_dir / "returns" / "mini.yaml").write_text(yaml.safe_dump(ret_suite))

    def by_kind(request: Any) -> Any:
        tools = json.loads(request.content)["tools"]
        if tools[0]["function"]["name"] == "ExceptionVerdict":
            return reply(answer("inventory_shortfall", ex_fields), name="ExceptionVerdict")
        return reply(GOOD)

    loaded = [
        load_suite(evals_dir / "returns" / "mini.yaml"),
        load_suite(evals_dir / "exceptions" / "mini.yaml"),
    ]
    # interleave the kinds so cases of both are in flight together
    mixed = [
        s.model_copy(update={"cases": [c]})
        for pair in zip(*(s.cases for s in loaded), strict=True)
        for s, c in zip(loaded, pair, strict=True)
    ]
    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        mock.get("/models").respond(200, json={"data": [{"id": "gpt-4o-mini"}, {"id": "gpt-4o"}]})
        mock.post("/chat/completions").mock(side_effect=by_kind)
        live = run_suites(
            settings=settings(tmp_path, llm=True),
            config=RunConfig(mode="live", record=True, concurrency=4),
            suites=mixed,
        )
    assert live.cassettes_recorded == 12, [c.misses for c in live.cases]
    for kind, prefix in (("returns", "returns-mini/ret-"), ("exceptions", "exceptions-mini/ex-")):
        tapes = [json.loads(p.read_text()) for p in (evals_dir / kind / "cassettes").glob("*")]
        assert len(tapes) == 6 and all(t["case"].startswith(prefix) for t in tapes), kind
    # and each replays offline from its own folder
    replayed = run_suites(
        settings=settings(tmp_path), config=RunConfig(mode="recorded"), suites=mixed
    )
    assert {c.status for c in replayed.cases} == {"passed"}, [c.misses for c in replayed.cases]
