"""Read one spec file: front matter, parameters, clauses, rendered policy text.

Every problem is collected as a Finding with the line it is on, so `arbiter spec lint` and
the registry report the same thing in words an ops expert can act on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.errors import SpecError
from service.kinds.base import ParametersBase
from service.kinds.registry import KINDS, Kinds
from service.llm.sandbox import sandbox

CLAUSE_HEADING = re.compile(r"^##\s+([A-Z]{1,3}\d{1,3}[a-z]?)\b[ \t]*(.*)$")
H2 = re.compile(r"^##\s+(.*)$")
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")


SPEC_NAME_MAX = 64
"""Longest spec file name without '.md' (stored with every decision)."""
ModelName = Annotated[str, Field(min_length=1, max_length=128)]


class ModelChain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary: ModelName
    fallbacks: list[ModelName] = Field(default_factory=list)
    escalate_above_value: Decimal | None = None
    escalate_to: ModelName | None = None

    def names(self) -> list[str]:
        """Every model name (alias) this chain may call."""
        extra = [self.escalate_to] if self.escalate_to else []
        return list(dict.fromkeys([self.primary, *self.fallbacks, *extra]))

    def for_value(self, value: Decimal) -> list[str]:
        """The models to try, in order, for a case worth `value`."""
        chain = [self.primary, *self.fallbacks]
        if self.escalate_above_value is not None and value > self.escalate_above_value:
            stronger = self.escalate_to or (self.fallbacks[0] if self.fallbacks else None)
            if stronger:
                chain = [stronger, *[m for m in chain if m != stronger]]
        return list(dict.fromkeys(chain))


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    title: str
    owner: str
    version: str = Field(min_length=1, max_length=32)
    effective_from: date | None = None
    model: ModelChain
    rollout: str = "active"
    parameters: dict[str, Any]

    @field_validator("version", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("rollout")
    @classmethod
    def _rollout(cls, value: str) -> str:
        if value in ("active", "shadow") or re.fullmatch(r"canary:(\d{1,2}|100)", value):
            return value
        raise ValueError("rollout must be active, shadow or canary:N (N from 0 to 100)")

    @property
    def canary_percent(self) -> int | None:
        return int(self.rollout.split(":")[1]) if self.rollout.startswith("canary:") else None


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    text: str
    line: int


@dataclass(frozen=True)
class Spec:
    """One validated version of a spec file."""

    name: str
    path: Path
    text: str
    sha256: str
    meta: FrontMatter
    params: ParametersBase
    body: str
    clauses: dict[str, Clause]

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def version(self) -> str:
        return self.meta.version


@dataclass
class Finding:
    """One problem in a spec file, located."""

    message: str
    line: int | None = None
    key: str | None = None
    rule: str = "spec"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


@dataclass
class Analysis:
    """What reading a spec file found: the spec if valid, and every error and warning."""

    path: Path
    spec: Spec | None = None
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


FRIENDLY = {
    "extra_forbidden": "is not a known setting here",
    "int_parsing": "should be a whole number",
    "int_type": "should be a whole number",
    "float_parsing": "should be a number",
    "decimal_parsing": 'should be an amount such as "15.00"',
    "missing": "is missing",
    "list_type": "should be a list, such as [a, b]",
    "date_from_datetime_parsing": "should be a date such as 2026-11-01",
    "date_parsing": "should be a date such as 2026-11-01",
    "bool_parsing": "should be true or false",
}


def _friendly(err: Any) -> str:
    text = FRIENDLY.get(err["type"])
    if text is None:
        text = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        text = f"{err['msg'].lower()} (it is {err.get('input')!r})"
    return text


def _key_lines(raw_meta: str) -> dict[tuple[str, ...], int]:
    """Line numbers (1-based, counted in the front matter) of every mapping key."""
    lines: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(raw_meta)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = (*path, str(key.value))
                lines[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                lines[(*path, str(i))] = value.start_mark.line + 1
                walk(value, (*path, str(i)))

    walk(root, ())
    return lines


def _locate(
    keys: dict[tuple[str, ...], int], path: tuple[str, ...], message: str, offset: int
) -> tuple[str, int | None]:
    """The best key path and file line for an error: the deepest known key on the path,
    or, for errors about several keys, the first key named in the message."""
    if len(path) <= 1:
        named = []
        for k in keys:
            m = re.search(rf"\b{re.escape(k[-1])}\b", message)
            if m and len(k) == len(path) + 1 and k[: len(path)] == path:
                named.append((m.start(), k))
        if named:
            path = min(named)[1]
    for cut in range(len(path), 0, -1):
        if path[:cut] in keys:
            return ".".join(path), keys[path[:cut]] + offset
    return ".".join(path) or "(front matter)", None


def analyse(text: str, *, path: Path, kinds: Kinds = KINDS) -> Analysis:
    """Validate a spec's text completely; collect every error and warning with its line."""
    result = Analysis(path=path)
    err = result.errors.append
    if not text.startswith("---"):
        err(
            Finding(
                "the file must start with a front matter block between '---' lines",
                1,
                rule="front_matter",
            )
        )
        return result
    end = text.find("\n---", 3)
    if end < 0:
        err(Finding("the front matter block is not closed by a '---' line", 1, rule="front_matter"))
        return result
    raw_meta = text[3:end]
    body_start = text.find("\n", end + 1) + 1 or len(text)
    body_src = text[body_start:]
    body_line0 = text[:body_start].count("\n")  # lines before the body
    try:
        data = yaml.safe_load(raw_meta)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        err(
            Finding(
                f"the front matter is not valid YAML: {getattr(exc, 'problem', exc)}",
                mark.line + 1 if mark else None,
                rule="front_matter",
            )
        )
        return result
    if not isinstance(data, dict):
        err(
            Finding("the front matter must be a list of 'key: value' lines", 2, rule="front_matter")
        )
        return result
    keys = _key_lines(raw_meta)
    try:
        meta = FrontMatter.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            loc = tuple(str(x) for x in e["loc"])
            key, line = _locate(keys, loc, str(e["msg"]), 0)
            err(Finding(_friendly(e), line, key, rule="front_matter"))
        return result
    kind = kinds.get(meta.kind)
    if kind is None:
        err(
            Finding(
                f"unknown kind {meta.kind!r}; known kinds: {', '.join(sorted(kinds))}",
                keys.get(("kind",)),
                "kind",
                rule="kind",
            )
        )
        return result
    try:
        params = kind.Parameters.model_validate(meta.parameters)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ("parameters", *(str(x) for x in e["loc"]))
            key, line = _locate(keys, loc, str(e["msg"]), 0)
            msg = _friendly(e)
            if e["type"] == "extra_forbidden":
                known = ", ".join(sorted(kind.Parameters.model_fields))
                msg = f"is not a parameter of the {meta.kind} policy (known: {known})"
            err(Finding(msg, line, key, rule="parameters"))
        return result

    values = params.model_dump(mode="python")
    env = sandbox()
    rendered_ok = True
    for n, src_line in enumerate(body_src.splitlines(), start=body_line0 + 1):
        for m in PLACEHOLDER.finditer(src_line):
            try:
                env.from_string(m.group(0)).render(**values)
            except TemplateError as exc:
                rendered_ok = False
                err(
                    Finding(
                        f"the placeholder {m.group(0)} does not resolve: {exc}",
                        n,
                        rule="placeholders",
                    )
                )
    body = body_src
    if rendered_ok:
        try:
            body = env.from_string(body_src).render(**values)
        except TemplateError as exc:
            err(
                Finding(
                    f"the policy text does not render: {exc}",
                    getattr(exc, "lineno", None),
                    rule="placeholders",
                )
            )
            return result

    clauses: dict[str, Clause] = {}
    src_lines = body_src.splitlines()
    rendered_lines = body.splitlines() if len(body.splitlines()) == len(src_lines) else src_lines
    headings = [(i, ln) for i, ln in enumerate(rendered_lines) if H2.match(ln)]
    for idx, (i, ln) in enumerate(headings):
        file_line = body_line0 + i + 1
        heading = CLAUSE_HEADING.match(ln)
        if heading is None:
            err(
                Finding(
                    f"heading {ln.strip()!r} has no clause id: write it as "
                    "'## R1 Title' (letters, then a number)",
                    file_line,
                    rule="clauses",
                )
            )
            continue
        cid = heading.group(1)
        if cid in clauses:
            err(
                Finding(
                    f"clause id {cid} is used twice (first on line {clauses[cid].line})",
                    file_line,
                    rule="clauses",
                )
            )
            continue
        stop = headings[idx + 1][0] if idx + 1 < len(headings) else len(rendered_lines)
        text_of = "\n".join(rendered_lines[i + 1 : stop]).strip()
        clauses[cid] = Clause(id=cid, title=heading.group(2).strip(), text=text_of, line=file_line)
        if not text_of:
            result.warnings.append(Finding(f"clause {cid} has no text", file_line, rule="clauses"))
    if not clauses and not result.errors:
        err(
            Finding(
                "the policy has no clauses: each clause is a '## R1 Title' heading",
                body_line0 + 1,
                rule="clauses",
            )
        )
    missing = sorted(kind.clause_refs - clauses.keys(), key=lambda c: (len(c), c))
    if missing and clauses:
        err(
            Finding(
                "the guardrails and fallback cite clauses this spec lacks: "
                f"{', '.join(missing)} — keep these ids, or change the code with them",
                rule="clause_refs",
            )
        )
    for name in kind.Parameters.model_fields.keys() - ParametersBase.model_fields.keys():
        if name in meta.parameters and not re.search(rf"\b{re.escape(name)}\b", body_src):
            result.warnings.append(
                Finding(
                    "never shown in the policy text with {{ " + name + " }}; the LLM sees it only "
                    "in the parameter list",
                    keys.get(("parameters", name)),
                    f"parameters.{name}",
                    rule="parameters",
                )
            )
    if meta.effective_from is None:
        result.warnings.append(
            Finding(
                "no effective_from date: the version applies to every case",
                keys.get(("kind",)),
                "effective_from",
            )
        )
    name = path.name.removesuffix(".md")
    if len(name) > SPEC_NAME_MAX:
        err(
            Finding(
                f"the file name is {len(name)} characters long; at most {SPEC_NAME_MAX} "
                "(without .md)",
                rule="file",
            )
        )
    if result.errors:
        return result
    result.spec = Spec(
        name=name,
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        meta=meta,
        params=params,
        body=body,
        clauses=clauses,
    )
    return result


def load_spec_text(text: str, *, path: Path, kinds: Kinds = KINDS) -> Spec:
    """Validate a spec's text; raise SpecError listing every problem."""
    analysis = analyse(text, path=path, kinds=kinds)
    if analysis.spec is None:
        raise SpecError(
            f"{path.name}: " + "; ".join(str(f) for f in analysis.errors),
            details=[
                {"line": f.line, "field": f.key, "reason": f.message} for f in analysis.errors
            ],
        )
    return analysis.spec


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from exc


def load_spec(path: Path, *, kinds: Kinds = KINDS) -> Spec:
    """Read and validate a spec file."""
    return load_spec_text(read_text(path), path=path, kinds=kinds)
