"""Chain verification, export and stats: /v1/audit (scope `audit`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.filters import IsoTime, ListFilters
from service.audit import export_lines, stats
from service.auth import Caller
from service.deps import KindsDep, LogDep, require
from service.limits import MAX_SEQ

router = APIRouter(prefix="/v1/audit", tags=["audit"])
AuditCaller = Annotated[Caller, Depends(require("audit"))]


@router.get("/verify")
async def verify(
    log: LogDep,
    _: AuditCaller,
    from_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    to_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
) -> JSONResponse:
    """Walk the hash chain (or a seq range); name the first bad record. 409 when broken."""
    report = await anyio.to_thread.run_sync(lambda: log.verify(from_seq=from_seq, to_seq=to_seq))
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 409)


@router.get("/export")
async def export(
    log: LogDep,
    caller: AuditCaller,
    filters: Annotated[ListFilters, Depends()],
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """Stream matching records, oldest first, in constant memory."""
    pii = caller.has("audit:pii")
    lines = export_lines(log, filters.to_filter(), format, pii=pii)

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


@router.get("/stats")
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
