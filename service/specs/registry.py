"""The spec registry: loads specs/, keeps the last good version of each file live."""

from __future__ import annotations

import logging
from pathlib import Path

from service.errors import InvalidInput, NotFound, SpecError
from service.log.store import Store
from service.specs.loader import Spec, load_spec, load_spec_text

log = logging.getLogger("arbiter.specs")


class SpecRegistry:
    """Specs by file name; every version seen is stored in the database."""

    def __init__(self, *, directory: Path, store: Store):
        self.directory = directory
        self.store = store
        self.live: dict[str, Spec] = {}  # file stem -> last good version
        self.errors: dict[str, str] = {}  # file stem -> why the file on disk is refused
        self._by_sha: dict[str, Spec] = {}

    def load(self) -> None:
        """(Re)read every spec file; a broken file keeps its last good version live."""
        if not self.directory.is_dir():
            raise SpecError(f"the specs folder {self.directory} does not exist")
        for path in sorted(self.directory.glob("*.md")):
            name = path.stem
            try:
                spec = load_spec(path)
            except SpecError as exc:
                self.errors[name] = exc.message
                log.error("spec %s refused: %s", path.name, exc.message)
                continue
            self.errors.pop(name, None)
            if spec.sha256 not in self._by_sha:
                log.info("spec %s version %s loaded (%s)", name, spec.version, spec.sha256[:12])
            self._remember(spec)
            self.live[name] = spec

    def _remember(self, spec: Spec) -> None:
        self._by_sha[spec.sha256] = spec
        self.store.record_spec(
            sha256=spec.sha256,
            kind=spec.kind,
            name=spec.name,
            version=spec.version,
            rollout=spec.meta.rollout,
            text=spec.text,
            parameters=spec.params.model_dump(mode="json"),
            effective_from=spec.meta.effective_from,
        )

    def active(self, kind: str) -> Spec:
        """The live version that serves a kind (the file named after it)."""
        spec = self.live.get(kind)
        if spec is None or spec.kind != kind:
            why = self.errors.get(kind, "no spec file")
            raise SpecError(f"no usable spec for {kind!r}: {why}")
        return spec

    def by_sha(self, kind: str, sha256: str) -> Spec:
        """A version by its sha256, from memory or from the database."""
        spec = self._by_sha.get(sha256)
        if spec is None:
            row = self.store.spec_version(sha256=sha256)
            if row is None:
                raise NotFound(f"no {kind} spec version with sha256 {sha256}")
            spec = load_spec_text(row.text, path=self.directory / f"{row.name}.md")
            self._by_sha[sha256] = spec
        if spec.kind != kind:
            raise InvalidInput(f"spec {sha256[:12]} is a {spec.kind} spec, not {kind}")
        return spec
