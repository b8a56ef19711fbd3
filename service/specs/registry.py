"""The spec registry: loads specs/, hot-reloads it, keeps the last good version live.

Files of one kind play roles by their front matter: `rollout: active` files form the
schedule of versions in force (by `effective_from`), and at most one `rollout: shadow` or
`rollout: canary:N` file is the candidate that runs beside them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import anyio

from service.errors import InvalidInput, SpecError
from service.log.spec_versions import SpecVersionStore
from service.specs.lint import lint_file
from service.specs.loader import Finding, Spec, load_spec_text

log = logging.getLogger("arbiter.specs")


def canary_bucket(kind: str, key: str) -> int:
    """A stable bucket 0..99 for a case key (the order id)."""
    return int(hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:8], 16) % 100


@dataclass
class FileState:
    """What the registry knows about one file in specs/."""

    name: str
    live: Spec | None = None
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    signature: tuple[int, int] | None = None
    disk_sha: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The spec version that judges a case, and why it was picked."""

    spec: Spec
    role: str  # live | canary | pinned


class SpecRegistry:
    """Specs by file name; every version seen is stored in the database."""

    def __init__(
        self,
        *,
        directory: Path,
        specs: SpecVersionStore,
        prompts_dir: Path,
        token_budget: int = 6000,
    ):
        self.directory = directory
        self.specs = specs
        self.prompts_dir = prompts_dir
        self.token_budget = token_budget
        self.files: dict[str, FileState] = {}
        self._by_sha: dict[str, Spec] = {}

    # -- loading --
    def load(self) -> list[str]:
        """(Re)read changed files; a broken file keeps its last good version live."""
        if not self.directory.is_dir():
            raise SpecError(f"the specs folder {self.directory} does not exist")
        changes: list[str] = []
        seen = set()
        for path in sorted(self.directory.glob("*.md")):
            name = path.name.removesuffix(".md")
            seen.add(name)
            state = self.files.setdefault(name, FileState(name=name))
            try:
                st = path.stat()
            except OSError:
                continue
            signature = (st.st_mtime_ns, st.st_size)
            if signature == state.signature:
                continue
            state.signature = signature
            analysis = lint_file(path, prompts_dir=self.prompts_dir, token_budget=self.token_budget)
            state.warnings = analysis.warnings
            if analysis.spec is None:
                state.errors = analysis.errors
                state.disk_sha = None
                kept = (
                    f"; version {state.live.version} ({state.live.sha256[:12]}) stays live"
                    if state.live
                    else ""
                )
                log.error(
                    "spec %s refused%s: %s",
                    path.name,
                    kept,
                    "; ".join(str(f) for f in analysis.errors),
                )
                changes.append(f"{name}: refused")
                continue
            spec = analysis.spec
            state.errors = []
            state.disk_sha = spec.sha256
            if state.live is None or state.live.sha256 != spec.sha256:
                log.info(
                    "spec %s version %s is live (%s, rollout %s)",
                    path.name,
                    spec.version,
                    spec.sha256[:12],
                    spec.meta.rollout,
                )
                changes.append(f"{name}: {spec.sha256[:12]}")
            state.live = spec
            self._remember(spec)
        for name in list(self.files):
            if name in seen:
                continue
            state = self.files[name]
            live = state.live
            if (
                live
                and live.meta.rollout == "active"
                and not [s for s in self.active_specs(live.kind) if s.name != name]
            ):
                state.errors = [
                    Finding(
                        "the file was removed; its last version stays live "
                        "because the kind has no other active spec"
                    )
                ]
                state.signature = None
                continue
            log.info("spec %s removed", name)
            del self.files[name]
            changes.append(f"{name}: removed")
        return changes

    def _remember(self, spec: Spec) -> None:
        self._by_sha[spec.sha256] = spec
        self.specs.record(
            sha256=spec.sha256,
            kind=spec.kind,
            name=spec.name,
            version=spec.version,
            rollout=spec.meta.rollout,
            text=spec.text,
            parameters=spec.params.model_dump(mode="json"),
            effective_from=spec.meta.effective_from,
        )

    async def watch(self, interval_s: float) -> None:
        """Poll the folder for changes until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await anyio.to_thread.run_sync(self.load)
            except Exception:  # a broken folder must not kill the watcher
                log.exception("spec reload failed")

    # -- lookups --
    def live_specs(self) -> list[Spec]:
        return [s.live for s in self.files.values() if s.live is not None]

    def active_specs(self, kind: str) -> list[Spec]:
        """The versions in force for a kind, earliest effective_from first."""
        specs = [s for s in self.live_specs() if s.kind == kind and s.meta.rollout == "active"]
        return sorted(specs, key=lambda s: (s.meta.effective_from or date.min, s.name))

    def candidate(self, kind: str) -> Spec | None:
        """The shadow or canary candidate of a kind, if any."""
        found = [s for s in self.live_specs() if s.kind == kind and s.meta.rollout != "active"]
        return sorted(found, key=lambda s: s.name)[0] if found else None

    def active(self, kind: str, on: date | None = None) -> Spec:
        """The version in force for a kind on a date (the latest effective_from ≤ date)."""
        specs = self.active_specs(kind)
        if not specs:
            errors = (
                "; ".join(
                    str(f)
                    for st in self.files.values()
                    for f in st.errors
                    if st.name.split(".")[0] == kind
                )
                or "no spec file"
            )
            raise SpecError(f"no usable spec for {kind!r}: {errors}")
        if on is None:
            return specs[-1]
        in_force = [s for s in specs if (s.meta.effective_from or date.min) <= on]
        return in_force[-1] if in_force else specs[0]

    def resolve(
        self,
        kind: str,
        *,
        on: date | None,
        key: str | None,
        pin_sha: str | None = None,
        pin_version: str | None = None,
    ) -> Resolution:
        """Pinned version, else canary by stable hash, else the version in force."""
        if pin_sha:
            return Resolution(self.by_sha(kind, pin_sha, field="spec_sha"), "pinned")
        if pin_version:
            return Resolution(self.by_version(kind, pin_version), "pinned")
        cand = self.candidate(kind)
        pct = cand.meta.canary_percent if cand else None
        if cand is not None and pct and key is not None and canary_bucket(kind, key) < pct:
            return Resolution(cand, "canary")
        return Resolution(self.active(kind, on), "live")

    def by_sha(self, kind: str, sha256: str, *, field: str = "sha256") -> Spec:
        """A version by its sha256 (or a unique prefix of 8+ characters)."""
        sha = sha256.strip().lower()
        if len(sha) < 8:
            raise InvalidInput(
                f"{field}: give at least 8 characters of the sha256",
                details=[{"field": field, "reason": "too short"}],
            )
        spec = self._by_sha.get(sha) or next(
            (s for k, s in self._by_sha.items() if k.startswith(sha)), None
        )
        if spec is None:
            row = self.specs.get(sha256=sha)
            if row is None:
                raise InvalidInput(
                    f"{field}: no {kind} spec version {sha}",
                    details=[{"field": field, "reason": "unknown version"}],
                )
            spec = load_spec_text(row.text, path=self.directory / f"{row.name}.md")
            self._by_sha[spec.sha256] = spec
        if spec.kind != kind:
            raise InvalidInput(
                f"{field}: {sha[:12]} is a {spec.kind} spec, not {kind}",
                details=[{"field": field, "reason": "other kind"}],
            )
        return spec

    def by_version(self, kind: str, label: str) -> Spec:
        """A version by its front-matter label: a live file first, else the newest stored."""
        live = [s for s in self.live_specs() if s.kind == kind and s.version == label]
        if live:
            return live[0]
        rows = [r for r in self.specs.of_kind(kind=kind) if r.version == label]
        if not rows:
            raise InvalidInput(
                f"spec_version: no {kind} spec with version {label!r}",
                details=[{"field": "spec_version", "reason": "unknown version"}],
            )
        return self.by_sha(kind, rows[0].sha256)

    def status(self) -> list[dict[str, Any]]:
        """Every file: its live version, role, and any error refusing the file on disk."""
        out = []
        for name, st in sorted(self.files.items()):
            s = st.live
            out.append(
                {
                    "file": f"{name}.md",
                    "kind": s.kind if s else None,
                    "live": None
                    if s is None
                    else {
                        "sha256": s.sha256,
                        "version": s.version,
                        "rollout": s.meta.rollout,
                        "effective_from": s.meta.effective_from,
                        "title": s.meta.title,
                        "clauses": len(s.clauses),
                    },
                    "on_disk_differs": bool(st.errors) and s is not None,
                    "errors": [
                        {"line": f.line, "field": f.key, "message": f.message} for f in st.errors
                    ],
                    "warnings": [
                        {"line": f.line, "field": f.key, "message": f.message} for f in st.warnings
                    ],
                }
            )
        return out
