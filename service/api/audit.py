"""Chain verification, export and stats: /v1/audit (scope `audit`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.filters import IsoTime, ListFilters
from service.api.schemas import (
    AUTHED,
    ERRORS,
    Checkpoints,
    ConsistencyProof,
    ErrorResponse,
    InclusionProof,
    Stats,
    VerifyReport,
    errors,
)
from service.audit import export_lines, stats
from service.auth import Caller
from service.deps import KindsDep, LogDep, SettingsDep, StoresDep, require
from service.errors import InvalidInput, NotFound
from service.limits import MAX_SEQ
from service.log.checkpoints import read_directory, verifier_from
from service.log.proofs import consistency, inclusion, published_checkpoints
from service.log.verify import audit as audit_log

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=errors(*AUTHED, 422))
proof_router = APIRouter(prefix="/v1/decisions", tags=["audit"], responses=errors(*AUTHED, 422))
AuditCaller = Annotated[Caller, Depends(require("audit"))]


@router.get(
    "/verify",
    response_model=VerifyReport,
    responses={
        409: {"model": VerifyReport, "description": "The chain is broken: first_bad"},
        **errors(404),
    },
)
async def verify(
    log: LogDep,
    stores: StoresDep,
    settings: SettingsDep,
    _: AuditCaller,
    from_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    to_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    checkpoints: bool = False,
) -> JSONResponse:
    """Walk every chain (or a seq range); with `checkpoints=true`, the whole log against
    the checkpoints published to this service's directory. Names the first bad record;
    409 when broken. (An auditor should run `arbiter log verify --checkpoints` on its own
    copy with its own pinned key: this service could be the one lying.)"""
    if checkpoints:
        if from_seq or to_seq:
            raise InvalidInput(
                "checkpoints: checks the whole log; leave out from_seq and to_seq",
                details=[{"field": "checkpoints", "reason": "not with a seq range"}],
            )
        if settings.checkpoint_dir is None:
            raise NotFound("no checkpoint directory is configured (ARBITER_CHECKPOINT_DIR)")
        full = await anyio.to_thread.run_sync(
            lambda: audit_log(
                stores,
                published=read_directory(settings.checkpoint_dir),  # type: ignore[arg-type]
                verifier=verifier_from(settings),
            )
        )
        return JSONResponse(full.as_dict(), status_code=200 if full.ok else 409)
    report = await anyio.to_thread.run_sync(lambda: log.verify(from_seq=from_seq, to_seq=to_seq))
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 409)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One record per line (JSON lines), or CSV with a header row",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        403: {
            "model": ErrorResponse,
            "description": ERRORS[403] + " `q` needs audit:pii.",
        },
    },
)
async def export(
    log: LogDep,
    kinds: KindsDep,
    caller: AuditCaller,
    filters: Annotated[ListFilters, Depends()],
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """Stream matching records, oldest first, in constant memory."""
    pii = caller.has("audit:pii")
    lines = export_lines(log, filters.to_filter(pii=pii), format, pii=pii, kinds=kinds)

    async def body() -> Any:
        while True:
            chunk = await anyio.to_thread.run_sync(lambda: next(lines, None))
            if chunk is None:
                return
            yield chunk

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    name = f"arbiter-decisions.{format}"
    return StreamingResponse(
        body(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/stats", response_model=Stats)
async def get_stats(
    log: LogDep,
    kinds: KindsDep,
    _: AuditCaller,
    since: IsoTime | None = None,
    until: IsoTime | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """Per day: decisions by kind, source and outcome, fallback reasons, review rate, cost."""
    return await anyio.to_thread.run_sync(
        lambda: stats(log, kinds, since=since, until=until, kind=kind)
    )


@router.get("/checkpoints", response_model=Checkpoints)
async def checkpoints(
    settings: SettingsDep,
    _: AuditCaller,
    leaves: bool = False,
) -> dict[str, Any]:
    """Every signed checkpoint published to the checkpoint directory (C2SP signed notes),
    oldest first, and with `leaves=true` the published leaves (seq, id, hash) of each chain:
    what `arbiter log verify --checkpoints URL` reads. Verify them with a pinned key."""
    return await anyio.to_thread.run_sync(lambda: published_checkpoints(settings, leaves=leaves))


@router.get("/consistency", response_model=ConsistencyProof)
async def get_consistency(
    stores: StoresDep,
    _: AuditCaller,
    chain: Annotated[str, Query(pattern=r"^(admin|shard-[0-9]{1,2})$")],
    first: Annotated[int, Query(ge=1, le=MAX_SEQ)],
    second: Annotated[int, Query(ge=1, le=MAX_SEQ)],
) -> dict[str, Any]:
    """RFC 6962 consistency proof of a chain between two tree sizes (two checkpoints)."""
    if first > second:
        raise InvalidInput(
            "first: must not be larger than second",
            details=[{"field": "first", "reason": "larger than second"}],
        )
    return await anyio.to_thread.run_sync(
        lambda: consistency(stores, chain=chain, first=first, second=second)
    )


@proof_router.get("/{decision_id}/proof", response_model=InclusionProof, responses=errors(404))
async def proof(
    decision_id: Annotated[str, Path(max_length=40)],
    stores: StoresDep,
    settings: SettingsDep,
    _: AuditCaller,
) -> dict[str, Any]:
    """RFC 6962 inclusion proof of a decision in its chain, against the newest published
    checkpoint that covers it (its signed note included)."""
    found = await anyio.to_thread.run_sync(
        lambda: inclusion(stores, settings, decision_id=decision_id)
    )
    if found is None:
        raise NotFound(f"no decision {decision_id}")
    return found
