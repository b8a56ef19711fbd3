"""The spec registry: serves the rollout state the database holds, reloads it every few
seconds, and takes specs/ in as one way of changing it.

The database says which stored version serves each kind and in which role (see
deployments.py): `active` versions form the schedule in force (by `effective_from`), and
at most one `shadow` or `canary:N` version is the candidate that runs beside them. The
specs/ folder is read on every reload; a file whose content is new is linted, stored and
deployed in the role its front matter names (a broken file never replaces a working
version, and its errors are reported).

A reload builds a complete new `Snapshot` and publishes it with one reference assignment;
readers take `registry.snapshot` once per request (see snapshot.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import anyio

from service.errors import InvalidInput, SpecError
from service.kinds.registry import KINDS, Kinds
from service.log.spec_versions import SpecVersionStore, checked_text
from service.specs.deployments import ACTIVE, DeploymentStore
from service.specs.lint import lint_file
from service.specs.loader import Finding, Spec, load_spec_text
from service.specs.snapshot import EMPTY, FileState, Resolution, Snapshot, canary_bucket

__all__ = ["FileState", "FolderSource", "Resolution", "SpecRegistry", "canary_bucket"]

log = logging.getLogger("arbiter.specs")


@dataclass(frozen=True)
class Scan:
    """What a source read: the next snapshot, what changed, and the versions it (re)read."""

    snapshot: Snapshot
    changes: list[str] = field(default_factory=list)
    read: list[Spec] = field(default_factory=list)


class AmbiguousRef(InvalidInput):
    """A sha256 prefix that more than one stored version starts with."""


class SpecSource(Protocol):
    """Where spec versions come from (the specs/ folder today; the database can be another)."""

    def scan(self, previous: Snapshot) -> Scan:
        """The next snapshot, built from `previous` without changing it."""
        ...


class FolderSource:
    """Spec files in a folder; a broken file keeps its last good version live."""

    def __init__(
        self,
        *,
        directory: Path,
        prompts_dir: Path,
        kinds: Kinds,
        token_budget: int = 6000,
    ):
        self.directory = directory
        self.prompts_dir = prompts_dir
        self.kinds = kinds
        self.token_budget = token_budget

    def scan(self, previous: Snapshot) -> Scan:
        """Re-read the files that changed since `previous` (by mtime and size)."""
        if not self.directory.is_dir():
            raise SpecError(f"the specs folder {self.directory} does not exist")
        files: dict[str, FileState] = {}
        changes: list[str] = []
        read: list[Spec] = []
        for path in sorted(self.directory.glob("*.md")):
            name = path.name.removesuffix(".md")
            state = previous.files.get(name) or FileState(name=name)
            files[name] = state
            try:
                st = path.stat()
            except OSError:
                continue
            signature = (st.st_mtime_ns, st.st_size)
            if signature == state.signature:
                continue
            analysis = lint_file(
                path,
                prompts_dir=self.prompts_dir,
                token_budget=self.token_budget,
                kinds=self.kinds,
            )
            spec = analysis.spec
            if spec is None:
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
                files[name] = FileState(
                    name=name,
                    live=state.live,
                    errors=tuple(analysis.errors),
                    warnings=tuple(analysis.warnings),
                    signature=signature,
                )
                continue
            if state.live is None or state.live.sha256 != spec.sha256:
                log.info(
                    "spec %s version %s is live (%s, rollout %s)",
                    path.name,
                    spec.version,
                    spec.sha256[:12],
                    spec.meta.rollout,
                )
                changes.append(f"{name}: {spec.sha256[:12]}")
            files[name] = FileState(
                name=name,
                live=spec,
                warnings=tuple(analysis.warnings),
                signature=signature,
                disk_sha=spec.sha256,
            )
            read.append(spec)
        for name, state in previous.files.items():
            if name in files:
                continue
            live = state.live
            if (
                live
                and live.meta.rollout == "active"
                and not [
                    st
                    for st in files.values()
                    if st.live and st.live.kind == live.kind and st.live.meta.rollout == "active"
                ]
            ):
                files[name] = FileState(
                    name=name,
                    live=live,
                    errors=(
                        Finding(
                            "the file was removed; its last version stays live "
                            "because the kind has no other active spec"
                        ),
                    ),
                )
                continue
            log.info("spec %s removed", name)
            changes.append(f"{name}: removed")
        known = previous.by_sha.values()
        return Scan(Snapshot.build(files.values(), known=known), changes, read)


class SpecRegistry:
    """The published snapshot of a source; every version seen is stored in the database."""

    def __init__(
        self,
        *,
        directory: Path,
        specs: SpecVersionStore,
        prompts_dir: Path,
        kinds: Kinds = KINDS,
        token_budget: int = 6000,
        source: SpecSource | None = None,
    ):
        self.directory = directory
        self.specs = specs
        self.prompts_dir = prompts_dir
        self.kinds = kinds
        self.source = source or FolderSource(
            directory=directory, prompts_dir=prompts_dir, kinds=kinds, token_budget=token_budget
        )
        self.deployments = DeploymentStore(db=specs.db)
        self._snapshot = EMPTY
        self._reloading = threading.Lock()  # one reload at a time builds on the last
        self._stored: dict[str, Spec] = {}  # versions read back from the database
        self._stored_lock = threading.Lock()
        self._serving: dict[tuple[str, str, str], Spec] = {}  # (sha, slot, role) → spec
        self._synced = False

    @property
    def snapshot(self) -> Snapshot:
        """The policies in force now; take it once per request and read only it."""
        return self._snapshot

    @property
    def files(self) -> Mapping[str, FileState]:
        """Every spec file by name (read-only, of the current snapshot)."""
        return self._snapshot.files

    # -- loading --
    def load(self) -> list[str]:
        """Read the folder (storing and deploying new file versions) and the rollout state,
        then publish the next snapshot whole."""
        with self._reloading:
            scan = self.source.scan(self._snapshot)
            changes = list(scan.changes)
            if scan.read or scan.changes or not self._synced:
                for spec in scan.read:
                    self.remember(spec)
                fresh = {s.name: s for s in scan.read}
                present = {p.name.removesuffix(".md") for p in self.directory.glob("*.md")}
                changes += self.deployments.sync_files(files=fresh, present=present)
                self._synced = True
            rows = self.deployments.current()
            ids = tuple(r.id or 0 for r in rows)
            if self._snapshot is not EMPTY and ids == self._snapshot.deployment_ids and not changes:
                return changes  # nothing new: the published snapshot stands
            deployed = self._deployed(rows)
            known = [*scan.snapshot.by_sha.values(), *self._snapshot.by_sha.values()]
            snapshot = Snapshot.build(
                scan.snapshot.files.values(), known=known, deployed=deployed, deployment_ids=ids
            )
            if ids != self._snapshot.deployment_ids:
                changes.append(
                    "rollout: "
                    + ", ".join(f"{s.name} {s.sha256[:12]} ({s.meta.rollout})" for s in deployed)
                )
            self._snapshot = snapshot  # the one write readers can observe
            return changes

    def _deployed(self, rows: list[Any]) -> list[Spec]:
        """The specs of the rows in force: the latest row wins a slot, and a kind's
        candidate; each spec carries its slot as name and its role as `meta.rollout`."""
        latest: dict[tuple[str, str], Any] = {}
        for r in rows:  # oldest first
            key = (r.kind, r.slot if r.role == ACTIVE else "\0candidate")
            latest[key] = r
        out = []
        for r in latest.values():
            spec = self._serving.get((r.sha256, r.slot, r.role))
            if spec is None:
                try:
                    base = self._stored_version(r.sha256)
                except SpecError as exc:  # stored before a code change it no longer passes
                    log.error("deployed spec version %s is refused: %s", r.sha256[:12], exc)
                    continue
                if base is None:
                    log.error("spec version %s of %s is deployed but not stored", r.sha256, r.kind)
                    continue
                spec = dataclasses.replace(
                    base,
                    name=r.slot,
                    path=self.directory / f"{r.slot}.md",
                    meta=base.meta.model_copy(update={"rollout": r.role}),
                )
                self._serving[(r.sha256, r.slot, r.role)] = spec
            out.append(spec)
        return out

    def remember(self, spec: Spec) -> None:
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
        """Poll the folder and the rollout state for changes until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await anyio.to_thread.run_sync(self.load)
            except Exception:  # a broken folder must not kill the watcher
                log.exception("spec reload failed")

    # -- lookups (each reads one snapshot) --
    def live_specs(self) -> list[Spec]:
        return self._snapshot.live_specs()

    def active_specs(self, kind: str) -> list[Spec]:
        """The versions in force for a kind, earliest effective_from first."""
        return self._snapshot.active_specs(kind)

    def candidate(self, kind: str) -> Spec | None:
        """The shadow or canary candidate of a kind, if any."""
        return self._snapshot.candidate(kind)

    def active(self, kind: str, on: date | None = None) -> Spec:
        """The version in force for a kind on a date (the latest effective_from ≤ date)."""
        return self._snapshot.active(kind, on)

    def resolve(
        self,
        kind: str,
        *,
        on: date | None,
        key: str | None,
        pin_sha: str | None = None,
        pin_version: str | None = None,
        snapshot: Snapshot | None = None,
    ) -> Resolution:
        """Pinned version, else canary by stable hash, else the version in force."""
        snap = snapshot or self._snapshot
        if pin_sha:
            return Resolution(self.by_sha(kind, pin_sha, field="spec_sha", snapshot=snap), "pinned")
        if pin_version:
            return Resolution(self.by_version(kind, pin_version, snapshot=snap), "pinned")
        return snap.resolve(kind, on=on, key=key)

    def by_sha(
        self, kind: str, sha256: str, *, field: str = "sha256", snapshot: Snapshot | None = None
    ) -> Spec:
        """A version by its sha256 (or a unique prefix of 8+ characters)."""
        sha = sha256.strip().lower()
        if len(sha) < 8:
            raise InvalidInput(
                f"{field}: give at least 8 characters of the sha256",
                details=[{"field": field, "reason": "too short"}],
            )
        snap = snapshot or self._snapshot
        spec = snap.by_sha.get(sha)
        if spec is None:  # a prefix, or a version that only the database still holds
            found = {k for k in snap.by_sha if k.startswith(sha)}
            with self._stored_lock:
                found |= {k for k in self._stored if k.startswith(sha)}
            found |= {r.sha256 for r in self.specs.by_prefix(prefix=sha)}
            if len(found) > 1:
                raise AmbiguousRef(
                    f"{field}: {sha} is ambiguous ({', '.join(sorted(f[:16] for f in found))}); "
                    "give more characters",
                    details=[{"field": field, "reason": "ambiguous"}],
                )
            if found:
                full = found.pop()
                spec = snap.by_sha.get(full) or self._stored_version(full)
        if spec is None:
            raise InvalidInput(
                f"{field}: no {kind} spec version {sha}",
                details=[{"field": field, "reason": "unknown version"}],
            )
        if spec.kind != kind:
            raise InvalidInput(
                f"{field}: {sha[:12]} is a {spec.kind} spec, not {kind}",
                details=[{"field": field, "reason": "other kind"}],
            )
        return spec

    def _stored_version(self, sha: str) -> Spec | None:
        """A version (full sha256) no longer in the source, read back from the database
        (and kept)."""
        with self._stored_lock:
            spec = self._stored.get(sha)
        if spec is not None:
            return spec
        row = self.specs.get(sha256=sha)
        if row is None:
            return None
        spec = load_spec_text(
            checked_text(row), path=self.directory / f"{row.name}.md", kinds=self.kinds
        )
        with self._stored_lock:
            self._stored[spec.sha256] = spec
        return spec

    def by_version(self, kind: str, label: str, *, snapshot: Snapshot | None = None) -> Spec:
        """A version by its front-matter label: a live file first, else the newest stored."""
        snap = snapshot or self._snapshot
        live = [s for s in snap.live_specs() if s.kind == kind and s.version == label]
        if live:
            return live[0]
        rows = [r for r in self.specs.of_kind(kind=kind) if r.version == label]
        if not rows:
            raise InvalidInput(
                f"spec_version: no {kind} spec with version {label!r}",
                details=[{"field": "spec_version", "reason": "unknown version"}],
            )
        return self.by_sha(kind, rows[0].sha256, snapshot=snap)

    def status(self) -> list[dict[str, Any]]:
        """Every file: its last good version, role, and any error refusing the file."""
        return self._snapshot.status()

    def serving(self) -> list[dict[str, Any]]:
        """Every version serving now, each kind's schedule and candidate."""
        return self._snapshot.serving()
