"""Generated boundary cases: derived from the policy's parameters and clauses, proposed by
the deterministic policy, gating nothing until accepted; a policy change moves exactly the
cases at the boundary it moved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from service.cli import app as cli
from service.evals.generate import GENERATED, generate, probe_cases, write
from service.evals.suite import load_suite, load_suites
from service.settings import PROJECT_ROOT, get_settings
from service.specs.loader import load_spec, load_spec_text

KINDS = ("returns", "exceptions", "routing")


def spec_with(kind: str, old: str, new: str):  # type: ignore[no-untyped-def]
    text = (PROJECT_ROOT / "specs" / f"{kind}.md").read_text()
    assert old in text
    return load_spec_text(text.replace(old, new, 1), path=Path(f"{kind}.md"))


@pytest.fixture
def evals_dir(tmp_path: Path) -> Path:
    root = tmp_path / "evals"
    shutil.copytree(PROJECT_ROOT / "evals", root, ignore=shutil.ignore_patterns("cassettes"))
    return root


@pytest.mark.parametrize("kind", KINDS)
def test_shipped_generated_suites_match_the_live_policy(kind: str, evals_dir: Path) -> None:
    """Each kind ships a generated suite; regenerating it from the live policy moves and
    adds nothing, so the file is what the policy proposes today."""
    path = PROJECT_ROOT / "evals" / kind / GENERATED
    suite = load_suite(path)
    live = load_spec(PROJECT_ROOT / "specs" / f"{kind}.md")
    assert suite.generated_from and suite.generated_from["sha256"] == live.sha256
    assert len(suite.cases) >= 10 and all(c.proposed for c in suite.cases)
    assert all(c.expect.fields["outcome"] for c in suite.cases)
    shapes = {c.tags[-1] for c in suite.cases}
    assert {"below", "at", "above"} <= shapes
    # proposed cases gate nothing: the suites a run loads leave them out
    assert not any(
        s.suite == f"{kind}-generated" for s in load_suites(PROJECT_ROOT / "evals", [kind])
    )
    again = generate(kind=kind, spec=live, evals_dir=evals_dir, settings=get_settings())
    assert (again.added, again.moved, again.contradicted) == ([], [], [])


def test_every_window_threshold_and_category_is_probed() -> None:
    spec = load_spec(PROJECT_ROOT / "specs" / "returns.md")
    ids = {c.id for c in probe_cases("returns", spec)}
    assert {
        "gen-return_window_days-below-29",
        "gen-return_window_days-at-30",
        "gen-return_window_days-above-31",
        "gen-max_auto_refund-below-499.99",
        "gen-max_auto_refund-at-500.00",
        "gen-max_auto_refund-above-500.01",
        "gen-final_sale_categories-in-swimwear",
        "gen-final_sale_categories-out-home",
    } <= ids
    day = {c.id: c for c in probe_cases("returns", spec)}["gen-return_window_days-above-31"]
    assert day.set["request.requested_at"] == "2026-11-06T12:00:00Z"  # delivered 10-06 + 31
    assert "R1" in day.tags  # the clause that shows {{ return_window_days }}


def test_a_window_change_moves_exactly_the_expected_cases(evals_dir: Path) -> None:
    """30 → 45 days: of the old cases only day 31 moves (deny → approve); days 44, 45, 46
    are added at the new boundary; nothing about defects, categories or money moves."""
    wider = spec_with("returns", "return_window_days: 30", "return_window_days: 45")
    result = generate(kind="returns", spec=wider, evals_dir=evals_dir, settings=get_settings())
    assert result.moved == [
        {
            "case": "gen-return_window_days-above-31",
            "from": {"outcome": "deny", "needs_review": False},
            "to": {"outcome": "approve", "needs_review": False},
        }
    ]
    assert result.added == [
        "gen-return_window_days-below-44",
        "gen-return_window_days-at-45",
        "gen-return_window_days-above-46",
    ]
    by_id = {c.id: c for c in result.suite.cases}
    assert by_id["gen-return_window_days-above-46"].expect.fields["outcome"] == "deny"
    assert by_id["gen-return_window_days-at-45"].expect.fields["outcome"] == "approve"
    assert result.suite.generated_from["sha256"] == wider.sha256  # type: ignore[index]


def test_an_accepted_case_is_kept_and_its_contradiction_reported(evals_dir: Path) -> None:
    path = evals_dir / "returns" / GENERATED
    data = yaml.safe_load(path.read_text())
    for c in data["cases"]:
        if c["id"] == "gen-return_window_days-above-31":
            del c["proposed"]  # a person accepted "deny on day 31"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    wider = spec_with("returns", "return_window_days: 30", "return_window_days: 45")
    result = generate(kind="returns", spec=wider, evals_dir=evals_dir, settings=get_settings())
    assert result.moved == []
    assert [c["case"] for c in result.contradicted] == ["gen-return_window_days-above-31"]
    write(result, evals_dir)
    kept = {c.id: c for c in load_suite(path).cases}["gen-return_window_days-above-31"]
    assert not kept.proposed and kept.expect.fields["outcome"] == "deny"
    # the accepted case now gates: it is in the suites a run loads
    [suite] = [s for s in load_suites(evals_dir, ["returns"]) if s.suite == "returns-generated"]
    assert [c.id for c in suite.cases] == ["gen-return_window_days-above-31"]


def test_cli_generate_shows_what_moved(
    evals_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wider = tmp_path / "returns.next.md"
    wider.write_text(
        (PROJECT_ROOT / "specs" / "returns.md")
        .read_text()
        .replace("return_window_days: 30", "return_window_days: 45", 1)
    )
    monkeypatch.setenv("ARBITER_EVALS_DIR", str(evals_dir))
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'gen.db'}")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli, ["eval", "generate", "returns", "--spec", str(wider)])
        assert r.exit_code == 0, r.output
        assert "3 new" in r.output and "moved      gen-return_window_days-above-31" in r.output
        r = CliRunner().invoke(cli, ["eval", "generate", "routing", "--spec", str(wider)])
        assert r.exit_code == 2 and "not routing" in r.output
    finally:
        get_settings.cache_clear()
