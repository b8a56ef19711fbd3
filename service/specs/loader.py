"""Read one spec file: front matter, parameters, clauses, rendered policy text."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.errors import SpecError
from service.kinds.base import ParametersBase
from service.kinds.registry import KINDS
from service.llm.prompts import sandbox

CLAUSE_HEADING = re.compile(r"^##\s+([A-Z]{1,3}\d{1,3}[a-z]?)\b[ \t]*(.*)$", re.MULTILINE)
ANY_H2 = re.compile(r"^##\s+(.*)$", re.MULTILINE)


class ModelChain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary: str
    fallbacks: list[str] = Field(default_factory=list)
    escalate_above_value: Decimal | None = None
    escalate_to: str | None = None

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
    version: str
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


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    text: str


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


def split_front_matter(text: str) -> tuple[str, str]:
    """(front matter YAML, Markdown body)."""
    if not text.startswith("---"):
        raise SpecError("the file must start with a front matter block between '---' lines")
    parts = text.split("\n---", 2)
    end = text.find("\n---", 3)
    if end < 0 or len(parts) < 2:
        raise SpecError("the front matter block is not closed by a '---' line")
    return text[3:end], text[end + 4 :].lstrip("-").lstrip("\n")


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_clauses(body: str) -> dict[str, Clause]:
    """Clauses keyed by id, from '## ID Title' headings; ids must be unique."""
    clauses: dict[str, Clause] = {}
    headings = list(ANY_H2.finditer(body))
    for i, h in enumerate(headings):
        m = CLAUSE_HEADING.match(h.group(0))
        if m is None:
            raise SpecError(
                f"heading '## {h.group(1)}' has no clause id: write it as '## R1 Title'"
            )
        end = headings[i + 1].start() if i + 1 < len(headings) else len(body)
        cid = m.group(1)
        if cid in clauses:
            raise SpecError(f"clause id {cid} is used twice")
        clauses[cid] = Clause(id=cid, title=m.group(2).strip(), text=body[h.end() : end].strip())
    if not clauses:
        raise SpecError("the policy has no clauses: each clause is a '## R1 Title' heading")
    return clauses


def load_spec_text(text: str, *, path: Path) -> Spec:
    """Validate a spec's text; raise SpecError naming what is wrong."""
    raw_meta, body_src = split_front_matter(text)
    try:
        data = yaml.safe_load(raw_meta)
    except yaml.YAMLError as exc:
        raise SpecError(f"the front matter is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError("the front matter must be a YAML mapping of keys to values")
    try:
        meta = FrontMatter.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            "front matter: "
            + "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors()),
            details=[{"field": _field_path(e["loc"]), "reason": e["msg"]} for e in exc.errors()],
        ) from exc
    kind = KINDS.get(meta.kind)
    if kind is None:
        raise SpecError(f"unknown kind {meta.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    try:
        params = kind.Parameters.model_validate(meta.parameters)
    except ValidationError as exc:
        raise SpecError(
            "parameters: "
            + "; ".join(
                f"{_field_path(('parameters', *e['loc']))}: {e['msg']}" for e in exc.errors()
            ),
            details=[
                {"field": _field_path(("parameters", *e["loc"])), "reason": e["msg"]}
                for e in exc.errors()
            ],
        ) from exc
    try:
        body = sandbox().from_string(body_src).render(**params.model_dump(mode="python"))
    except TemplateError as exc:
        raise SpecError(
            f"a {{{{ }}}} placeholder in the policy text does not resolve: {exc}"
        ) from exc
    clauses = parse_clauses(body)
    missing = sorted(kind.clause_refs - clauses.keys())
    if missing:
        raise SpecError(
            f"the guardrails and fallback cite clauses this spec lacks: {', '.join(missing)}"
        )
    return Spec(
        name=path.stem,
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        meta=meta,
        params=params,
        body=body,
        clauses=clauses,
    )


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from exc
    return load_spec_text(text, path=path)
