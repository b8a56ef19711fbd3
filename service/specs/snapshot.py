"""One immutable view of the policies in force: built whole by a reload, then published.

Readers take a snapshot once per request and read only it, so they never see a reload half
done; a reload never changes a published snapshot, it builds the next one. Where the
versions come from (the specs/ folder now, the database later) is the source's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any

from service.errors import SpecError
from service.specs.loader import Finding, Spec


def canary_bucket(kind: str, key: str) -> int:
    """A stable bucket 0..99 for a case key (the order id)."""
    return int(hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:8], 16) % 100


@dataclass(frozen=True)
class FileState:
    """What the registry knows about one spec file: its live version and its problems."""

    name: str
    live: Spec | None = None
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    signature: tuple[int, int] | None = None  # (mtime_ns, size) when it was last read
    disk_sha: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The spec version that judges a case, and why it was picked."""

    spec: Spec
    role: str  # live | canary | pinned


def _effective(spec: Spec) -> date:
    return spec.meta.effective_from or date.min


@dataclass(frozen=True)
class Snapshot:
    """Files, every version loaded (by sha256), each kind's schedule and candidate."""

    files: Mapping[str, FileState]
    by_sha: Mapping[str, Spec]
    schedules: Mapping[str, tuple[Spec, ...]]  # kind → active versions, earliest first
    candidates: Mapping[str, Spec]  # kind → its shadow or canary version
    deployed: tuple[Spec, ...] = ()  # every version serving now, each in its role
    deployment_ids: tuple[int, ...] = ()  # the database rows these came from

    @classmethod
    def build(
        cls,
        files: Iterable[FileState],
        *,
        known: Iterable[Spec] = (),
        deployed: Iterable[Spec] | None = None,
        deployment_ids: tuple[int, ...] = (),
    ) -> Snapshot:
        """A snapshot of `files`; `known` are versions loaded before (kept by sha256).
        `deployed` are the versions serving, each with its role as `meta.rollout` (from the
        database); without it, the files' own front matter gives the roles."""
        by_name = {st.name: st for st in sorted(files, key=lambda st: st.name)}
        file_specs = [st.live for st in by_name.values() if st.live is not None]
        live = file_specs if deployed is None else list(deployed)
        by_sha = {s.sha256: s for s in (*known, *file_specs, *live)}
        schedules: dict[str, list[Spec]] = {}
        candidates: dict[str, Spec] = {}
        for s in live:  # the first candidate of a kind wins
            if s.meta.rollout == "active":
                schedules.setdefault(s.kind, []).append(s)
            else:
                candidates.setdefault(s.kind, s)
        return cls(
            files=MappingProxyType(by_name),
            by_sha=MappingProxyType(by_sha),
            schedules=MappingProxyType(
                {
                    k: tuple(sorted(v, key=lambda s: (_effective(s), s.name)))
                    for k, v in schedules.items()
                }
            ),
            candidates=MappingProxyType(candidates),
            deployed=tuple(live),
            deployment_ids=deployment_ids,
        )

    def live_specs(self) -> list[Spec]:
        """Every version serving now: the kinds' schedules and candidates."""
        return list(self.deployed)

    def active_specs(self, kind: str) -> list[Spec]:
        """The versions in force for a kind, earliest effective_from first."""
        return list(self.schedules.get(kind, ()))

    def candidate(self, kind: str) -> Spec | None:
        """The shadow or canary candidate of a kind, if any."""
        return self.candidates.get(kind)

    def active(self, kind: str, on: date | None = None) -> Spec:
        """The version in force for a kind on a date (the latest effective_from ≤ date)."""
        specs = self.schedules.get(kind, ())
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
        in_force = [s for s in specs if _effective(s) <= on]
        return in_force[-1] if in_force else specs[0]

    def resolve(self, kind: str, *, on: date | None, key: str | None) -> Resolution:
        """The canary by stable hash of `key`, else the version in force on `on`."""
        cand = self.candidate(kind)
        pct = cand.meta.canary_percent if cand else None
        if cand is not None and pct and key is not None and canary_bucket(kind, key) < pct:
            return Resolution(cand, "canary")
        return Resolution(self.active(kind, on), "live")

    def find(self, sha: str) -> Spec | None:
        """A loaded version by sha256 or by a prefix of one."""
        return self.by_sha.get(sha) or next(
            (s for k, s in self.by_sha.items() if k.startswith(sha)), None
        )

    def status(self) -> list[dict[str, Any]]:
        """Every file: its last good version, the role it asks for, and any error refusing
        the file on disk."""
        return [_file_status(name, st) for name, st in self.files.items()]

    def serving(self) -> list[dict[str, Any]]:
        """Every version serving now, by kind: the schedule (live) and the candidate."""
        out = []
        for s in self.deployed:
            out.append(
                {
                    "kind": s.kind,
                    "name": s.name,
                    "role": "live" if s.meta.rollout == "active" else s.meta.rollout,
                    **_version(s),
                }
            )
        return sorted(out, key=lambda d: (d["kind"], d["role"] != "live", d["name"]))


def _version(s: Spec) -> dict[str, Any]:
    return {
        "sha256": s.sha256,
        "version": s.version,
        "rollout": s.meta.rollout,
        "effective_from": s.meta.effective_from,
        "title": s.meta.title,
        "clauses": len(s.clauses),
    }


def _file_status(name: str, st: FileState) -> dict[str, Any]:
    s = st.live
    return {
        "file": f"{name}.md",
        "kind": s.kind if s else None,
        "version": None if s is None else _version(s),
        "on_disk_differs": bool(st.errors) and s is not None,
        "errors": [{"line": f.line, "field": f.key, "message": f.message} for f in st.errors],
        "warnings": [{"line": f.line, "field": f.key, "message": f.message} for f in st.warnings],
    }


EMPTY = Snapshot.build([])
