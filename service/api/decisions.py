"""POST /v1/decisions/{kind} (one typed route per kind) and GET /v1/decisions/{id}."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi.responses import Response
from pydantic import create_model

from service.api.filters import ListFilters, decode_cursor, encode_cursor, summary
from service.api.schemas import AUTHED, DecisionDetail, DecisionPage, errors
from service.audit import decision_detail
from service.auth import Caller
from service.deps import EngineDep, LogDep, RegistryDep, json_body, require
from service.engine import DecisionResponse
from service.errors import MethodNotAllowed, NotFound
from service.http import current_request_id
from service.kinds.registry import AnyKind, Kinds

DecideCaller = Annotated[Caller, Depends(require("decide"))]
AuditCaller = Annotated[Caller, Depends(require("audit"))]
ReaderCaller = Annotated[Caller, Depends(require("audit", "review"))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
PinSha = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=r"^[0-9a-fA-F]{8,64}$",
        description="Judge under this spec version (sha256 or a prefix of 8+ characters).",
    ),
]
PinVersion = Annotated[
    str | None, Query(max_length=32, description="Judge under the spec with this version label.")
]


MIN_DEADLINE_MS = 100


def decision_model(kind: AnyKind) -> type[DecisionResponse]:
    """The envelope of one kind: `verdict` is its verdict, `outcome` its headline."""
    model: type[DecisionResponse] = create_model(
        f"{kind.name.title().replace('_', '')}Decision",
        __base__=DecisionResponse,
        __doc__=f"The decision on a {kind.name} case.",
        outcome=(kind.outcome_type(), ...),
        verdict=(kind.Verdict, ...),
    )
    return model


def _decide_route(kind: AnyKind, max_deadline_ms: int) -> Callable[..., Awaitable[Response]]:
    case_model: Any = Annotated[
        kind.Case,
        Body(
            openapi_examples={
                kind.name: {"summary": f"A {kind.name} case", "value": kind.example()}
            }
        ),
    ]

    async def decide(
        case: case_model,
        engine: EngineDep,
        caller: DecideCaller,
        idempotency_key: IdempotencyKey = None,
        spec_sha: PinSha = None,
        spec_version: PinVersion = None,
        deadline_ms: Annotated[
            int | None,
            Query(
                ge=MIN_DEADLINE_MS,
                le=max_deadline_ms,
                description="End-to-end LLM deadline for this request, in milliseconds "
                "(at most ARBITER_MAX_DEADLINE_S)",
            ),
        ] = None,
    ) -> Response:
        decided = await engine.decide_raw(
            kind=kind.name,
            case=case,
            caller=caller.key_id,
            idempotency_key=idempotency_key,
            pin_sha=spec_sha,
            pin_version=spec_version,
            deadline_s=deadline_ms / 1000 if deadline_ms else None,
            request_id=current_request_id(),
        )
        headers = {"Idempotent-Replayed": "true"} if decided.replayed else {}
        return Response(content=decided.body, media_type="application/json", headers=headers)

    decide.__doc__ = f"Decide a {kind.name} case. {type(kind).__doc__ or ''}"
    return decide


async def post_only() -> None:
    raise MethodNotAllowed("a decision is asked for with POST", headers={"Allow": "POST"})


def build_router(kinds: Kinds, *, max_deadline_s: float) -> APIRouter:
    """The decision routes of the `kinds` registry; `deadline_ms` is bounded as enforced."""
    router = APIRouter(prefix="/v1", tags=["decisions"], responses=errors(*AUTHED, 422))
    max_deadline_ms = int(max_deadline_s * 1000)
    for kind in kinds.values():
        router.add_api_route(
            f"/decisions/{kind.name}",
            _decide_route(kind, max_deadline_ms),
            methods=["POST"],
            response_model=decision_model(kind),
            responses={
                200: {
                    "description": "The decision (also for an idempotent replay, with the "
                    "header Idempotent-Replayed: true)"
                },
                **errors(400, 404, 409, 413, 415),
            },
            name=f"decide_{kind.name}",
            summary=f"Decide a {kind.name} case",
            dependencies=[Depends(json_body)],
        )
        # before GET /decisions/{decision_id} would take it: a decide URL only takes POST
        router.add_api_route(
            f"/decisions/{kind.name}",
            post_only,
            methods=["GET", "PUT", "PATCH", "DELETE"],
            include_in_schema=False,
        )

    @router.post("/decisions/{kind}", include_in_schema=False)
    async def unknown_kind(kind: str) -> None:
        raise NotFound(f"unknown decision kind {kind!r}", details={"known": sorted(kinds)})

    @router.get("/decisions", tags=["audit"], response_model=DecisionPage)
    async def list_decisions(
        log: LogDep,
        caller: AuditCaller,
        filters: Annotated[ListFilters, Depends()],
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Decisions newest first, filtered, with a stable cursor (inserts never shift pages)."""
        pii = caller.has("audit:pii")
        before = decode_cursor(cursor)
        rows = await anyio.to_thread.run_sync(
            lambda: log.list_decisions(
                filters=filters.to_filter(pii=pii), before_seq=before, limit=limit + 1
            )
        )
        page = rows[:limit]
        nxt = encode_cursor(page[-1].seq) if len(rows) > limit and page[-1].seq else None
        return {"decisions": [summary(r, kinds, pii=pii) for r in page], "next_cursor": nxt}

    @router.get(
        "/decisions/{decision_id}",
        tags=["audit"],
        response_model=DecisionDetail,
        responses=errors(404),
    )
    async def get_decision(
        decision_id: str, log: LogDep, registry: RegistryDep, caller: ReaderCaller
    ) -> dict[str, Any]:
        """The full record: case, verdicts, checks, clause text, prompt, attempts, links.

        Scope `audit`, or `review`: a reviewer reads the one decision being judged, masked
        the same way (not the list, the export or the stats)."""
        row = await anyio.to_thread.run_sync(lambda: log.get(decision_id=decision_id))
        if row is None:
            raise NotFound(f"no decision {decision_id}")
        pii = caller.has("audit:pii")
        return await anyio.to_thread.run_sync(
            lambda: decision_detail(log, registry, kinds, row, pii=pii)
        )

    return router
