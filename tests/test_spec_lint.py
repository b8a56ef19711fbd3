"""`arbiter spec lint` on a catalogue of broken specs: one per rule, each located."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.settings import PROJECT_ROOT
from service.specs.lint import lint_file

GOOD = (PROJECT_ROOT / "specs" / "returns.md").read_text()
PROMPTS = PROJECT_ROOT / "prompts"


def broken(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


CATALOGUE = [
    ("no front matter", GOOD.split("---", 2)[2], "front matter block", 1),
    ("front matter not closed", "---\nkind: returns\n# Returns\n", "not closed", 1),
    (
        "invalid YAML",
        broken(GOOD, "owner: returns-ops", "owner: [returns-ops"),
        "not valid YAML",
        None,
    ),
    ("missing key", broken(GOOD, "owner: returns-ops\n", ""), "owner: is missing", None),
    ("unknown kind", broken(GOOD, "kind: returns", "kind: refunds"), "unknown kind 'refunds'", 2),
    (
        "unknown parameter",
        broken(
            GOOD, "  return_window_days: 30", "  return_window_days: 30\n  return_windw_days: 45"
        ),
        "parameters.return_windw_days: is not a parameter of the returns policy",
        None,
    ),
    (
        "wrong type",
        broken(GOOD, "return_window_days: 30", "return_window_days: thirty"),
        "parameters.return_window_days: should be a whole number",
        None,
    ),
    (
        "impossible value",
        broken(GOOD, "defect_window_days: 90", "defect_window_days: 10"),
        "parameters.defect_window_days: defect_window_days (10) is shorter than "
        "return_window_days (30)",
        None,
    ),
    (
        "negative money",
        broken(GOOD, 'max_auto_refund: "500.00"', 'max_auto_refund: "-5"'),
        "parameters.max_auto_refund",
        None,
    ),
    (
        "bad rollout",
        broken(GOOD, "rollout: active", "rollout: sometimes"),
        "rollout must be active, shadow or canary:N",
        None,
    ),
    (
        "heading without id",
        broken(GOOD, "## R5 Reason and condition must agree", "## Reason and condition must agree"),
        "has no clause id",
        None,
    ),
    (
        "duplicate clause id",
        broken(GOOD, "## R6 Customers", "## R5 Customers"),
        "clause id R5 is used twice",
        None,
    ),
    (
        "clause the guardrails cite is gone",
        broken(GOOD, "## R13 Not yet delivered", "## R15 Not yet delivered"),
        "cite clauses this spec lacks: R13",
        None,
    ),
    (
        "placeholder does not resolve",
        broken(
            GOOD, "{{ return_window_days }} after delivery", "{{ return_window }} after delivery"
        ),
        "{{ return_window }} does not resolve",
        None,
    ),
]


@pytest.mark.parametrize(
    ("label", "text", "expected", "line"), CATALOGUE, ids=[c[0] for c in CATALOGUE]
)
def test_each_rule_is_caught_and_located(
    tmp_path: Path, label: str, text: str, expected: str, line: int | None
) -> None:
    path = tmp_path / "returns.md"
    path.write_text(text)
    analysis = lint_file(path, prompts_dir=PROMPTS)
    assert not analysis.ok and analysis.spec is None
    messages = [str(f) for f in analysis.errors]
    assert any(expected in m for m in messages), messages
    if line is not None:
        assert analysis.errors[0].line == line


def test_parameter_errors_point_at_the_line(tmp_path: Path) -> None:
    text = broken(GOOD, "defect_window_days: 90", "defect_window_days: 10")
    path = tmp_path / "returns.md"
    path.write_text(text)
    finding = lint_file(path, prompts_dir=PROMPTS).errors[0]
    assert finding.line == line_of(text, "defect_window_days: 10")
    assert finding.key == "parameters.defect_window_days"


def test_token_budget(tmp_path: Path) -> None:
    path = tmp_path / "returns.md"
    path.write_text(GOOD + "\n" + ("Filler sentence for the budget. " * 900))
    analysis = lint_file(path, prompts_dir=PROMPTS, token_budget=6000)
    assert any("over the budget" in str(f) for f in analysis.errors)


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "returns.md"
    path.write_text(broken(GOOD, "effective_from: 2026-01-01\n", ""))
    analysis = lint_file(path, prompts_dir=PROMPTS)
    assert analysis.ok and any("effective_from" in str(w) for w in analysis.warnings)


def test_cli_exit_codes_and_plain_output(tmp_path: Path) -> None:
    good = tmp_path / "returns.md"
    good.write_text(GOOD)
    bad = tmp_path / "returns.next.md"
    bad.write_text(broken(GOOD, "return_window_days: 30", "return_window_days: -3"))
    ok = CliRunner().invoke(cli, ["spec", "lint", str(good)])
    assert ok.exit_code == 0 and "OK    returns.md" in ok.output
    r = CliRunner().invoke(cli, ["spec", "lint", str(good), str(bad)])
    assert r.exit_code == 1
    assert "ERROR returns.next.md" in r.output
    assert "parameters.return_window_days: input should be greater than or equal to 0" in r.output
    assert "1 with errors" in r.output


def test_shipped_specs_lint_clean() -> None:
    for path in sorted((PROJECT_ROOT / "specs").glob("*.md")):
        analysis = lint_file(path, prompts_dir=PROMPTS)
        assert analysis.ok, (path, [str(e) for e in analysis.errors])
