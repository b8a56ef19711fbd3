"""Looking up stored spec versions by reference, for the API and the CLI."""

from __future__ import annotations

from typing import Any

from service.errors import InvalidInput, NotFound
from service.specs.diff import diff_versions
from service.specs.loader import Spec
from service.specs.registry import AmbiguousRef, SpecRegistry


def spec_by_ref(registry: SpecRegistry, kind: str, ref: str, *, field: str) -> Spec:
    """'live', 'candidate', a version label, or a sha256 (prefix of 8+ characters)."""
    if ref == "live":
        return registry.active(kind)
    if ref == "candidate":
        cand = registry.candidate(kind)
        if cand is None:
            raise NotFound(f"{kind} has no candidate spec in specs/")
        return cand
    try:
        return registry.by_sha(kind, ref, field=field)
    except AmbiguousRef:
        raise
    except InvalidInput:
        try:
            return registry.by_version(kind, ref)
        except InvalidInput:
            raise InvalidInput(
                f"{field}: {ref!r} is neither a known sha256 nor a version label of {kind}",
                details=[{"field": field, "reason": "unknown version"}],
            ) from None


def version_detail(registry: SpecRegistry, kind: str, sha: str) -> dict[str, Any]:
    spec = spec_by_ref(registry, kind, sha, field="sha")
    row = registry.specs.get(sha256=spec.sha256)
    return {
        "sha256": spec.sha256,
        "name": spec.name,
        "kind": spec.kind,
        "version": spec.version,
        "rollout": spec.meta.rollout,
        "effective_from": spec.meta.effective_from,
        "first_seen": row.first_seen if row else None,
        "last_seen": row.last_seen if row else None,
        "parameters": spec.params.model_dump(mode="json"),
        "clauses": [{"id": c.id, "title": c.title, "text": c.text} for c in spec.clauses.values()],
        "text": spec.text,
    }


def diff_by_ref(registry: SpecRegistry, kind: str, old: str, new: str) -> dict[str, Any]:
    a = spec_by_ref(registry, kind, old, field="from")
    b = spec_by_ref(registry, kind, new, field="to")
    out = diff_versions(
        old_text=a.text,
        new_text=b.text,
        old_params=a.params.model_dump(mode="json"),
        new_params=b.params.model_dump(mode="json"),
        old_label=f"{a.name}.md@{a.sha256[:12]} (v{a.version})",
        new_label=f"{b.name}.md@{b.sha256[:12]} (v{b.version})",
    )
    out["from_sha256"], out["to_sha256"] = a.sha256, b.sha256
    return out
