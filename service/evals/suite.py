"""Eval suites: YAML files of cases, each with a case and the expected result."""

from __future__ import annotations

import copy
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidInput


class Expect(BaseModel):
    """What a case must produce; paths are dotted into the decision envelope."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Any] = Field(default_factory=dict)
    approx: dict[str, tuple[str, str]] = Field(default_factory=dict)
    includes: dict[str, list[Any]] = Field(default_factory=dict)
    one_of: dict[str, list[Any]] = Field(default_factory=dict)
    forbidden: dict[str, list[Any]] = Field(default_factory=dict)


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    description: str
    tags: list[str] = Field(default_factory=list)
    base: str | None = None
    case: dict[str, Any] | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    expect: Expect
    expect_rules: Expect | None = None
    """What rules mode must give instead, where a clause needs a judgement rules can't make."""
    proposed: bool = False
    """Generated, its expectation not yet accepted by a person: it runs in no gate."""

    def expected(self, mode: str) -> Expect:
        """The expectation for a run in this mode."""
        return (
            self.expect_rules if mode == "rules" and self.expect_rules is not None else self.expect
        )


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str
    kind: str
    description: str = ""
    base: str | None = None
    definitions: dict[str, Any] | None = None  # YAML anchors shared by cases
    cases: list[EvalCase]
    path: Path | None = None
    generated_from: dict[str, Any] | None = None
    """For a generated suite: the policy version and parameters its cases come from."""


def get_path(data: Any, path: str) -> Any:
    """data["a"]["b"][0] for "a.b.0"; KeyError when absent."""
    for part in path.split("."):
        if isinstance(data, list):
            data = data[int(part)]
        else:
            data = data[part]
    return data


def set_path(data: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        data = data[int(part)] if isinstance(data, list) else data.setdefault(part, {})
    last = parts[-1]
    if isinstance(data, list):
        idx = int(last)
        if idx == len(data):
            data.append(value)
        else:
            data[idx] = value
    else:
        data[last] = value


def build_case(suite: Suite, case: EvalCase) -> dict[str, Any]:
    """The request body of an eval case: base file (or inline case), then `set` paths."""
    assert suite.path is not None
    if case.case is not None:
        data = copy.deepcopy(case.case)
    else:
        ref = case.base or suite.base
        if ref is None:
            raise InvalidInput(f"{suite.path.name} case {case.id}: no case, and no base file")
        data = json.loads((suite.path.parent / ref).read_text())
    for path, value in case.set.items():
        set_path(data, path, value)
    return data


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file; errors name the file and the case."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        suite = Suite.model_validate({**raw, "path": path})
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a valid eval suite: {exc}") from exc
    ids = [c.id for c in suite.cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InvalidInput(f"{path}: case ids used twice: {', '.join(dupes)}")
    return suite


def load_suites(root: Path, kinds: list[str], *, proposed: bool = False) -> list[Suite]:
    """The suites of `kinds`; cases still `proposed` are left out unless asked for."""
    suites = [load_suite(p) for k in kinds for p in sorted((root / k).glob("*.yaml"))]
    if not proposed:
        suites = [
            s.model_copy(update={"cases": [c for c in s.cases if not c.proposed]}) for s in suites
        ]
    return [s for s in suites if s.cases]


def _num(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def judge(expect: Expect, envelope: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(mismatches, hard violations) of a decision against what was expected."""
    misses: list[str] = []
    hard: list[str] = []

    def got(path: str) -> Any:
        try:
            return get_path(envelope, path)
        except (KeyError, IndexError, ValueError, TypeError):
            return "<absent>"

    for path, want in expect.fields.items():
        value = got(path)
        if value != want and not (
            _num(value) is not None and _num(value) == _num(want) and not isinstance(want, bool)
        ):
            misses.append(f"{path}: expected {want!r}, got {value!r}")
    for path, (want, tol) in expect.approx.items():
        value, target, tolerance = _num(got(path)), _num(want), _num(tol)
        if value is None or target is None or tolerance is None or abs(value - target) > tolerance:
            misses.append(f"{path}: expected {want} ± {tol}, got {got(path)!r}")
    for path, members in expect.includes.items():
        value = got(path)
        missing = [m for m in members if not isinstance(value, list) or m not in value]
        if missing:
            misses.append(f"{path}: expected to include {missing}, got {value!r}")
    for path, options in expect.one_of.items():
        if got(path) not in options:
            misses.append(f"{path}: expected one of {options}, got {got(path)!r}")
    for path, bad in expect.forbidden.items():
        value = got(path)
        if value in bad:
            hard.append(f"{path}: forbidden result {value!r}")
    return misses, hard
