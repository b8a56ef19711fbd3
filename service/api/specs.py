"""Spec versions, diffs, rollout reports, and policy changes: /v1/specs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import (
    AUTHED,
    CandidateOut,
    CandidateStopped,
    DraftOut,
    EvalOut,
    LintReport,
    PolicyEvents,
    PromoteOut,
    RollbackOut,
    RolloutReport,
    SpecDiff,
    SpecList,
    VersionDetail,
    VersionList,
    errors,
)
from service.auth import POLICY_READERS, Caller
from service.deps import EngineDep, LogDep, ServicesDep, SettingsDep, json_body, require
from service.errors import NotFound
from service.specs import publish
from service.specs.rollout import rollout_report
from service.specs.versions import diff_by_ref, version_detail

router = APIRouter(prefix="/v1/specs", tags=["specs"], responses=errors(*AUTHED))
PolicyReader = Annotated[Caller, Depends(require(*POLICY_READERS))]
PolicyEditor = Annotated[Caller, Depends(require("policy:edit"))]
PolicyPublisher = Annotated[Caller, Depends(require("policy:publish"))]
JSON_BODY = [Depends(json_body)]
BODY_ERRORS = (400, 404, 413, 415, 422)
"""What an operation that reads a JSON body can answer besides AUTHED."""
MAX_SPEC_CHARS = 60_000
"""A policy is a few thousand words; 60 000 characters JSON-escaped fit the body limit."""


class DraftIn(BaseModel):
    """A policy version's whole Markdown text, front matter included."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_SPEC_CHARS)
    name: str | None = Field(
        default=None, max_length=64, description="the policy it is for: the kind (default)"
    )


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rollout: str = Field(max_length=16, description="shadow or canary:N")


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot: str | None = Field(
        default=None, max_length=64, description="the policy it replaces (default: its name)"
    )
    accept_moved: bool = Field(
        default=False, description="accept the eval cases the change moves from live"
    )


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(
        default=None, max_length=64, description="sha256 or version label (default: previous)"
    )
    slot: str | None = Field(default=None, max_length=64)


class EvalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["rules", "recorded"] = "rules"


@router.get("", response_model=SpecList)
async def list_specs(engine: EngineDep, _: PolicyReader) -> dict[str, Any]:
    """The versions serving now (from the database), and every file in specs/ with the
    errors refusing it."""
    return {"serving": engine.registry.serving(), "specs": engine.registry.status()}


@router.get("/{kind}/versions", response_model=VersionList, responses=errors(404, 422))
async def list_versions(
    kind: str, engine: EngineDep, services: ServicesDep, _: PolicyReader
) -> dict[str, Any]:
    """Every version of a kind ever stored, newest first, with the roles it serves in now
    (live, shadow, canary:N)."""
    engine.kind(kind)
    rows = await anyio.to_thread.run_sync(lambda: services.stores.spec_versions.of_kind(kind=kind))
    roles: dict[str, list[str]] = {}
    for s in engine.registry.serving():
        if s["kind"] == kind:
            roles.setdefault(s["sha256"], []).append(s["role"])
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
                "live": "live" in roles.get(r.sha256, []),
                "roles": roles.get(r.sha256, []),
            }
            for r in rows
        ],
    }


@router.get("/{kind}/versions/{sha}", response_model=VersionDetail, responses=errors(404, 422))
async def get_version(kind: str, sha: str, engine: EngineDep, _: PolicyReader) -> dict[str, Any]:
    """One version: text, parameters and clauses."""
    engine.kind(kind)
    return await anyio.to_thread.run_sync(lambda: version_detail(engine.registry, kind, sha))


@router.get("/{kind}/diff", response_model=SpecDiff, responses=errors(404, 422))
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


@router.get("/{kind}/rollout", response_model=RolloutReport, responses=errors(404, 422))
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


@router.post(
    "/{kind}/lint",
    dependencies=JSON_BODY,
    response_model=LintReport,
    responses=errors(*BODY_ERRORS),
)
async def lint(
    kind: str, body: DraftIn, engine: EngineDep, settings: SettingsDep, _: PolicyEditor
) -> dict[str, Any]:
    """Lint a text without storing it: errors and warnings with their lines."""
    engine.kind(kind)
    analysis = await anyio.to_thread.run_sync(
        lambda: publish.lint_draft(
            engine.registry, settings, kind=kind, text=body.text, name=body.name
        )
    )
    return publish.lint_report(analysis)


@router.post(
    "/{kind}/drafts",
    dependencies=JSON_BODY,
    status_code=201,
    response_model=DraftOut,
    responses={200: {"model": DraftOut, "description": "already stored"}, **errors(*BODY_ERRORS)},
)
async def create_draft(
    kind: str, body: DraftIn, engine: EngineDep, settings: SettingsDep, caller: PolicyEditor
) -> JSONResponse:
    """Lint and store a new version (422 with every located finding if it has errors)."""
    engine.kind(kind)
    draft = await anyio.to_thread.run_sync(
        lambda: publish.save_draft(
            engine.registry,
            settings,
            kind=kind,
            text=body.text,
            name=body.name,
            actor=caller.key_id,
        )
    )
    out = {
        **publish.lint_report(draft.analysis),
        "name": draft.spec.name,
        "created": draft.created,
        "diff_with_live": f"/v1/specs/{kind}/diff?from=live&to={draft.spec.sha256}",
    }
    return JSONResponse(out, status_code=201 if draft.created else 200)


@router.post(
    "/{kind}/versions/{sha}/eval",
    dependencies=JSON_BODY,
    response_model=EvalOut,
    responses=errors(*BODY_ERRORS),
)
async def eval_version(
    kind: str,
    sha: str,
    body: EvalIn,
    engine: EngineDep,
    settings: SettingsDep,
    caller: PolicyEditor,
) -> dict[str, Any]:
    """Run the kind's eval suite against a version, beside the live one; the result gates
    promotion."""
    engine.kind(kind)
    return await anyio.to_thread.run_sync(
        lambda: publish.eval_version(
            engine.registry, settings, kind=kind, ref=sha, mode=body.mode, actor=caller.key_id
        )
    )


@router.post(
    "/{kind}/versions/{sha}/candidate",
    dependencies=JSON_BODY,
    response_model=CandidateOut,
    responses=errors(*BODY_ERRORS, 409),
)
async def start_candidate(
    kind: str, sha: str, body: CandidateIn, engine: EngineDep, caller: PolicyEditor
) -> dict[str, Any]:
    """Run a version in shadow (policy:edit) or as a canary serving N % (policy:publish)."""
    engine.kind(kind)
    if body.rollout != "shadow":
        await require("policy:publish")(caller)
    spec = await anyio.to_thread.run_sync(
        lambda: publish.start_candidate(
            engine.registry, kind=kind, ref=sha, role=body.rollout, actor=caller.key_id
        )
    )
    return {"kind": kind, "sha256": spec.sha256, "rollout": body.rollout}


@router.delete(
    "/{kind}/candidate", response_model=CandidateStopped, responses=errors(404, 409, 422)
)
async def stop_candidate(kind: str, engine: EngineDep, caller: PolicyEditor) -> dict[str, Any]:
    """End the kind's shadow or canary."""
    engine.kind(kind)
    await anyio.to_thread.run_sync(
        lambda: publish.stop_candidate(engine.registry, kind=kind, actor=caller.key_id)
    )
    return {"kind": kind, "candidate": None}


@router.post(
    "/{kind}/versions/{sha}/promote",
    dependencies=JSON_BODY,
    response_model=PromoteOut,
    responses=errors(*BODY_ERRORS, 409),
)
async def promote(
    kind: str,
    sha: str,
    body: PromoteIn,
    engine: EngineDep,
    settings: SettingsDep,
    caller: PolicyPublisher,
) -> dict[str, Any]:
    """Make a version live (it needs a passing eval; and a second person, if configured)."""
    engine.kind(kind)
    spec, slot = await anyio.to_thread.run_sync(
        lambda: publish.promote(
            engine.registry,
            settings,
            kind=kind,
            ref=sha,
            actor=caller.key_id,
            slot=body.slot,
            accept_moved=body.accept_moved,
        )
    )
    return {"kind": kind, "sha256": spec.sha256, "version": spec.version, "live_as": slot}


@router.post(
    "/{kind}/rollback",
    dependencies=JSON_BODY,
    response_model=RollbackOut,
    responses=errors(*BODY_ERRORS, 409),
)
async def rollback(
    kind: str, body: RollbackIn, engine: EngineDep, caller: PolicyPublisher
) -> dict[str, Any]:
    """Serve the previous version of a policy again (or the one named by `to`)."""
    engine.kind(kind)
    spec = await anyio.to_thread.run_sync(
        lambda: publish.rollback(
            engine.registry, kind=kind, actor=caller.key_id, to=body.to, slot=body.slot
        )
    )
    return {"kind": kind, "sha256": spec.sha256, "version": spec.version}


@router.get("/{kind}/events", response_model=PolicyEvents, responses=errors(404, 422))
async def events(
    kind: str,
    engine: EngineDep,
    _: PolicyReader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Who drafted, evaluated, shadowed, promoted and rolled back which version, when."""
    engine.kind(kind)
    rows = await anyio.to_thread.run_sync(
        lambda: engine.registry.deployments.events(kind=kind, limit=limit)
    )
    return {
        "kind": kind,
        "events": [
            {
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "sha256": r.sha256,
                "details": r.details,
            }
            for r in rows
        ],
    }
