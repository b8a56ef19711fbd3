"""Promotion and rollback: file operations that hot reload then picks up."""

from __future__ import annotations

import os
import re
from pathlib import Path

from service.errors import InvalidInput, NotFound
from service.specs.lint import lint_file
from service.specs.loader import Analysis
from service.specs.registry import SpecRegistry

ROLLOUT = re.compile(r"^rollout:.*$", re.MULTILINE)


def set_rollout(text: str, rollout: str) -> str:
    """The same spec text with `rollout:` set in its front matter."""
    end = text.find("\n---", 3)
    head, rest = text[:end], text[end:]
    if ROLLOUT.search(head):
        head = ROLLOUT.sub(f"rollout: {rollout}", head, count=1)
    else:
        head += f"\nrollout: {rollout}"
    return head + rest


def _write_checked(target: Path, text: str, *, prompts_dir: Path) -> Analysis:
    """Lint `text` as `target`; write it atomically only when it has no errors."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    analysis = lint_file(tmp, prompts_dir=prompts_dir)
    analysis.path = target
    if analysis.ok:
        os.replace(tmp, target)
    else:
        tmp.unlink()
    return analysis


def promote(registry: SpecRegistry, name: str) -> tuple[Path, Analysis]:
    """Make candidate file `name` (e.g. returns.next) the live `<kind>.md`."""
    source = registry.directory / f"{name.removesuffix('.md')}.md"
    if not source.exists():
        raise NotFound(f"no spec file {source}")
    first = lint_file(source, prompts_dir=registry.prompts_dir)
    if first.spec is None:
        return source, first
    target = registry.directory / f"{first.spec.kind}.md"
    if source == target:
        raise InvalidInput(f"{source.name} is already the live file of {first.spec.kind}")
    analysis = _write_checked(
        target,
        set_rollout(source.read_text(encoding="utf-8"), "active"),
        prompts_dir=registry.prompts_dir,
    )
    if analysis.ok:
        source.unlink()
    return target, analysis


def rollback(registry: SpecRegistry, kind: str, to: str | None) -> tuple[Path, Analysis, str]:
    """Write a stored earlier version back to `<kind>.md` (default: the previous one)."""
    from service.log.spec_versions import checked_text
    from service.specs.versions import spec_by_ref

    target = registry.directory / f"{kind}.md"
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if to is not None:
        text = spec_by_ref(registry, kind, to, field="to").text
    else:
        rows = [
            r for r in registry.specs.of_kind(kind=kind) if r.text != current and r.name == kind
        ]
        if not rows:
            raise NotFound(f"no earlier version of {kind}.md is stored")
        text = checked_text(rows[0])
    analysis = _write_checked(target, set_rollout(text, "active"), prompts_dir=registry.prompts_dir)
    return target, analysis, text
