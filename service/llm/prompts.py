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
    """Loads prompt templates once per file content and renders them; the static system
    part is rendered once per (template, spec version) and reused."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._env = sandbox()
        self._cache: dict[str, tuple[tuple[int, int], str, Any]] = {}
        self._systems: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def _template(self, kind: str) -> tuple[str, Any]:
        """The compiled template and its sha; the file is read again only when it changed."""
        path = self.directory / f"{kind}.md.j2"
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(kind)
        if cached is None or cached[0] != stamp:
            source = path.read_text(encoding="utf-8")
            sha = hashlib.sha256(source.encode()).hexdigest()
            if cached is None or cached[1] != sha:
                cached = (stamp, sha, self._env.from_string(source))
            else:
                cached = (stamp, *cached[1:])
            self._cache[kind] = cached
        return cached[1], cached[2]

    def _system(self, sha: str, template: Any, spec: Spec, untrusted: tuple[str, ...] = ()) -> str:
        """The system part: from the spec and the kind's untrusted paths alone (the case is
        not in its context)."""
        key = (sha, spec.sha256, untrusted)
        system = self._systems.get(key)
        if system is None:
            params = spec.params.model_dump(mode="json")
            context = template.new_context(
                {
                    "spec": spec,
                    "policy": spec.body,
                    "parameters": json.dumps(params, indent=2, sort_keys=True),
                    "untrusted_fields": list(untrusted),
                }
            )
            system = "".join(template.blocks["system"](context)).strip() + "\n"
            if len(self._systems) >= 256:  # old spec versions and templates: start over
                self._systems.clear()
            self._systems[key] = system
        return system

    def render(
        self, *, spec: Spec, case: dict[str, Any], untrusted: tuple[str, ...] = ()
    ) -> Prompt:
        """Render the system part from the spec and the user part from the case; templates
        may name the case's `untrusted_fields` (the kind's UNTRUSTED paths) as data."""
        sha, template = self._template(spec.kind)
        context = template.new_context(
            {
                "spec": spec,
                "case_json": json.dumps(case, indent=1, sort_keys=True, ensure_ascii=False),
            }
        )
        user = "".join(template.blocks["user"](context)).strip() + "\n"
        system = self._system(sha, template, spec, untrusted)
        return Prompt(system=system, user=user, template_sha256=sha)
