"""Prompt rendering from prompts/<kind>.md.j2 in a sandboxed Jinja2 environment."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.llm.sandbox import sandbox

if TYPE_CHECKING:
    from service.specs.loader import Spec


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: a static system part (cacheable prefix) and the case."""

    system: str
    user: str
    template_sha256: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    @property
    def sha256(self) -> str:
        return hashlib.sha256((self.system + "\x00" + self.user).encode()).hexdigest()


class PromptLibrary:
    """Loads prompt templates once per file content and renders them."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._env = sandbox()
        self._cache: dict[str, tuple[str, Any]] = {}

    def _template(self, kind: str) -> tuple[str, Any]:
        path = self.directory / f"{kind}.md.j2"
        source = path.read_text(encoding="utf-8")
        sha = hashlib.sha256(source.encode()).hexdigest()
        cached = self._cache.get(kind)
        if cached is None or cached[0] != sha:
            cached = (sha, self._env.from_string(source))
            self._cache[kind] = cached
        return cached

    def render(self, *, spec: Spec, case: dict[str, Any]) -> Prompt:
        """Render the system part from the spec and the user part from the case."""
        sha, template = self._template(spec.kind)
        params = spec.params.model_dump(mode="json")
        context = template.new_context(
            {
                "spec": spec,
                "policy": spec.body,
                "parameters": json.dumps(params, indent=2, sort_keys=True),
                "case_json": json.dumps(case, indent=1, sort_keys=True, ensure_ascii=False),
            }
        )
        system = "".join(template.blocks["system"](context)).strip() + "\n"
        user = "".join(template.blocks["user"](context)).strip() + "\n"
        return Prompt(system=system, user=user, template_sha256=sha)
