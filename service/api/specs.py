"""Spec versions, diffs and rollout reports: /v1/specs."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query

from service.auth import POLICY_READERS, Caller
from service.deps import EngineDep, LogDep, ServicesDep, require
from service.errors import NotFound
from service.specs.rollout import rollout_report
from service.specs.versions import diff_by_ref, version_detail

router = APIRouter(prefix="/v1/specs", tags=["specs"])
PolicyReader = Annotated[Caller, Depends(require(*POLICY_READERS))]


@router.get("")
async def list_specs(engine: EngineDep, _: PolicyReader) -> dict[str, Any]:
    """Every spec file: live version, role, and errors refusing the file on disk."""
    return {"specs": engine.registry.status()}


@router.get("/{kind}/versions")
async def list_versions(
    kind: str, engine: EngineDep, services: ServicesDep, _: PolicyReader
) -> dict[str, Any]:
    """Every version of a kind ever loaded, newest first."""
    engine.kind(kind)
    rows = await anyio.to_thread.run_sync(lambda: services.stores.spec_versions.of_kind(kind=kind))
    live = {s.sha256 for s in engine.registry.live_specs()}
    return {
        "kind": kind,
        "versions": [
            {
                "sha256": r.sha256,
                "name": r.name,
                "version": r.version,
                "rollout": r.rollout,
                "effective_from": r.effective_from,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
                "live": r.sha256 in live,
            }
            for r in rows
        ],
    }


@router.get("/{kind}/versions/{sha}")
async def get_version(kind: str, sha: str, engine: EngineDep, _: PolicyReader) -> dict[str, Any]:
    """One version: text, parameters and clauses."""
    engine.kind(kind)
    return await anyio.to_thread.run_sync(lambda: version_detail(engine.registry, kind, sha))


@router.get("/{kind}/diff")
async def diff(
    kind: str,
    engine: EngineDep,
    _: PolicyReader,
    from_: Annotated[
        str, Query(alias="from", description="sha (8+ chars), version label, or 'live'")
    ],
    to: Annotated[str, Query(description="sha (8+ chars), version label, 'live' or 'candidate'")],
) -> dict[str, Any]:
    """Text diff and parameter changes between two versions."""
    engine.kind(kind)
    return await anyio.to_thread.run_sync(lambda: diff_by_ref(engine.registry, kind, from_, to))


@router.get("/{kind}/rollout")
async def rollout(
    kind: str,
    engine: EngineDep,
    log: LogDep,
    services: ServicesDep,
    _: PolicyReader,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Agreement between the live version and the shadow or canary candidate."""
    engine.kind(kind)
    report = await anyio.to_thread.run_sync(
        lambda: rollout_report(engine.registry, kind, log=log, limit=limit)
    )
    if report is None:
        raise NotFound(f"{kind} has no shadow or canary candidate in specs/")
    shadow = services.shadow
    if shadow is not None:
        report["shadow_queue"] = {
            "queued": shadow.queue.qsize(),
            "done": shadow.done,
            "dropped": shadow.dropped,
            "failed": shadow.failed,
        }
    return report
